-- name: claim
-- Claims up to $2 due jobs of tier $1 from queues that are not paused, lowest priority number
-- first, then earliest due, then FIFO. SKIP LOCKED lets several dispatchers claim side by side.
-- The update finds the picked rows by primary key (= ANY): a join with the CTE lets the planner
-- hash the whole table, which makes a claim cost grow with the backlog.
-- An appliance that cannot run every queue of the tier names the ones it can ($6); NULL: all.
-- params: $1 tier, $2 limit, $3 worker id, $4 now, $5 lease until, $6 queue[]|null
WITH picked AS (
    SELECT id FROM jobs
     WHERE state = 'waiting' AND tier = $1 AND run_at <= $4
       AND queue NOT IN (SELECT name FROM queues WHERE paused)
       AND ($6::text[] IS NULL OR queue = ANY($6::text[]))
     ORDER BY priority, run_at, id
     LIMIT $2
       FOR UPDATE SKIP LOCKED
)
UPDATE jobs j
   SET state = 'running', attempt = j.attempt + 1, worker_id = $3, claimed_at = $4, lease_until = $5
 WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
RETURNING j.id, j.queue, j.priority, j.data, j.attempt, j.max_attempts, j.retries, j.run_at,
          j.created_at, j.singleton_key, j.dead_letter_id, j.parents

-- name: release
-- Hands back claimed jobs that never started (shutdown): the attempt did not happen.
-- Matched like the completions (see complete.sql): by primary key, the attempt by width_bucket.
-- params: $1 id[], $2 attempt[]
WITH s AS (
    SELECT array_agg(id ORDER BY id, attempt) AS ids, array_agg(attempt ORDER BY id, attempt) AS attempts
      FROM unnest($1::bigint[], $2::integer[]) AS r(id, attempt)
)
UPDATE jobs j
   SET state = 'waiting', attempt = j.attempt - 1, worker_id = NULL, claimed_at = NULL,
       lease_until = NULL
  FROM s
 WHERE j.id = ANY(s.ids) AND j.state = 'running' AND j.attempt = s.attempts[width_bucket(j.id, s.ids)]
RETURNING j.id

-- name: heartbeat
-- Extends the leases this process still holds; a job missing from the result has been lost.
-- Matched like the completions (see complete.sql): by primary key, the attempt by width_bucket.
-- params: $1 id[], $2 attempt[], $3 lease until
WITH s AS (
    SELECT array_agg(id ORDER BY id, attempt) AS ids, array_agg(attempt ORDER BY id, attempt) AS attempts
      FROM unnest($1::bigint[], $2::integer[]) AS r(id, attempt)
)
UPDATE jobs j SET lease_until = $3
  FROM s
 WHERE j.id = ANY(s.ids) AND j.state = 'running' AND j.attempt = s.attempts[width_bucket(j.id, s.ids)]
RETURNING j.id

