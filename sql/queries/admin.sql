-- Queries of the admin HTTP API (fleetbox/admin). Every list is index-backed and bounded by its
-- LIMIT, so its cost does not grow with the tables (the indexes are in 0003_admin.sql).

-- name: admin_custom_plans
-- The lists run in a transaction that plans them for their actual parameters. A generic plan
-- estimates "queue = $1" at the average queue's share: for a rare queue beside a million jobs of
-- another it walks the primary key past all of them (measured: 300 ms instead of 1).
SET LOCAL plan_cache_mode = force_custom_plan

-- name: admin_queue_get
SELECT name, tier, paused, paused_at, paused_by FROM queues WHERE name = $1

-- name: admin_jobs_waiting
-- Jobs of a queue not yet started in id order (FIFO), by jobs_waiting_queue; $2 picks waiting (due),
-- scheduled or every one not yet started (pending), by the same rules as queue_depth.
-- params: $1 queue, $2 'waiting'|'scheduled'|'pending', $3 now, $4 after id (0: from the start),
--         $5 offset, $6 limit
SELECT id, queue, priority,
       CASE WHEN attempt > 0 THEN 'retrying' WHEN run_at > $3 THEN 'scheduled' ELSE 'waiting' END AS state,
       data, singleton_key, attempt AS attempts, max_attempts, run_at, created_at,
       NULL::timestamptz AS finished_at, last_error_class, last_error, dead_letter_id
  FROM jobs
 WHERE queue = $1 AND state = 'waiting' AND id > $4
   AND ($2::text = 'pending'
        OR ($2::text = 'waiting' AND attempt = 0 AND run_at <= $3)
        OR ($2::text = 'scheduled' AND attempt = 0 AND run_at > $3))
 ORDER BY id
OFFSET $5 LIMIT $6

-- name: admin_jobs_retrying
-- Jobs of a queue waiting for their next attempt, by jobs_retrying_queue (holds only those).
-- params: $1 queue, $2 after id (0: from the start), $3 offset, $4 limit
SELECT id, queue, priority, 'retrying' AS state, data, singleton_key, attempt AS attempts,
       max_attempts, run_at, created_at, NULL::timestamptz AS finished_at, last_error_class,
       last_error, dead_letter_id
  FROM jobs
 WHERE queue = $1 AND state = 'waiting' AND attempt > 0 AND id > $2
 ORDER BY id
OFFSET $3 LIMIT $4

-- name: admin_jobs_blocked
-- Jobs of a queue waiting for their parents (depends_on), in id order. The primary key walks
-- jobs_blocked, which holds only blocked jobs (released ones move to jobs).
-- params: $1 queue, $2 after id (0: from the start), $3 offset, $4 limit
SELECT id, queue, priority, 'blocked' AS state, data, NULL::text AS singleton_key, 0 AS attempts,
       max_attempts, run_at, created_at, NULL::timestamptz AS finished_at, NULL::text AS last_error_class,
       NULL::text AS last_error, NULL::bigint AS dead_letter_id
  FROM jobs_blocked
 WHERE queue = $1 AND id > $2
 ORDER BY id
OFFSET $3 LIMIT $4

-- name: admin_jobs_running
-- Running jobs of a queue. Only a running job has a lease, so jobs_lease holds them all: the scan
-- is bounded by the worker slots of every appliance, not by the backlog.
-- params: $1 queue, $2 after id (0: from the start), $3 offset, $4 limit
SELECT id, queue, priority, 'running' AS state, data, singleton_key, attempt AS attempts,
       max_attempts, run_at, created_at, NULL::timestamptz AS finished_at, last_error_class,
       last_error, dead_letter_id
  FROM jobs
 WHERE lease_until IS NOT NULL AND state = 'running' AND queue = $1 AND id > $2
 ORDER BY id
OFFSET $3 LIMIT $4

