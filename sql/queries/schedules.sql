-- Cron schedules (fleetbox.store.schedules): the scheduled_jobs table and its run history.

-- name: schedule_upsert
-- Creates or changes a schedule; its history (last_tick, last_job_id) is kept.
-- params: $1 name, $2 queue, $3 cron, $4 data, $5 priority, $6 enabled, $7 timezone, $8 dst,
--         $9 catch_up, $10 catch_up_max, $11 overlap, $12 alert_after_seconds, $13 source,
--         $14 next_run_at, $15 now, $16 by
INSERT INTO scheduled_jobs AS s (name, queue, cron, data, priority, enabled, timezone, dst, catch_up,
                                 catch_up_max, overlap, alert_after_seconds, source, next_run_at,
                                 last_tick, created_at, updated_at, updated_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $15, $16)
ON CONFLICT (name) DO UPDATE
   SET queue = EXCLUDED.queue, cron = EXCLUDED.cron, data = EXCLUDED.data, priority = EXCLUDED.priority,
       enabled = EXCLUDED.enabled, timezone = EXCLUDED.timezone, dst = EXCLUDED.dst,
       catch_up = EXCLUDED.catch_up, catch_up_max = EXCLUDED.catch_up_max, overlap = EXCLUDED.overlap,
       alert_after_seconds = EXCLUDED.alert_after_seconds, source = EXCLUDED.source,
       next_run_at = EXCLUDED.next_run_at, updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by,
       -- a changed schedule starts afresh: the ticks of its old definition are nobody's to catch up
       last_tick = EXCLUDED.last_tick
RETURNING *

-- name: schedule_get
SELECT * FROM scheduled_jobs WHERE name = $1

-- name: schedule_lock
SELECT * FROM scheduled_jobs WHERE name = $1 FOR UPDATE

-- name: schedule_list
SELECT * FROM scheduled_jobs ORDER BY name

-- name: schedule_delete
DELETE FROM scheduled_jobs WHERE name = $1 RETURNING name

-- name: schedule_set_enabled
-- Pausing keeps its place; resuming starts from now (the ticks while paused are not caught up).
-- params: $1 name, $2 enabled, $3 next_run_at, $4 now, $5 by
UPDATE scheduled_jobs SET enabled = $2, next_run_at = $3, updated_at = $4, updated_by = $5,
       last_tick = CASE WHEN $2 THEN $4 ELSE last_tick END
 WHERE name = $1
RETURNING *

-- name: schedule_lock_due
-- Schedules due at $1, locked until the transaction ends; another appliance skips them.
-- params: $1 now, $2 limit
SELECT * FROM scheduled_jobs WHERE enabled AND next_run_at <= $1
 ORDER BY next_run_at LIMIT $2 FOR UPDATE SKIP LOCKED

-- name: schedule_next_due
-- When the next enabled schedule is due (the firing loop sleeps until then).
SELECT min(next_run_at) FROM scheduled_jobs WHERE enabled

-- name: schedule_advance
-- params: $1 name, $2 last tick, $3 next_run_at, $4 last job id (NULL keeps it), $5 now
UPDATE scheduled_jobs SET last_tick = $2, next_run_at = $3, last_job_id = coalesce($4, last_job_id),
       last_run_at = $5
 WHERE name = $1

-- name: schedule_run_record
-- One tick of a schedule, once: a second record of the same tick is refused (no row returned).
-- params: $1 schedule, $2 tick, $3 fired at, $4 outcome, $5 job id, $6 worker id
INSERT INTO schedule_runs (schedule, tick, fired_at, outcome, job_id, worker_id) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (schedule, tick) DO NOTHING
RETURNING tick

-- name: schedule_runs_recent
SELECT schedule, tick, fired_at, outcome, job_id, worker_id FROM schedule_runs
 WHERE schedule = $1 ORDER BY tick DESC LIMIT $2

-- name: schedule_last_success
-- When a job of this schedule last succeeded (its runs, joined to the finished jobs by id).
SELECT max(d.finished_at) FROM schedule_runs r JOIN jobs_done d ON d.id = r.job_id AND d.state = 'succeeded'
 WHERE r.schedule = $1

-- name: job_live_state
-- 'waiting' or 'running' for a job still in the hot table, NULL for a finished one.
SELECT state::text FROM jobs WHERE id = $1

-- name: job_clear_waiting
-- A waiting job leaves for jobs_done as cleared (a running one is not touched: no row returned).
-- params: $1 job id, $2 now
-- Its dependents follow their failure policies (settle_parents).
WITH gone AS (
    DELETE FROM jobs WHERE id = $1 AND state = 'waiting'
    RETURNING id, queue, priority, data, singleton_key, attempt, dead_letter_id, created_at, run_at,
              has_dependents
), settled AS (
    SELECT settle_parents(array_agg(id), 'failed', '{}', '{}', $2) FROM gone WHERE has_dependents
    HAVING count(*) > 0
)
INSERT INTO jobs_done (id, queue, priority, state, data, singleton_key, attempts, dead_letter_id, created_at,
                       run_at, finished_at)
SELECT id, queue, priority, 'cleared', data, singleton_key, attempt, dead_letter_id, created_at, run_at, $2
  FROM gone WHERE (SELECT count(*) FROM settled) >= 0
RETURNING id
