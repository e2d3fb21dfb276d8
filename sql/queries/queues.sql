-- name: queue_upsert
-- Registers a queue from the configuration; keeps its pause flag, follows a change of tier.
INSERT INTO queues (name, tier) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET tier = EXCLUDED.tier, updated_at = now()
WHERE queues.tier <> EXCLUDED.tier

-- name: queue_retier_jobs
-- Waiting and running jobs follow their queues to new tiers (one scan of the hot table).
UPDATE jobs j SET tier = q.tier FROM queues q WHERE j.queue = q.name AND j.tier <> q.tier

-- name: queue_list
SELECT name, tier, paused, paused_at, paused_by FROM queues ORDER BY tier, name

-- name: queue_set_paused
UPDATE queues SET paused = $2, paused_at = CASE WHEN $2 THEN now() END,
       paused_by = CASE WHEN $2 THEN $3::text END, updated_at = now()
 WHERE name = $1
RETURNING name, tier, paused, paused_at, paused_by

-- name: queue_depth
-- Jobs in the hot table by queue and state (the table holds only unfinished jobs, so this is cheap).
-- params: $1 now
SELECT queue,
       count(*) FILTER (WHERE state = 'waiting' AND run_at <= $1 AND attempt = 0) AS waiting,
       count(*) FILTER (WHERE state = 'waiting' AND run_at > $1 AND attempt = 0)  AS scheduled,
       count(*) FILTER (WHERE state = 'waiting' AND attempt > 0)                 AS retrying,
       count(*) FILTER (WHERE state = 'running')                                 AS running
  FROM jobs GROUP BY queue

-- name: dead_letter_depth
SELECT queue, count(*) AS dead FROM dead_letters WHERE status = 'open' GROUP BY queue
