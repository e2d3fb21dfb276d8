-- Every statement here finds its jobs by primary key (id = ANY) and matches each job with its
-- entry by width_bucket(id, ids), a binary search in the sorted id array, so the attempt, times
-- and errors are read from the other arrays without a join. A join's plan would hang on the
-- statistics of state, which are stale by nature (a table that was all waiting when last analysed
-- makes "running" look empty), and a wrong guess there costs a full scan or O(n²) per batch.
-- The arrays are sorted by (id, attempt) first, so a duplicate id matches its latest attempt.
-- Times arrive as epoch seconds (float8): to_timestamp() gives back the exact microsecond.

-- name: complete_succeeded
-- Records a batch of successful attempts: each job leaves the hot table for jobs_done. Only rows
-- this attempt still holds are touched, so a completion after a lost lease changes nothing.
-- The results handlers returned are stored, and the jobs with dependents settle them in this
-- statement (settle_parents, 0016_dependencies.sql): a child whose last parent this is becomes
-- ready in the same transaction. Without results and dependents (the common case) both steps
-- cost an empty unnest and a filter.
-- params: $1 id[], $2 attempt[], $3 started_at[], $4 finished_at[] (epoch seconds), $5 worker id,
--         $6 id[] of the jobs that returned a result, $7 their results (jsonb[])
WITH s AS (
    SELECT array_agg(id ORDER BY id, attempt) AS ids, array_agg(attempt ORDER BY id, attempt) AS attempts,
           array_agg(to_timestamp(started_at) ORDER BY id, attempt) AS started,
           array_agg(to_timestamp(finished_at) ORDER BY id, attempt) AS finished
      FROM unnest($1::bigint[], $2::integer[], $3::float8[], $4::float8[])
        AS r(id, attempt, started_at, finished_at)
), gone AS (
    DELETE FROM jobs j USING s
     WHERE j.id = ANY(s.ids) AND j.state = 'running'
       AND j.attempt = s.attempts[width_bucket(j.id, s.ids)]
    RETURNING j.id, j.queue, j.priority, j.data, j.singleton_key, j.attempt, j.dead_letter_id,
              j.created_at, j.run_at, s.started[width_bucket(j.id, s.ids)] AS started_at,
              s.finished[width_bucket(j.id, s.ids)] AS finished_at, j.has_dependents
), timed AS (
    SELECT *, extract(epoch FROM finished_at - started_at) * 1000 AS duration_ms FROM gone
), done AS (
    INSERT INTO jobs_done (id, queue, priority, state, data, singleton_key, attempts, dead_letter_id,
                           created_at, run_at, finished_at, duration_ms)
    SELECT id, queue, priority, 'succeeded', data, singleton_key, attempt, dead_letter_id,
           created_at, run_at, finished_at, duration_ms
      FROM timed
), attempts AS (
    INSERT INTO job_attempts (job_id, attempt, queue, worker_id, started_at, finished_at,
                              duration_ms, outcome)
    SELECT id, attempt, queue, $5, started_at, finished_at, duration_ms, 'succeeded' FROM timed
    RETURNING 1
), results AS (
    INSERT INTO job_results (job_id, result, stored_at)
    SELECT r.id, r.result, t.finished_at
      FROM unnest($6::bigint[], $7::jsonb[]) AS r(id, result) JOIN timed t ON t.id = r.id
), settled AS (
    SELECT settle_parents(array_agg(id), 'succeeded', $6::bigint[], $7::jsonb[], max(finished_at)) AS released
      FROM timed WHERE has_dependents HAVING count(*) > 0
)
-- One row: the number of attempts written (a row per job would only be counted) and the
-- dependents released.
SELECT (SELECT count(*) FROM attempts), (SELECT coalesce(sum(released), 0) FROM settled)

