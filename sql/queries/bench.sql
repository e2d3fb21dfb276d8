-- name: bench_server_version
-- fleetbox bench: the server it measured.
SELECT current_setting('server_version')

-- name: bench_counts
-- fleetbox bench: after a drain, nothing waits and every job and attempt is recorded.
SELECT (SELECT count(*) FROM jobs) AS waiting, (SELECT count(*) FROM jobs_done) AS done,
       (SELECT count(*) FROM job_attempts) AS attempts

-- name: bench_empty
-- fleetbox bench --processes: an appliance process stops once nothing waits or runs.
SELECT NOT EXISTS (SELECT 1 FROM jobs)

-- name: bench_run_twice
-- fleetbox bench --processes: jobs with more than one attempt recorded (a no-op job never retries,
-- so any such job ran twice).
SELECT count(*) FROM (SELECT job_id FROM job_attempts GROUP BY job_id HAVING count(*) > 1) AS twice

-- name: bench_rate_windows
-- fleetbox bench: attempts finished per window of $1 seconds since the first attempt started, and
-- the span from the first start to the last finish (what the drain rate of several processes is).
WITH s AS (SELECT min(started_at) AS t0, max(finished_at) AS t1 FROM job_attempts)
SELECT floor(extract(epoch FROM a.finished_at - s.t0)::float8 / $1::float8)::int AS bucket, count(*) AS jobs,
       extract(epoch FROM s.t1 - s.t0)::float8 AS span
FROM job_attempts a, s GROUP BY 1, 3 ORDER BY 1

-- name: bench_table_stats
-- fleetbox bench: every table of the schema with its live and dead tuples, size and vacuums.
SELECT relname AS name, n_live_tup AS live, n_dead_tup AS dead,
       pg_total_relation_size(relid) AS bytes, vacuum_count + autovacuum_count AS vacuums
FROM pg_stat_user_tables WHERE schemaname = current_schema() ORDER BY relname
