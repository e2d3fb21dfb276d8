-- name: migrate_lock
-- Serialises migrations from several processes: one applies, the others wait and then see it done.
SELECT pg_advisory_lock(hashtext('fleetbox.migrate:' || $1::text))

-- name: migrate_unlock
SELECT pg_advisory_unlock(hashtext('fleetbox.migrate:' || $1::text))

-- name: migrate_create_version_table
CREATE TABLE IF NOT EXISTS schema_version (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: migrate_applied_versions
SELECT version, name FROM schema_version ORDER BY version

-- name: migrate_record_version
INSERT INTO schema_version (version, name) VALUES ($1, $2)

-- name: migrate_current_version
SELECT coalesce(max(version), 0) FROM schema_version

-- name: limits_write
-- The numbers of fleetbox.rules (and the configured payload limits) for the SQL functions enqueue()
-- and enqueue_after() (check_new_job, 0023_job_checks.sql).
-- params: $1 priority min, $2 priority max, $3 max_attempts max, $4 singleton key max length,
--         $5 payload bytes, $6 payload depth, $7 earliest run_at, $8 latest run_at
INSERT INTO limits AS l (id, priority_min, priority_max, max_attempts_max, singleton_key_max,
                         max_payload_bytes, max_payload_depth, run_at_min, run_at_max)
VALUES (true, $1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (id) DO UPDATE
   SET priority_min = EXCLUDED.priority_min, priority_max = EXCLUDED.priority_max,
       max_attempts_max = EXCLUDED.max_attempts_max, singleton_key_max = EXCLUDED.singleton_key_max,
       max_payload_bytes = EXCLUDED.max_payload_bytes, max_payload_depth = EXCLUDED.max_payload_depth,
       run_at_min = EXCLUDED.run_at_min, run_at_max = EXCLUDED.run_at_max, updated_at = now()
 WHERE (l.priority_min, l.priority_max, l.max_attempts_max, l.singleton_key_max, l.max_payload_bytes,
        l.max_payload_depth, l.run_at_min, l.run_at_max)
       IS DISTINCT FROM (EXCLUDED.priority_min, EXCLUDED.priority_max, EXCLUDED.max_attempts_max,
                         EXCLUDED.singleton_key_max, EXCLUDED.max_payload_bytes, EXCLUDED.max_payload_depth,
                         EXCLUDED.run_at_min, EXCLUDED.run_at_max)
