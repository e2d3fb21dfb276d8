-- name: bench_server_version
-- fleetbox bench: the server it measured.
SELECT current_setting('server_version')

-- name: bench_counts
-- fleetbox bench: after a drain, nothing waits and every job and attempt is recorded.
SELECT (SELECT count(*) FROM jobs) AS waiting, (SELECT count(*) FROM jobs_done) AS done,
       (SELECT count(*) FROM job_attempts) AS attempts
