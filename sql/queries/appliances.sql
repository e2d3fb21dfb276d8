-- Appliances on this database (fleetbox.store.appliances): presence rows written every few
-- seconds, read by health (consumers per queue) and the monitor (alerts).

-- name: appliance_beat
-- params: $1 worker id, $2 name, $3 version, $4 started at, $5 now, $6 queue[], $7 failing tasks
INSERT INTO appliances (worker_id, name, version, started_at, seen_at, queues, failing)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (worker_id) DO UPDATE
   SET seen_at = EXCLUDED.seen_at, queues = EXCLUDED.queues, failing = EXCLUDED.failing, stopped_at = NULL

-- name: appliance_gone
UPDATE appliances SET stopped_at = $2, seen_at = $2 WHERE worker_id = $1

-- name: appliances_live
-- params: $1 seen after
SELECT worker_id, name, version, started_at, seen_at, queues, failing FROM appliances
 WHERE seen_at > $1 AND stopped_at IS NULL
 ORDER BY started_at

-- name: appliances_prune
-- params: $1 seen before
DELETE FROM appliances WHERE seen_at < $1 RETURNING worker_id
