-- The shared schedule (fleetbox.scheduler): each (task, tick) runs once across every process.

-- name: scheduler_claim
-- Claims a tick; a row comes back only for the process whose insert went in.
-- params: $1 task, $2 tick, $3 worker id, $4 started at
INSERT INTO scheduler_ticks (task, tick, worker_id, started_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (task, tick) DO NOTHING
RETURNING tick

-- name: scheduler_finish
-- params: $1 task, $2 tick, $3 finished at, $4 ok, $5 error, $6 result
UPDATE scheduler_ticks SET finished_at = $3, ok = $4, error = $5, result = $6
 WHERE task = $1 AND tick = $2
