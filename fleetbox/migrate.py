"""Applies ``sql/migrations`` in order under an advisory lock, recording each in schema_version.

Safe to run twice (applied versions are skipped) and from two processes at once (the second
waits on the lock, then finds nothing left to do).
"""

from __future__ import annotations

import logging

from fleetbox.db import Database, migrations

log = logging.getLogger("fleetbox.migrate")


async def migrate(db: Database) -> list[int]:
    """Bring the schema up to date; returns the versions applied now."""
    conn = await db.connect_raw()
    try:
        await conn.fetchval("migrate_lock", db.schema)
        try:
            async with conn.transaction():
                # The schema name is validated by the settings (a plain identifier), so it can be
                # spliced in here; it is never taken from request input.
                await conn.run_script(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"')
                await conn.execute("migrate_create_version_table")
            done = {row["version"] for row in await conn.fetch("migrate_applied_versions")}
            applied = []
            for version, name, sql in migrations():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.run_script(sql)
                    await conn.execute("migrate_record_version", version, name)
                log.info(
                    "migration applied", extra={"event": "migration_applied", "version": version, "migration": name}
                )
                applied.append(version)
            return applied
        finally:
            await conn.fetchval("migrate_unlock", db.schema)
    finally:
        await db.close_raw(conn)


async def current_version(db: Database) -> int:
    return int(await db.fetchval("migrate_current_version"))


def latest_version() -> int:
    return max(version for version, _, _ in migrations())
