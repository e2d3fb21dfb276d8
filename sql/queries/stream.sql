-- The live stream's sampler (fleetbox/admin/stream.py): one sample per second at most, shared by
-- every subscriber, and only while someone is subscribed. Every query but stream_depth reads an
-- index range bounded by what happened since the previous sample (or in the last minute);
-- stream_depth counts the hot jobs table like queue_depth, and the sampler runs it less often
-- when it gets slow (see DEPTH_COST_FACTOR).

-- name: stream_depth
-- queue_depth plus the run_at of the oldest due waiting job, in the same scan.
-- params: $1 now
SELECT queue,
       count(*) FILTER (WHERE state = 'waiting' AND run_at <= $1 AND attempt = 0) AS waiting,
       count(*) FILTER (WHERE state = 'waiting' AND run_at > $1 AND attempt = 0)  AS scheduled,
       count(*) FILTER (WHERE state = 'waiting' AND attempt > 0)                 AS retrying,
       count(*) FILTER (WHERE state = 'running')                                 AS running,
       min(run_at) FILTER (WHERE state = 'waiting' AND run_at <= $1)              AS oldest_due
  FROM jobs GROUP BY queue

-- name: stream_dead_unreviewed
-- Open dead letters nobody reviewed yet, per original queue (the partial index of open ones).
SELECT queue, count(*) AS dead FROM dead_letters
 WHERE status = 'open' AND reviewed_at IS NULL
 GROUP BY queue

-- name: stream_alerts_open
-- The unique partial index queue_alerts_open holds exactly the open alerts.
SELECT count(*) FROM queue_alerts WHERE resolved_at IS NULL

-- name: stream_seconds
-- Attempts per queue and second that finished at or after $1, through job_attempts_queue_finished
-- (one range scan per queue). The sampler reads the last few seconds again on every sample, so
-- attempts the completer writes a little late still land in their second.
-- params: $1 from (inclusive)
SELECT q.name AS queue, s.sec, s.done, s.failed, s.avg_ms
  FROM queues q
 CROSS JOIN LATERAL (
        SELECT floor(extract(epoch FROM a.finished_at))::bigint AS sec,
               count(*) FILTER (WHERE a.outcome = 'succeeded') AS done,
               count(*) FILTER (WHERE a.outcome <> 'succeeded') AS failed,
               avg(a.duration_ms) AS avg_ms
          FROM job_attempts a
         WHERE a.queue = q.name AND a.finished_at >= $1
         GROUP BY 1
       ) s
 WHERE q.tier > 0

-- name: stream_p95
-- Per queue, the 95th percentile duration of the latest (at most $2) attempts that finished after
-- $1: a backward range scan of job_attempts_queue_finished cut at $2 rows, so its cost is bounded.
-- params: $1 since, $2 the most attempts per queue
SELECT q.name AS queue, p.p95_ms
  FROM queues q
 CROSS JOIN LATERAL (
        SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY r.duration_ms) AS p95_ms
          FROM (SELECT a.duration_ms FROM job_attempts a
                 WHERE a.queue = q.name AND a.finished_at > $1
                 ORDER BY a.finished_at DESC
                 LIMIT $2) r
       ) p
 WHERE q.tier > 0

-- name: stream_audit_last_id
SELECT coalesce(max(id), 0) FROM audit_log

-- name: stream_audit_after
-- Audit rows after id $1 in id order (primary key range), with the queue and job they concern:
-- the target names a queue, a job (job:<id>, looked up wherever the job is now) or a dead letter
-- (dead:<id>).
-- params: $1 after id, $2 limit
SELECT a.id, a.at, a.actor, a.action, a.target, a.details, t.dead_id,
       coalesce(d.job_id, t.job_id) AS job_id,
       coalesce(d.queue, j.queue, jd.queue, ja.queue, a.details->>'queue',
                CASE WHEN a.action LIKE 'queue.%' THEN a.target END) AS queue
  FROM audit_log a
 CROSS JOIN LATERAL (
        SELECT CASE WHEN a.target ~ '^job:[0-9]{1,18}$' THEN substr(a.target, 5)::bigint END AS job_id,
               CASE WHEN a.target ~ '^dead:[0-9]{1,18}$' THEN substr(a.target, 6)::bigint END AS dead_id
       ) t
  LEFT JOIN dead_letters d ON d.id = t.dead_id
  LEFT JOIN jobs j ON j.id = t.job_id
  LEFT JOIN jobs_done jd ON jd.id = t.job_id
  LEFT JOIN jobs_archive ja ON ja.id = t.job_id
 WHERE a.id > $1
 ORDER BY a.id
 LIMIT $2

-- name: stream_dead_last_id
SELECT coalesce(max(id), 0) FROM dead_letters

-- name: stream_dead_after
-- New dead letters after id $1 (primary key range).
-- params: $1 after id, $2 limit
SELECT id, queue FROM dead_letters WHERE id > $1 ORDER BY id LIMIT $2

-- name: queue_errors
-- A queue's failed attempts after $2 grouped by error class, most first (GET /api/queue/{queue}/errors),
-- through job_attempts_failed (only failures); at most $3 attempts are read, newest first.
-- params: $1 queue, $2 since, $3 the most attempts read
SELECT coalesce(f.error_class, f.outcome) AS error_class, count(*) AS count,
       max(f.finished_at) AS last_at,
       (array_agg(f.error ORDER BY f.finished_at DESC))[1] AS last_message
  FROM (SELECT error_class, outcome, error, finished_at FROM job_attempts
         WHERE queue = $1 AND outcome <> 'succeeded' AND finished_at > $2
         ORDER BY finished_at DESC
         LIMIT $3) f
 GROUP BY 1
 ORDER BY count(*) DESC, max(f.finished_at) DESC
