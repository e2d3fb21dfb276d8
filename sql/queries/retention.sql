-- Retention (fleetbox.retention): every statement works on one batch, found through a BRIN
-- index on the time column, so a run costs what it moves or deletes, not the table size.

-- name: retention_archive_batch
-- Moves up to $2 completed jobs (succeeded or cleared, never dead) that finished before $1 from
-- jobs_done to jobs_archive. SKIP LOCKED lets two processes archive side by side.
-- params: $1 finished before, $2 batch size, $3 archived at
WITH picked AS (
    SELECT id FROM jobs_done
     WHERE finished_at < $1 AND state IN ('succeeded', 'cleared')
     LIMIT $2
       FOR UPDATE SKIP LOCKED
), moved AS (
    DELETE FROM jobs_done d WHERE d.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING d.id, d.queue, d.priority, d.state, d.data, d.singleton_key, d.attempts,
              d.dead_letter_id, d.created_at, d.run_at, d.finished_at, d.duration_ms
)
INSERT INTO jobs_archive (id, queue, priority, state, data, singleton_key, attempts, dead_letter_id,
                          created_at, run_at, finished_at, duration_ms, archived_at)
SELECT id, queue, priority, state, data, singleton_key, attempts, dead_letter_id, created_at, run_at,
       finished_at, duration_ms, $3
  FROM moved
RETURNING id

-- name: retention_delete_archived_batch
-- Deletes up to $2 archived jobs archived before $1, with their attempts (job_attempts by its
-- primary key). Dead-lettered jobs are never in the archive, so their history stays.
-- params: $1 archived before, $2 batch size
WITH picked AS (
    SELECT id FROM jobs_archive WHERE archived_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM jobs_archive a WHERE a.id = ANY(ARRAY(SELECT id FROM picked)) RETURNING a.id
), attempts AS (
    DELETE FROM job_attempts t WHERE t.job_id = ANY(ARRAY(SELECT id FROM gone)) RETURNING 1
), effects AS (
    -- what those jobs created in Graph: kept while a retry could still need it, not forever
    DELETE FROM graph_effects e WHERE e.job_id = ANY(ARRAY(SELECT id FROM gone)) RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS jobs, (SELECT count(*) FROM attempts) AS attempts

-- name: retention_statistics_batch
-- Deletes up to $2 statistics snapshot rows taken before $1 (queue_statistics_at).
-- params: $1 before, $2 batch size
DELETE FROM queue_statistics
 WHERE ctid = ANY(ARRAY(SELECT ctid FROM queue_statistics WHERE at < $1 LIMIT $2))
RETURNING 1

-- name: retention_ticks_batch
-- Deletes up to $2 scheduler tick records older than $1.
-- params: $1 before, $2 batch size
DELETE FROM scheduler_ticks
 WHERE ctid = ANY(ARRAY(SELECT ctid FROM scheduler_ticks WHERE tick < $1 LIMIT $2))
RETURNING 1

-- name: retention_webhook_events_batch
-- Deletes up to $2 received webhook notifications older than $1 (webhook_events_received).
-- params: $1 before, $2 batch size
DELETE FROM webhook_events
 WHERE id = ANY(ARRAY(SELECT id FROM webhook_events WHERE received_at < $1 LIMIT $2))
RETURNING 1