-- name: reap_expired
-- Jobs whose lease ran out (their worker died, stalled or lost the database) go back to their
-- queues and the lost attempt is recorded; or, when the job has now lost its lease more often
-- than the retry policy allows for its queue (a job that keeps crashing or stalling its workers,
-- whatever the cause) or used up its attempts, it goes to the dead-letter queue with its history.
-- The numbers come from the retry policy (fleetbox.worker.retry), per queue, with a default.
-- The jobs the calling process still holds ($7: their outcome is on its way) are skipped.
-- params: $1 now, $2 limit, $3 queue[], $4 max lost leases[] (per queue), $5 default max lost
--         leases, $6 max attempts[] (per queue, NULL: none), $7 job id[] to skip
WITH expired AS (
    SELECT id FROM jobs WHERE state = 'running' AND lease_until < $1 AND NOT (id = ANY($7::bigint[]))
     ORDER BY lease_until LIMIT $2 FOR UPDATE SKIP LOCKED
), policy AS (
    SELECT * FROM unnest($3::text[], $4::integer[], $6::integer[]) AS p(queue, max_lost, max_attempts)
), old AS (
    SELECT j.id, j.tier, j.attempt, j.queue, j.worker_id, j.claimed_at,
           coalesce((j.retries ->> 'lease_expired')::int, 0) + 1 AS lost,
           coalesce(p.max_lost, $5::integer) AS max_lost,
           coalesce(j.max_attempts, p.max_attempts) AS cap,
           'lease expired: the worker ' || coalesce(j.worker_id, '?') || ' stopped heartbeating' AS error
      FROM jobs j JOIN expired USING (id) LEFT JOIN policy p ON p.queue = j.queue
), verdict AS (
    SELECT *, lost > max_lost AS poison, (lost > max_lost OR coalesce(attempt >= cap, false)) AS dead FROM old
), back AS (
    UPDATE jobs j
       SET state = 'waiting', run_at = $1, worker_id = NULL, claimed_at = NULL, lease_until = NULL,
           last_error_class = 'lease_expired', last_error = v.error,
           retries = jsonb_set(j.retries, '{lease_expired}', to_jsonb(v.lost))
      FROM verdict v
     WHERE j.id = v.id AND NOT v.dead
    RETURNING j.id
), gone AS (
    DELETE FROM jobs j USING verdict v
     WHERE j.id = v.id AND v.dead
    RETURNING j.id, j.queue, j.priority, j.data, j.singleton_key, j.attempt, j.dead_letter_id,
              j.created_at, j.run_at, j.has_dependents
), att AS (
    INSERT INTO job_attempts (job_id, attempt, queue, worker_id, started_at, finished_at, duration_ms,
                              outcome, error_class, error)
    SELECT v.id, v.attempt, v.queue, v.worker_id, coalesce(v.claimed_at, $1), $1,
           extract(epoch FROM $1 - coalesce(v.claimed_at, $1)) * 1000,
           CASE WHEN v.dead THEN 'dead' ELSE 'lease_expired' END, 'lease_expired', v.error
      FROM verdict v
    ON CONFLICT (job_id, attempt) DO NOTHING
), done AS (
    INSERT INTO jobs_done (id, queue, priority, state, data, singleton_key, attempts, dead_letter_id,
                           created_at, run_at, finished_at)
    SELECT id, queue, priority, 'dead', data, singleton_key, attempt, dead_letter_id, created_at, run_at, $1
      FROM gone
), letters AS (
    INSERT INTO dead_letters (job_id, queue, priority, data, singleton_key, error_class, error, attempts,
                              history, job_created_at, failed_at)
    SELECT g.id, g.queue, g.priority, g.data, g.singleton_key,
           CASE WHEN v.poison THEN 'poison' ELSE 'lease_expired' END,
           CASE WHEN v.poison
                THEN v.error || ' (the lease expired ' || v.lost || ' times: the job may be crashing or stalling '
                     || 'its workers, so it is not handed to them again)'
                ELSE v.error || ' (all ' || v.cap || ' attempts used)' END,
           g.attempt,
           coalesce((SELECT jsonb_agg(jsonb_build_object(
                        'attempt', a.attempt, 'started_at', a.started_at, 'finished_at', a.finished_at,
                        'duration_ms', a.duration_ms, 'outcome', a.outcome,
                        'error_class', a.error_class, 'error', a.error) ORDER BY a.attempt)
                       FROM job_attempts a WHERE a.job_id = g.id), '[]'::jsonb)
           || jsonb_build_array(jsonb_build_object(
                        'attempt', g.attempt, 'started_at', coalesce(v.claimed_at, $1), 'finished_at', $1,
                        'duration_ms', extract(epoch FROM $1 - coalesce(v.claimed_at, $1)) * 1000,
                        'outcome', 'dead', 'error_class', 'lease_expired', 'error', v.error)),
           g.created_at, $1
      FROM gone g JOIN verdict v USING (id)
), settled AS (
    -- the dependents' failure policies (see complete_dead)
    SELECT settle_parents(array_agg(id), 'failed', '{}', '{}', $1) AS released
      FROM gone WHERE has_dependents HAVING count(*) > 0
)
SELECT v.id, v.tier, v.dead FROM verdict v
 WHERE v.id IN (SELECT id FROM back UNION ALL SELECT id FROM gone)
   AND (SELECT count(*) FROM settled) >= 0  -- runs the settling (a CTE nothing reads never runs)

-- name: defer
-- Puts running jobs back to wait until their run_at without counting the attempt: the handler
-- could not start yet (a rate limit's wait would have held a worker slot). No attempt is recorded.
-- Matched like the completions (see complete.sql): by primary key, the attempt by width_bucket.
-- params: $1 id[], $2 attempt[], $3 run_at[]
WITH s AS (
    SELECT array_agg(id ORDER BY id, attempt) AS ids, array_agg(attempt ORDER BY id, attempt) AS attempts,
           array_agg(run_at ORDER BY id, attempt) AS run_ats
      FROM unnest($1::bigint[], $2::integer[], $3::timestamptz[]) AS r(id, attempt, run_at)
)
UPDATE jobs j
   SET state = 'waiting', attempt = j.attempt - 1, run_at = s.run_ats[width_bucket(j.id, s.ids)],
       worker_id = NULL, claimed_at = NULL, lease_until = NULL
  FROM s
 WHERE j.id = ANY(s.ids) AND j.state = 'running' AND j.attempt = s.attempts[width_bucket(j.id, s.ids)]
RETURNING j.id

-- name: notify_tiers
SELECT pg_notify(current_schema() || '_jobs', $1::text)
