-- name: claim
-- Claims up to $2 due jobs of tier $1 from queues that are not paused, lowest priority number
-- first, then earliest due, then FIFO. SKIP LOCKED lets several dispatchers claim side by side.
-- The update finds the picked rows by primary key (= ANY): a join with the CTE lets the planner
-- hash the whole table, which makes a claim cost grow with the backlog.
-- params: $1 tier, $2 limit, $3 worker id, $4 now, $5 lease until
WITH picked AS (
    SELECT id FROM jobs
     WHERE state = 'waiting' AND tier = $1 AND run_at <= $4
       AND queue NOT IN (SELECT name FROM queues WHERE paused)
     ORDER BY priority, run_at, id
     LIMIT $2
       FOR UPDATE SKIP LOCKED
)
UPDATE jobs j
   SET state = 'running', attempt = j.attempt + 1, worker_id = $3, claimed_at = $4, lease_until = $5
 WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
RETURNING j.id, j.queue, j.priority, j.data, j.attempt, j.max_attempts, j.retries, j.run_at,
          j.created_at, j.singleton_key, j.dead_letter_id

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
-- Returns jobs whose lease ran out to the queue and records the lost attempt.
-- params: $1 now, $2 limit
WITH expired AS (
    SELECT id FROM jobs WHERE state = 'running' AND lease_until < $1
     ORDER BY lease_until LIMIT $2 FOR UPDATE SKIP LOCKED
), old AS (
    SELECT j.id, j.attempt, j.queue, j.worker_id, j.claimed_at FROM jobs j JOIN expired USING (id)
), upd AS (
    UPDATE jobs j
       SET state = 'waiting', run_at = $1, worker_id = NULL, claimed_at = NULL, lease_until = NULL,
           last_error_class = 'lease_expired',
           last_error = 'lease expired: the worker ' || coalesce(old.worker_id, '?') || ' stopped heartbeating',
           retries = jsonb_set(j.retries, '{lease_expired}',
                               to_jsonb(coalesce((j.retries ->> 'lease_expired')::int, 0) + 1))
      FROM old
     WHERE j.id = old.id
    RETURNING j.id, j.tier, j.last_error
)
INSERT INTO job_attempts (job_id, attempt, queue, worker_id, started_at, finished_at, duration_ms,
                          outcome, error_class, error)
SELECT old.id, old.attempt, old.queue, old.worker_id, coalesce(old.claimed_at, $1), $1,
       extract(epoch FROM $1 - coalesce(old.claimed_at, $1)) * 1000, 'lease_expired',
       'lease_expired', upd.last_error
  FROM old JOIN upd USING (id)
ON CONFLICT (job_id, attempt) DO NOTHING
RETURNING job_id

-- name: notify_tiers
SELECT pg_notify(current_schema() || '_jobs', $1::text)
