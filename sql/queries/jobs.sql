-- name: job_get
-- One job wherever it is: blocked (waiting for its parents), waiting or running (hot table) or
-- finished (jobs_done).
SELECT id, queue, priority,
       CASE WHEN state = 'running' THEN 'running'
            WHEN attempt > 0 THEN 'retrying'
            WHEN run_at > $2 THEN 'scheduled'
            ELSE 'waiting' END AS state,
       data, singleton_key, attempt AS attempts, max_attempts, run_at, created_at,
       NULL::timestamptz AS finished_at, last_error_class, last_error, dead_letter_id
  FROM jobs WHERE id = $1
UNION ALL
SELECT id, queue, priority, 'blocked', data, NULL, 0, max_attempts, run_at, created_at,
       NULL, NULL, NULL, NULL
  FROM jobs_blocked WHERE id = $1
UNION ALL
SELECT id, queue, priority, state, data, singleton_key, attempts, NULL, run_at, created_at,
       finished_at, NULL, NULL, dead_letter_id
  FROM jobs_done WHERE id = $1
UNION ALL
-- completed jobs moved to the archive by retention (until they are deleted from it)
SELECT id, queue, priority, state, data, singleton_key, attempts, NULL, run_at, created_at,
       finished_at, NULL, NULL, dead_letter_id
  FROM jobs_archive WHERE id = $1

-- name: job_attempts
SELECT job_id, attempt, queue, worker_id, started_at, finished_at, duration_ms, outcome,
       error_class, error
  FROM job_attempts WHERE job_id = $1 ORDER BY attempt

-- name: job_run_now
-- A job waiting for its next retry runs now.
UPDATE jobs SET run_at = $2 WHERE id = $1 AND state = 'waiting' AND attempt > 0 RETURNING id, tier

-- name: vacuum_jobs
-- The hot table after many outcomes (fleetbox.worker): each job leaves two dead tuples in jobs
-- (the claim's old version, then the delete) and the claim's index scan steps over their entries
-- until a vacuum removes them. Autovacuum looks at a table once a minute at best, and not at all
-- on a server with it off; an appliance runs this as soon as enough of its jobs finished.
-- SKIP_LOCKED: another appliance's vacuum running now is as good as ours. Not in a transaction.
VACUUM (SKIP_LOCKED) jobs
