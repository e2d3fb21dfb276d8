-- Monitoring reads and writes (fleetbox.monitor). None of them counts over a whole finished-job
-- table: depth is counted in the hot jobs table (queue_depth, only unfinished jobs), window
-- figures read the (queue, finished_at) index of job_attempts for the window only, dead letters
-- the partial index of open ones (dead_letter_depth), and time series the (at) index of
-- queue_statistics.

-- name: monitor_window
-- Per queue, the latest attempts that finished after $1, at most $2 of them: one backward range
-- scan of job_attempts_queue_finished per queue (the LATERAL keeps the queue the leading key).
-- The cap keeps a health check's cost bounded at any throughput (monitor/health.py,
-- WINDOW_SAMPLE); `oldest` is how far back the sample reached.
-- params: $1 window start, $2 most attempts per queue
SELECT q.name AS queue, w.attempts, w.succeeded, w.failed, w.avg_ms, w.p95_ms, w.oldest
  FROM queues q
 CROSS JOIN LATERAL (
        SELECT count(*) AS attempts,
               count(*) FILTER (WHERE a.outcome = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE a.outcome <> 'succeeded') AS failed,
               avg(a.duration_ms) AS avg_ms,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY a.duration_ms) AS p95_ms,
               min(a.finished_at) AS oldest
          FROM (SELECT outcome, duration_ms, finished_at FROM job_attempts
                 WHERE queue = q.name AND finished_at > $1
                 ORDER BY finished_at DESC LIMIT $2) a
       ) w
 WHERE q.tier > 0

-- name: monitor_totals
-- Per queue, the attempts recorded by the snapshots in ($1, $2] (queue_statistics_at), for the
-- stats' last 24 hours and the daily report. Averages are weighted by attempts; p95 is the
-- highest snapshot p95 (an upper bound: percentiles cannot be merged exactly).
-- params: $1 from (exclusive), $2 to (inclusive)
SELECT queue, sum(succeeded)::bigint AS succeeded, sum(failed)::bigint AS failed,
       sum(dead)::bigint AS dead, sum(attempts)::bigint AS attempts,
       sum(avg_duration_ms * attempts) FILTER (WHERE attempts > 0)
         / nullif(sum(attempts) FILTER (WHERE attempts > 0), 0) AS avg_ms,
       max(p95_duration_ms) AS p95_ms,
       max(waiting + scheduled + retrying) AS peak_backlog
  FROM queue_statistics WHERE at > $1 AND at <= $2
 GROUP BY queue ORDER BY queue

-- name: monitor_thresholds_get
SELECT max_backlog, max_failure_rate, max_processing_time, max_dead_letter_jobs, updated_at, updated_by
  FROM monitor_thresholds WHERE id

-- name: monitor_thresholds_set
-- Changes the given thresholds (NULL keeps the stored value, or the configured one if none).
-- params: $1 max_backlog, $2 max_failure_rate, $3 max_processing_time, $4 max_dead_letter_jobs,
--         $5 at, $6 by
INSERT INTO monitor_thresholds AS t (id, max_backlog, max_failure_rate, max_processing_time,
                                     max_dead_letter_jobs, updated_at, updated_by)
VALUES (true, $1, $2, $3, $4, $5, $6)
ON CONFLICT (id) DO UPDATE
   SET max_backlog = coalesce(EXCLUDED.max_backlog, t.max_backlog),
       max_failure_rate = coalesce(EXCLUDED.max_failure_rate, t.max_failure_rate),
       max_processing_time = coalesce(EXCLUDED.max_processing_time, t.max_processing_time),
       max_dead_letter_jobs = coalesce(EXCLUDED.max_dead_letter_jobs, t.max_dead_letter_jobs),
       updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by
RETURNING max_backlog, max_failure_rate, max_processing_time, max_dead_letter_jobs, updated_at, updated_by

-- name: monitor_snapshot_lock
-- Serialises snapshots from several processes (held until the transaction ends).
SELECT pg_advisory_xact_lock(hashtext('fleetbox.snapshot:' || current_schema()))

-- name: monitor_last_snapshot
-- The end of the latest snapshot (a backward scan of queue_statistics_at: one row).
SELECT max(at) FROM queue_statistics

-- name: monitor_snapshot_write
-- One row per queue covering ($1, $2]: attempts from job_attempts in that interval only (index
-- range scans, as in monitor_window), depth from the hot table, open dead letters from their
-- partial index.
-- params: $1 period start, $2 period end (at), $3 now (waiting vs scheduled)
WITH depth AS (
    SELECT queue,
           count(*) FILTER (WHERE state = 'waiting' AND run_at <= $3 AND attempt = 0) AS waiting,
           count(*) FILTER (WHERE state = 'waiting' AND run_at > $3 AND attempt = 0)  AS scheduled,
           count(*) FILTER (WHERE state = 'waiting' AND attempt > 0)                 AS retrying,
           count(*) FILTER (WHERE state = 'running')                                 AS running
      FROM jobs GROUP BY queue
), dl AS (
    SELECT queue, count(*) AS open FROM dead_letters WHERE status = 'open' GROUP BY queue
)
INSERT INTO queue_statistics (queue, at, period_start, waiting, scheduled, retrying, running,
                              succeeded, failed, dead, attempts, avg_duration_ms, p95_duration_ms,
                              dead_letters)