-- name: complete_retry
-- Puts failed attempts back to wait for their next run and records them.
-- params: $1 id[], $2 attempt[], $3 started_at[], $4 finished_at[] (epoch seconds), $5 worker id,
--         $6 run_at[], $7 retries[], $8 error_class[], $9 error[]
WITH s AS (
    SELECT array_agg(id ORDER BY id, attempt) AS ids, array_agg(attempt ORDER BY id, attempt) AS attempts,
           array_agg(to_timestamp(started_at) ORDER BY id, attempt) AS started,
           array_agg(to_timestamp(finished_at) ORDER BY id, attempt) AS finished,
           array_agg(run_at ORDER BY id, attempt) AS run_ats,
           array_agg(retries ORDER BY id, attempt) AS retries,
           array_agg(error_class ORDER BY id, attempt) AS error_classes,
           array_agg(error ORDER BY id, attempt) AS errors
      FROM unnest($1::bigint[], $2::integer[], $3::float8[], $4::float8[],
                  $6::timestamptz[], $7::jsonb[], $8::text[], $9::text[])
        AS r(id, attempt, started_at, finished_at, run_at, retries, error_class, error)
), upd AS (
    UPDATE jobs j
       SET state = 'waiting', run_at = s.run_ats[width_bucket(j.id, s.ids)],
           retries = s.retries[width_bucket(j.id, s.ids)],
           last_error_class = s.error_classes[width_bucket(j.id, s.ids)],
           last_error = s.errors[width_bucket(j.id, s.ids)],
           worker_id = NULL, claimed_at = NULL, lease_until = NULL
      FROM s
     WHERE j.id = ANY(s.ids) AND j.state = 'running'
       AND j.attempt = s.attempts[width_bucket(j.id, s.ids)]
    RETURNING j.id, j.queue, j.attempt, j.last_error_class, j.last_error,
              s.started[width_bucket(j.id, s.ids)] AS started_at,
              s.finished[width_bucket(j.id, s.ids)] AS finished_at
)
INSERT INTO job_attempts (job_id, attempt, queue, worker_id, started_at, finished_at, duration_ms,
                          outcome, error_class, error)
SELECT id, attempt, queue, $5, started_at, finished_at,
       extract(epoch FROM finished_at - started_at) * 1000, 'retry', last_error_class, last_error
  FROM upd
RETURNING job_id

-- name: complete_dead
-- Moves failed jobs to the dead-letter queue with their payload and full attempt history.
-- params: $1 id[], $2 attempt[], $3 started_at[], $4 finished_at[] (epoch seconds), $5 worker id,
--         $6 error_class[], $7 error[]
WITH s AS (
    SELECT array_agg(id ORDER BY id, attempt) AS ids, array_agg(attempt ORDER BY id, attempt) AS attempts,
           array_agg(to_timestamp(started_at) ORDER BY id, attempt) AS started,
           array_agg(to_timestamp(finished_at) ORDER BY id, attempt) AS finished,
           array_agg(error_class ORDER BY id, attempt) AS error_classes,
           array_agg(error ORDER BY id, attempt) AS errors
      FROM unnest($1::bigint[], $2::integer[], $3::float8[], $4::float8[], $6::text[],
                  $7::text[])
        AS r(id, attempt, started_at, finished_at, error_class, error)
), gone AS (
    DELETE FROM jobs j USING s
     WHERE j.id = ANY(s.ids) AND j.state = 'running'
       AND j.attempt = s.attempts[width_bucket(j.id, s.ids)]
    RETURNING j.id, j.queue, j.priority, j.data, j.singleton_key, j.attempt, j.dead_letter_id,
              j.created_at, j.run_at, s.started[width_bucket(j.id, s.ids)] AS started_at,
              s.finished[width_bucket(j.id, s.ids)] AS finished_at,
              s.error_classes[width_bucket(j.id, s.ids)] AS error_class,
              s.errors[width_bucket(j.id, s.ids)] AS error, j.has_dependents
), timed AS (
    SELECT *, extract(epoch FROM finished_at - started_at) * 1000 AS duration_ms FROM gone
), att AS (
    INSERT INTO job_attempts (job_id, attempt, queue, worker_id, started_at, finished_at,
                              duration_ms, outcome, error_class, error)
    SELECT id, attempt, queue, $5, started_at, finished_at, duration_ms, 'dead', error_class, error
      FROM timed
), done AS (
    INSERT INTO jobs_done (id, queue, priority, state, data, singleton_key, attempts, dead_letter_id,
                           created_at, run_at, finished_at, duration_ms)
    SELECT id, queue, priority, 'dead', data, singleton_key, attempt, dead_letter_id, created_at,
           run_at, finished_at, duration_ms
      FROM timed
), settled AS (
    -- the dependents' failure policies (cancel, ignore; hold leaves them on the dead letter)
    SELECT settle_parents(array_agg(id), 'failed', '{}', '{}', max(finished_at)) AS released
      FROM timed WHERE has_dependents HAVING count(*) > 0
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
  FROM timed g
 WHERE (SELECT count(*) FROM settled) >= 0  -- runs the settling (a CTE nothing reads never runs)
RETURNING id, job_id, queue
