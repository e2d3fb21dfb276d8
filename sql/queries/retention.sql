-- Retention (fleetbox.retention): every statement works on one batch, found through a BRIN
-- index on the time column, so a run costs what it moves or deletes, not the table size.

-- name: retention_archive_batch
-- Moves up to $2 completed jobs (succeeded, cleared or cancelled, never dead) that finished before $1 from
-- jobs_done to jobs_archive. SKIP LOCKED lets two processes archive side by side.
-- params: $1 finished before, $2 batch size, $3 archived at
WITH picked AS (
    SELECT id FROM jobs_done
     WHERE finished_at < $1 AND state IN ('succeeded', 'cleared', 'cancelled')
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
), results AS (
    -- their results, why they were cancelled, and the edges to their children (a parent is
    -- archived after its children were released, so none still waits on it)
    DELETE FROM job_results r WHERE r.job_id = ANY(ARRAY(SELECT id FROM gone))
), cancellations AS (
    DELETE FROM job_cancellations c WHERE c.job_id = ANY(ARRAY(SELECT id FROM gone))
), edges AS (
    DELETE FROM job_dependencies d WHERE d.parent_id = ANY(ARRAY(SELECT id FROM gone)) AND d.state IS NOT NULL
), steps AS (
    DELETE FROM workflow_steps s WHERE s.job_id = ANY(ARRAY(SELECT id FROM gone))
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

-- name: retention_rate_events_batch
-- Deletes up to $2 rate-limit events older than $1 (rate_limit_tracking_at_brin).
-- params: $1 before, $2 batch size
DELETE FROM rate_limit_tracking
 WHERE id = ANY(ARRAY(SELECT id FROM rate_limit_tracking WHERE at < $1 LIMIT $2))
RETURNING 1

-- name: retention_alerts_batch
-- Deletes up to $2 alerts resolved before $1 (open alerts are never deleted).
-- params: $1 before, $2 batch size
DELETE FROM queue_alerts
 WHERE id = ANY(ARRAY(SELECT id FROM queue_alerts WHERE resolved_at < $1 LIMIT $2))
RETURNING 1

-- name: retention_audit_batch
-- Deletes up to $2 audit rows older than $1 (audit_log_at).
-- params: $1 before, $2 batch size
DELETE FROM audit_log
 WHERE id = ANY(ARRAY(SELECT id FROM audit_log WHERE at < $1 LIMIT $2))
RETURNING 1

-- name: retention_sync_history_batch
-- Deletes up to $2 sync rounds started before $1, but never the latest complete round of a
-- resource and scope: its delta link is where the next sync goes on from.
-- params: $1 before, $2 batch size
DELETE FROM sync_history
 WHERE id = ANY(ARRAY(
        SELECT s.id FROM sync_history s
         WHERE s.started_at < $1
           AND (s.delta_link IS NULL OR s.finished_at IS NULL OR EXISTS (
                SELECT 1 FROM sync_history n
                 WHERE n.resource = s.resource AND n.scope = s.scope AND n.started_at > s.started_at
                   AND n.delta_link IS NOT NULL AND n.finished_at IS NOT NULL))
         LIMIT $2))
RETURNING 1

-- name: retention_inbound_batch
-- Deletes up to $2 messages fetched from Graph that have not changed since $1.
-- params: $1 before, $2 batch size
DELETE FROM inbound_messages
 WHERE ctid = ANY(ARRAY(SELECT ctid FROM inbound_messages WHERE updated_at < $1 LIMIT $2))
RETURNING 1

-- name: retention_reports_batch
-- Deletes up to $2 daily performance reports of periods that ended before $1.
-- params: $1 before, $2 batch size
DELETE FROM performance_reports
 WHERE id = ANY(ARRAY(SELECT id FROM performance_reports WHERE period_end < $1 LIMIT $2))
RETURNING 1

-- name: retention_appliances_batch
-- Forgets up to $2 appliances not seen since $1.
-- params: $1 before, $2 batch size
DELETE FROM appliances
 WHERE worker_id = ANY(ARRAY(SELECT worker_id FROM appliances WHERE seen_at < $1 LIMIT $2))
RETURNING 1

-- name: retention_subscriptions_batch
-- Deletes up to $2 subscriptions removed in Graph before $1.
-- params: $1 before, $2 batch size
DELETE FROM graph_subscriptions
 WHERE id = ANY(ARRAY(SELECT id FROM graph_subscriptions WHERE removed_at < $1 LIMIT $2))
RETURNING 1

-- name: retention_uploads_batch
-- Deletes up to $2 upload sessions untouched since $1 whose job is no longer waiting or running
-- (Graph expires its upload sessions long before this).
-- params: $1 before, $2 batch size
DELETE FROM graph_uploads u
 WHERE u.job_id = ANY(ARRAY(SELECT g.job_id FROM graph_uploads g
                             WHERE g.updated_at < $1 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = g.job_id)
                             LIMIT $2))
RETURNING 1

-- name: retention_dead_letters_batch
-- Deletes up to $2 dead letters an operator finished with (retried or discarded) before $1, with
-- their job's record, attempts and Graph effects. Open dead letters are never deleted here.
-- params: $1 before, $2 batch size
WITH picked AS (
    SELECT id, job_id FROM dead_letters
     WHERE status <> 'open' AND coalesce(retried_at, discarded_at) < $1
     LIMIT $2 FOR UPDATE SKIP LOCKED
), letters AS (
    DELETE FROM dead_letters d USING picked p WHERE d.id = p.id RETURNING d.job_id
), done AS (
    DELETE FROM jobs_done j WHERE j.id = ANY(ARRAY(SELECT job_id FROM letters)) AND j.state = 'dead' RETURNING 1
), attempts AS (
    DELETE FROM job_attempts a WHERE a.job_id = ANY(ARRAY(SELECT job_id FROM letters)) RETURNING 1
), effects AS (
    DELETE FROM graph_effects e WHERE e.job_id = ANY(ARRAY(SELECT job_id FROM letters)) RETURNING 1
)
SELECT 1 FROM letters

-- name: retention_schedule_runs_batch
-- Deletes up to $2 schedule runs fired before $1 (where a schedule stands, its last tick and job,
-- is in scheduled_jobs).
-- params: $1 before, $2 batch size
DELETE FROM schedule_runs
 WHERE ctid = ANY(ARRAY(SELECT ctid FROM schedule_runs WHERE fired_at < $1 LIMIT $2))
RETURNING 1

-- name: retention_alert_notifications_batch
-- Deletes up to $2 alert notifications recorded before $1 (their alerts stay, by their own age).
-- params: $1 before, $2 batch size
DELETE FROM alert_notifications
 WHERE ctid = ANY(ARRAY(SELECT ctid FROM alert_notifications WHERE created_at < $1 LIMIT $2))
RETURNING 1