SELECT q.name, $2, $1, coalesce(d.waiting, 0), coalesce(d.scheduled, 0), coalesce(d.retrying, 0),
       coalesce(d.running, 0), w.succeeded, w.failed, w.dead, w.attempts, w.avg_ms, w.p95_ms,
       coalesce(dl.open, 0)
  FROM queues q
 CROSS JOIN LATERAL (
        SELECT count(*) AS attempts,
               count(*) FILTER (WHERE a.outcome = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE a.outcome <> 'succeeded') AS failed,
               count(*) FILTER (WHERE a.outcome = 'dead') AS dead,
               avg(a.duration_ms) AS avg_ms,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY a.duration_ms) AS p95_ms
          FROM job_attempts a
         WHERE a.queue = q.name AND a.finished_at > $1 AND a.finished_at <= $2
       ) w
  LEFT JOIN depth d ON d.queue = q.name
  LEFT JOIN dl ON dl.queue = q.name
 WHERE q.tier > 0
ON CONFLICT (queue, at) DO NOTHING
RETURNING queue

-- name: monitor_series
-- Snapshots after $1 up to $2, per queue, in buckets of $3 (aligned to the Unix epoch).
-- Averages are weighted by attempts; p95 is the highest snapshot p95 in the bucket (an upper
-- bound: percentiles cannot be merged exactly).
-- params: $1 from, $2 to, $3 bucket interval
SELECT queue, date_bin($3::interval, at, timestamptz 'epoch') AS bucket,
       sum(succeeded)::bigint AS succeeded, sum(failed)::bigint AS failed, sum(dead)::bigint AS dead,
       sum(attempts)::bigint AS attempts,
       sum(avg_duration_ms * attempts) FILTER (WHERE attempts > 0)
         / nullif(sum(attempts) FILTER (WHERE attempts > 0), 0) AS avg_ms,
       max(p95_duration_ms) AS p95_ms,
       (array_agg(waiting + scheduled + retrying ORDER BY at DESC))[1] AS backlog,
       max(waiting + scheduled + retrying) AS peak_backlog,
       (array_agg(dead_letters ORDER BY at DESC))[1] AS dead_letters
  FROM queue_statistics
 WHERE at > $1 AND at <= $2
 GROUP BY queue, bucket
 ORDER BY queue, bucket

-- name: monitor_report_store
-- params: $1 period start, $2 period end, $3 created at, $4 report
INSERT INTO performance_reports (period_start, period_end, created_at, report)
VALUES ($1, $2, $3, $4)
ON CONFLICT (period_start, period_end) DO NOTHING
RETURNING id

-- name: monitor_report_get
SELECT id, period_start, period_end, created_at, report FROM performance_reports
 WHERE period_start = $1 AND period_end = $2

-- name: alert_check_lock
-- Serialises alert checks from several processes (held until the transaction ends).
SELECT pg_advisory_xact_lock(hashtext('fleetbox.alerts:' || current_schema()))

-- name: alert_open
-- Opens an alert unless one is open for this (kind, queue, subject): the unique partial index
-- queue_alerts_open decides, so two processes racing leave one open alert.
-- params: $1 queue|null, $2 kind, $3 message, $4 value, $5 threshold, $6 opened at, $7 subject|null
INSERT INTO queue_alerts (queue, kind, message, value, threshold, opened_at, subject)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (kind, (coalesce(queue, '')), (coalesce(subject, ''))) WHERE resolved_at IS NULL DO NOTHING
RETURNING id, queue, subject, kind, message, value, threshold, opened_at, resolved_at

-- name: alert_list_open
SELECT id, queue, subject, kind, message, value, threshold, opened_at, resolved_at
  FROM queue_alerts WHERE resolved_at IS NULL

-- name: alert_resolve
-- Resolves the given open alerts; an alert another process resolved first is not returned.
-- params: $1 id[], $2 resolved at
UPDATE queue_alerts SET resolved_at = $2
 WHERE id = ANY($1::bigint[]) AND resolved_at IS NULL
RETURNING id, queue, subject, kind, message, value, threshold, opened_at, resolved_at

-- name: alert_list
-- Newest first; $1 'open', 'resolved' or NULL (both).
-- params: $1 status|null, $2 limit
SELECT id, queue, subject, kind, message, value, threshold, opened_at, resolved_at
  FROM queue_alerts
 WHERE $1::text IS NULL OR ($1 = 'open') = (resolved_at IS NULL)
 ORDER BY opened_at DESC, id DESC
 LIMIT $2