-- name: admin_jobs_live
-- Every job still in a queue (waiting or running) in id order: the two index scans above, each
-- cut at offset + limit rows, then merged (left to itself the planner sorts the whole queue).
-- params: $1 queue, $2 now, $3 after id (0: from the start), $4 offset, $5 limit
SELECT * FROM (
    (SELECT id, queue, priority,
            CASE WHEN attempt > 0 THEN 'retrying' WHEN run_at > $2 THEN 'scheduled' ELSE 'waiting' END AS state,
            data, singleton_key, attempt AS attempts, max_attempts, run_at, created_at,
            NULL::timestamptz AS finished_at, last_error_class, last_error, dead_letter_id
       FROM jobs
      WHERE queue = $1 AND state = 'waiting' AND id > $3
      ORDER BY id
      LIMIT $4::bigint + $5::bigint)
    UNION ALL
    (SELECT id, queue, priority, 'running'::text, data, singleton_key, attempt, max_attempts, run_at,
            created_at, NULL::timestamptz, last_error_class, last_error, dead_letter_id
       FROM jobs
      WHERE lease_until IS NOT NULL AND state = 'running' AND queue = $1 AND id > $3
      ORDER BY id
      LIMIT $4::bigint + $5::bigint)
) j
 ORDER BY id
OFFSET $4 LIMIT $5

-- name: admin_job_done_cursor
-- Where a page of finished jobs continues: the finish time of the last job of the page before.
-- params: $1 job id, $2 queue, $3 state
SELECT finished_at FROM jobs_done WHERE id = $1 AND queue = $2 AND state = $3

-- name: admin_jobs_succeeded
-- Succeeded jobs of a queue, last finished first, by jobs_done_queue_finished.
-- The page starts below ($2, $3); the first page passes ('infinity', the largest bigint), so the
-- statement has no OR for the planner to trip over.
-- params: $1 queue, $2 before finished_at, $3 before id, $4 offset, $5 limit
SELECT id, queue, priority, state, data, singleton_key, attempts, NULL::integer AS max_attempts,
       run_at, created_at, finished_at, NULL::text AS last_error_class, NULL::text AS last_error,
       dead_letter_id
  FROM jobs_done
 WHERE queue = $1 AND state = 'succeeded' AND (finished_at, id) < ($2::timestamptz, $3::bigint)
 ORDER BY finished_at DESC, id DESC
OFFSET $4 LIMIT $5

-- name: admin_jobs_unsucceeded
-- Dead or cleared jobs of a queue, last finished first, by jobs_done_unsucceeded (which holds only
-- those: the predicate state <> 'succeeded' is spelled out so the planner can use it).
-- params: $1 queue, $2 'dead'|'cleared', $3 before finished_at, $4 before id (as above), $5 offset, $6 limit
SELECT id, queue, priority, state, data, singleton_key, attempts, NULL::integer AS max_attempts,
       run_at, created_at, finished_at, NULL::text AS last_error_class, NULL::text AS last_error,
       dead_letter_id
  FROM jobs_done
 WHERE state <> 'succeeded' AND queue = $1 AND state = $2
   AND (finished_at, id) < ($3::timestamptz, $4::bigint)
 ORDER BY finished_at DESC, id DESC
OFFSET $5 LIMIT $6

-- name: admin_failed_attempts
-- The latest attempts of a queue that did not succeed, by job_attempts_failed.
-- params: $1 queue, $2 limit
SELECT job_id, attempt, queue, worker_id, started_at, finished_at, duration_ms, outcome,
       error_class, error
  FROM job_attempts
 WHERE outcome <> 'succeeded' AND queue = $1
 ORDER BY finished_at DESC
 LIMIT $2

-- name: admin_dead_letter_cursor
SELECT failed_at FROM dead_letters WHERE id = $1

-- name: admin_dead_letters_open_of_queue
-- A queue's open dead letters, newest first (for /failed).
-- params: $1 queue, $2 limit
SELECT id, job_id, queue, priority, data, singleton_key, error_class, error, attempts, history,
       job_created_at, failed_at, status, reviewed_at, reviewed_by, resolution_notes,
       retried_job_id, retried_at, discarded_at
  FROM dead_letters
 WHERE queue = $1 AND status = 'open'
 ORDER BY failed_at DESC, id DESC
 LIMIT $2

