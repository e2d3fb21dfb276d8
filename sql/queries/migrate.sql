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

-- name: migrate_schema_exists
SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1::text)

-- name: migrate_current_version
SELECT coalesce(max(version), 0) FROM schema_version
