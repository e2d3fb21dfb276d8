-- Retry experiments (fleetbox.store.experiments).

-- name: experiment_epochs
SELECT queue, started_at, weights, source, reason, actor
  FROM retry_experiments ORDER BY queue, started_at

-- name: experiment_add
-- params: $1 queue, $2 started at, $3 weights, $4 source, $5 reason, $6 actor
INSERT INTO retry_experiments (queue, started_at, weights, source, reason, actor)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (queue, started_at) DO UPDATE
   SET weights = EXCLUDED.weights, source = EXCLUDED.source, reason = EXCLUDED.reason, actor = EXCLUDED.actor

-- name: experiment_finished_jobs
-- Through jobs_done's (queue, finished_at) index: the newest finished jobs of the queue.
-- params: $1 queue, $2 created since, $3 limit
SELECT id, data, state, attempts, created_at, finished_at
  FROM jobs_done
 WHERE queue = $1 AND state IN ('succeeded', 'dead') AND finished_at >= $2 AND created_at >= $2
 ORDER BY finished_at DESC
 LIMIT $3