-- name: admin_queue_clear
-- Clears a queue: its jobs not yet started (waiting, scheduled, retrying) move to jobs_done as 'cleared'.
-- A running job is never touched: a job being claimed at the same moment is either skipped by
-- the claim (we hold its row lock) or, once claimed, no longer matches state = 'waiting' when
-- the DELETE re-reads it.
-- params: $1 queue, $2 now
-- The dependents of a cleared job follow their failure policies (settle_parents).
WITH gone AS (
    DELETE FROM jobs WHERE queue = $1 AND state = 'waiting'
    RETURNING id, queue, priority, data, singleton_key, attempt, dead_letter_id, created_at, run_at,
              has_dependents
), moved AS (
    INSERT INTO jobs_done (id, queue, priority, state, data, singleton_key, attempts, dead_letter_id,
                           created_at, run_at, finished_at)
    SELECT id, queue, priority, 'cleared', data, singleton_key, attempt, dead_letter_id, created_at,
           run_at, $2
      FROM gone
    RETURNING 1
), settled AS (
    SELECT settle_parents(array_agg(id), 'failed', '{}', '{}', $2) FROM gone WHERE has_dependents
    HAVING count(*) > 0
)
SELECT count(*) FROM moved WHERE (SELECT count(*) FROM settled) >= 0

-- name: admin_dead_letters_lock_for_retry
-- The open dead letters a bulk retry would take, locked until the transaction ends; at most $4
-- (the caller asks for one more than it allows, to tell "too many" from "exactly that many").
-- params: $1 queue|null, $2 error class|null, $3 reviewed|null, $4 limit, $5 text in the error|null
SELECT id FROM dead_letters
 WHERE status = 'open'
   AND ($1::text IS NULL OR queue = $1)
   AND ($2::text IS NULL OR error_class = $2)
   AND ($3::boolean IS NULL OR (reviewed_at IS NOT NULL) = $3)
   AND ($5::text IS NULL OR strpos(lower(error), lower($5::text)) > 0)
 ORDER BY id
 LIMIT $4
   FOR UPDATE

-- name: admin_dead_letters_requeue
-- Re-enqueues dead letters (already locked) as new jobs on their original queues, linked back, and
-- marks them retried. A dead letter whose singleton key is held by a waiting or running job
-- stays open (it is missing from the result).
-- params: $1 dead letter id[], $2 now
WITH d AS (
    SELECT d.id, d.queue, q.tier, d.priority, d.data, d.singleton_key
      FROM dead_letters d JOIN queues q ON q.name = d.queue
     WHERE d.id = ANY($1::bigint[]) AND d.status = 'open' AND q.tier > 0
), ins AS (
    INSERT INTO jobs (queue, tier, priority, data, singleton_key, dead_letter_id, run_at)
    SELECT queue, tier, priority, data, singleton_key, id, $2 FROM d ORDER BY id
    ON CONFLICT (queue, singleton_key) WHERE singleton_key IS NOT NULL DO NOTHING
    RETURNING id, dead_letter_id
), upd AS (
    UPDATE dead_letters dl SET status = 'retried', retried_job_id = ins.id, retried_at = $2
      FROM ins
     WHERE dl.id = ins.dead_letter_id
    RETURNING dl.id AS dead_letter_id, ins.id AS job_id
)
SELECT dead_letter_id, job_id FROM upd ORDER BY dead_letter_id

-- name: admin_audit_many
-- One audit row per target.
-- params: $1 actor, $2 action, $3 target[], $4 details[]
INSERT INTO audit_log (actor, action, target, details)
SELECT $1, $2, t, d FROM unnest($3::text[], $4::jsonb[]) AS u(t, d)

-- name: admin_search_timeout
-- A job search may scan: it stops after this long (the dashboard says to narrow it) rather than
-- hold a connection while an operator waits.
SET LOCAL statement_timeout = '3s'

