-- The spec's own table names answer the spec's own SQL, and every table that grows with traffic
-- has a time column retention can cut by cheaply.

-- job_tracking: every job wherever it is (waiting or running in the hot table, finished in
-- jobs_done, archived in jobs_archive), with the spec's words for its state and its latest error.
-- "Check error patterns in job_tracking":
--   SELECT queue_name, error_type, count(*) FROM fleetbox.job_tracking
--    WHERE status IN ('failed', 'retry') GROUP BY 1, 2 ORDER BY 3 DESC;
-- The error of a finished job is its last attempt's (a lateral read by primary key).
CREATE VIEW job_tracking AS
SELECT j.id AS job_id, j.queue AS queue_name,
       CASE WHEN j.state = 'running' THEN 'active'
            WHEN j.attempt > 0 THEN 'retry'
            WHEN j.run_at > now() THEN 'scheduled'
            ELSE 'pending' END AS status,
       CASE WHEN j.state = 'running' THEN 'running'
            WHEN j.attempt > 0 THEN 'retrying'
            WHEN j.run_at > now() THEN 'scheduled'
            ELSE 'waiting' END AS state,
       j.priority, j.data, j.singleton_key, j.attempt AS attempts, j.max_attempts,
       j.last_error_class AS error_type, j.last_error AS error_message,
       j.created_at, j.run_at AS scheduled_for, j.claimed_at AS started_at, NULL::timestamptz AS completed_at,
       NULL::double precision AS duration_ms, j.worker_id, j.dead_letter_id AS retry_of_dead_letter_id
  FROM jobs j
UNION ALL
SELECT d.id, d.queue,
       CASE d.state WHEN 'succeeded' THEN 'completed' WHEN 'dead' THEN 'failed' ELSE 'cancelled' END,
       d.state, d.priority, d.data, d.singleton_key, d.attempts, NULL::integer,
       a.error_class, a.error, d.created_at, d.run_at, a.started_at, d.finished_at, d.duration_ms,
       a.worker_id, d.dead_letter_id
  FROM jobs_done d
  LEFT JOIN LATERAL (SELECT error_class, error, started_at, worker_id FROM job_attempts
                      WHERE job_id = d.id AND attempt = d.attempts) a ON true
UNION ALL
SELECT r.id, r.queue, CASE r.state WHEN 'succeeded' THEN 'completed' ELSE 'cancelled' END, r.state,
       r.priority, r.data, r.singleton_key, r.attempts, NULL::integer, NULL::text, NULL::text, r.created_at,
       r.run_at, NULL::timestamptz, r.finished_at, r.duration_ms, NULL::text, r.dead_letter_id
  FROM jobs_archive r;

-- dead_letter_queue: the dead letters with the spec's words.
--   SELECT * FROM fleetbox.dead_letter_queue WHERE NOT reviewed ORDER BY failed_at DESC;
CREATE VIEW dead_letter_queue AS
SELECT id, job_id, queue AS original_queue, queue AS queue_name, priority, data, singleton_key,
       error_class AS error_type, error AS error_message, attempts, history, job_created_at, failed_at,
       reviewed_at IS NOT NULL AS reviewed, reviewed_at, reviewed_by, resolution_notes, status,
       retried_job_id, retried_at, discarded_at
  FROM dead_letters;

-- Time columns retention cuts by: rows arrive in time order, so a BRIN index costs almost nothing
-- per insert and finds an old range in a few pages.
CREATE INDEX rate_limit_tracking_at_brin ON rate_limit_tracking USING brin (at);
CREATE INDEX audit_log_at ON audit_log USING brin (at);
CREATE INDEX sync_history_started ON sync_history USING brin (started_at);
CREATE INDEX performance_reports_end ON performance_reports (period_end);
CREATE INDEX queue_alerts_resolved ON queue_alerts (resolved_at) WHERE resolved_at IS NOT NULL;
-- inbound messages are updated in place (a later version of a message): a btree, not BRIN.
CREATE INDEX inbound_messages_updated ON inbound_messages (updated_at);
CREATE INDEX graph_subscriptions_removed ON graph_subscriptions (removed_at) WHERE removed_at IS NOT NULL;
CREATE INDEX graph_uploads_updated ON graph_uploads (updated_at);
-- Dead letters an operator finished with (retried or discarded), oldest first.
CREATE INDEX dead_letters_resolved ON dead_letters (coalesce(retried_at, discarded_at))
    WHERE status <> 'open';
