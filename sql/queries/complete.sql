-- name: complete_succeeded
-- Records a batch of successful attempts: each job leaves the hot table for jobs_done. Only rows
-- this attempt still holds are touched, so a completion after a lost lease changes nothing.
-- params: $1 id[], $2 attempt[], $3 started_at[], $4 finished_at[], $5 worker id
WITH r AS (
    SELECT * FROM unnest($1::bigint[], $2::integer[], $3::timestamptz[], $4::timestamptz[])
        AS r(id, attempt, started_at, finished_at)
), gone AS (
    DELETE FROM jobs j USING r
     WHERE j.id = r.id AND j.attempt = r.attempt AND j.state = 'running'
    RETURNING j.id, j.queue, j.priority, j.data, j.singleton_key, j.attempt, j.dead_letter_id,
              j.created_at, j.run_at, r.started_at, r.finished_at,
              extract(epoch FROM r.finished_at - r.started_at) * 1000 AS duration_ms
), done AS (
    INSERT INTO jobs_done (id, queue, priority, state, data, singleton_key, attempts, dead_letter_id,
                           created_at, run_at, finished_at, duration_ms)
    SELECT id, queue, priority, 'succeeded', data, singleton_key, attempt, dead_letter_id,
           created_at, run_at, finished_at, duration_ms
      FROM gone
)
INSERT INTO job_attempts (job_id, attempt, queue, worker_id, started_at, finished_at, duration_ms,
                          outcome)
SELECT id, attempt, queue, $5, started_at, finished_at, duration_ms, 'succeeded' FROM gone
RETURNING job_id

-- name: complete_retry
-- Puts failed attempts back to wait for their next run and records them.
-- params: $1 id[], $2 attempt[], $3 started_at[], $4 finished_at[], $5 worker id, $6 run_at[],
--         $7 retries[], $8 error_class[], $9 error[]
WITH r AS (
    SELECT * FROM unnest($1::bigint[], $2::integer[], $3::timestamptz[], $4::timestamptz[],
                         $6::timestamptz[], $7::jsonb[], $8::text[], $9::text[])
        AS r(id, attempt, started_at, finished_at, run_at, retries, error_class, error)
), upd AS (
    UPDATE jobs j
       SET state = 'waiting', run_at = r.run_at, retries = r.retries, last_error_class = r.error_class,
           last_error = r.error, worker_id = NULL, claimed_at = NULL, lease_until = NULL
      FROM r
     WHERE j.id = r.id AND j.attempt = r.attempt AND j.state = 'running'
    RETURNING j.id, j.queue
)
INSERT INTO job_attempts (job_id, attempt, queue, worker_id, started_at, finished_at, duration_ms,
                          outcome, error_class, error)
SELECT r.id, r.attempt, upd.queue, $5, r.started_at, r.finished_at,
       extract(epoch FROM r.finished_at - r.started_at) * 1000, 'retry', r.error_class, r.error
  FROM r JOIN upd USING (id)
RETURNING job_id

-- name: complete_dead
-- Moves failed jobs to the dead-letter queue with their payload and full attempt history.
-- params: $1 id[], $2 attempt[], $3 started_at[], $4 finished_at[], $5 worker id, $6 error_class[],
--         $7 error[]
WITH r AS (
    SELECT * FROM unnest($1::bigint[], $2::integer[], $3::timestamptz[], $4::timestamptz[],
                         $6::text[], $7::text[])
        AS r(id, attempt, started_at, finished_at, error_class, error)
), gone AS (
    DELETE FROM jobs j USING r
     WHERE j.id = r.id AND j.attempt = r.attempt AND j.state = 'running'
    RETURNING j.id, j.queue, j.priority, j.data, j.singleton_key, j.attempt, j.dead_letter_id,
              j.created_at, j.run_at, r.started_at, r.finished_at, r.error_class, r.error,
              extract(epoch FROM r.finished_at - r.started_at) * 1000 AS duration_ms
), att AS (
    INSERT INTO job_attempts (job_id, attempt, queue, worker_id, started_at, finished_at,
                              duration_ms, outcome, error_class, error)
    SELECT id, attempt, queue, $5, started_at, finished_at, duration_ms, 'dead', error_class, error
      FROM gone
), done AS (
    INSERT INTO jobs_done (id, queue, priority, state, data, singleton_key, attempts, dead_letter_id,
                           created_at, run_at, finished_at, duration_ms)
    SELECT id, queue, priority, 'dead', data, singleton_key, attempt, dead_letter_id, created_at,
           run_at, finished_at, duration_ms
      FROM gone
)
INSERT INTO dead_letters (job_id, queue, priority, data, singleton_key, error_class, error, attempts,
                          history, job_created_at, failed_at)
SELECT g.id, g.queue, g.priority, g.data, g.singleton_key, g.error_class, g.error, g.attempt,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'attempt', a.attempt, 'started_at', a.started_at, 'finished_at', a.finished_at,
                    'duration_ms', a.duration_ms, 'outcome', a.outcome,
                    'error_class', a.error_class, 'error', a.error) ORDER BY a.attempt)
                   FROM job_attempts a WHERE a.job_id = g.id), '[]'::jsonb)
       || jsonb_build_array(jsonb_build_object(
                    'attempt', g.attempt, 'started_at', g.started_at, 'finished_at', g.finished_at,
                    'duration_ms', g.duration_ms, 'outcome', 'dead',
                    'error_class', g.error_class, 'error', g.error)),
       g.created_at, g.finished_at
  FROM gone g
RETURNING id, job_id, queue