-- name: admin_jobs_search
-- Jobs of every state (waiting and running in jobs, finished in jobs_done, blocked in jobs_blocked),
-- newest first, whose payload contains $3 (jsonb @>) and whose error text holds $4
-- (case-insensitive): the latest error of a job in the queue, or any failed attempt of a finished
-- one (a blocked job has none); in state $7 (a state of
-- the job lists: the other table's branch is skipped by a one-time filter), created at or after $8.
-- Keyset paging on id; each branch stops at $5 rows, so a common filter is cheap and a rare one
-- is cut by the timeout above.
-- params: $1 before id (the largest bigint: from the newest), $2 queue or NULL, $3 jsonb or NULL,
--         $4 error text or NULL, $5 limit, $6 now, $7 state or NULL, $8 created since or NULL
SELECT * FROM (
    (SELECT id, queue, priority,
            CASE WHEN state = 'running' THEN 'running'
                 WHEN attempt > 0 THEN 'retrying'
                 WHEN run_at > $6 THEN 'scheduled'
                 ELSE 'waiting' END AS state,
            data, singleton_key, attempt AS attempts, max_attempts, run_at, created_at,
            NULL::timestamptz AS finished_at, last_error_class, last_error, dead_letter_id
       FROM jobs
      WHERE ($7::text IS NULL OR $7::text IN ('waiting', 'scheduled', 'retrying', 'running', 'pending'))
        AND id < $1
        AND ($2::text IS NULL OR queue = $2)
        AND ($3::jsonb IS NULL OR data @> $3::jsonb)
        AND ($4::text IS NULL OR strpos(lower(last_error), lower($4)) > 0)
        AND ($8::timestamptz IS NULL OR created_at >= $8)
        AND ($7::text IS NULL
             OR ($7::text = 'pending' AND state = 'waiting')
             OR ($7::text = 'running' AND state = 'running')
             OR ($7::text = 'retrying' AND state = 'waiting' AND attempt > 0)
             OR ($7::text = 'scheduled' AND state = 'waiting' AND attempt = 0 AND run_at > $6)
             OR ($7::text = 'waiting' AND state = 'waiting' AND attempt = 0 AND run_at <= $6))
      ORDER BY id DESC
      LIMIT $5)
    UNION ALL
    (SELECT d.id, d.queue, d.priority, d.state, d.data, d.singleton_key, d.attempts, NULL::integer,
            d.run_at, d.created_at, d.finished_at, NULL::text, NULL::text, d.dead_letter_id
       FROM jobs_done d
      WHERE ($7::text IS NULL OR $7::text IN ('succeeded', 'dead', 'cleared', 'cancelled'))
        AND d.id < $1
        AND ($2::text IS NULL OR d.queue = $2)
        AND ($3::jsonb IS NULL OR d.data @> $3::jsonb)
        AND ($4::text IS NULL OR EXISTS (
              SELECT 1 FROM job_attempts a
               WHERE a.job_id = d.id AND a.outcome <> 'succeeded'
                 AND strpos(lower(a.error), lower($4)) > 0))
        AND ($8::timestamptz IS NULL OR d.created_at >= $8)
        AND ($7::text IS NULL OR d.state = $7)
      ORDER BY d.id DESC
      LIMIT $5)
    UNION ALL
    -- jobs waiting for their parents: no error yet, so an error-text search skips them
    (SELECT b.id, b.queue, b.priority, 'blocked', b.data, NULL::text, 0, b.max_attempts, b.run_at,
            b.created_at, NULL::timestamptz, NULL::text, NULL::text, NULL::bigint
       FROM jobs_blocked b
      WHERE ($7::text IS NULL OR $7::text = 'blocked')
        AND $4::text IS NULL
        AND b.id < $1
        AND ($2::text IS NULL OR b.queue = $2)
        AND ($3::jsonb IS NULL OR b.data @> $3::jsonb)
        AND ($8::timestamptz IS NULL OR b.created_at >= $8)
      ORDER BY b.id DESC
      LIMIT $5)
) j
 ORDER BY id DESC
 LIMIT $5
