"""Applies ``sql/migrations`` in order under an advisory lock, recording each in schema_version.

Safe to run twice (applied versions are skipped) and from two processes at once (the second
waits on the lock, then finds nothing left to do). After the migrations, the limits of
:mod:`fleetbox.rules` are written to the ``limits`` table, where the SQL function
``enqueue`` and ``enqueue_after`` read them: one definition, enforced by both paths.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fleetbox import rules
from fleetbox.store.sql import migrations

if TYPE_CHECKING:
    from fleetbox.store import Store

log = logging.getLogger("fleetbox.migrate")


async def migrate(store: Store, limits: rules.Limits | None = None) -> list[int]:
    """Bring the schema up to date and write the limits; returns the versions applied now."""
    conn = await store.runner.connect_raw()
    try:
        await conn.fetchval("migrate_lock", store.schema)
        try:
            async with conn.transaction():
                # The schema name is checked by Pool (a plain identifier), so it can be spliced
                # in here; it is never taken from request input.
                await conn.run_script(f'CREATE SCHEMA IF NOT EXISTS "{store.schema}"')
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
        finally:
            await conn.fetchval("migrate_unlock", store.schema)
    finally:
        await conn.close()
    await write_limits(store, limits or rules.Limits())
    return applied


async def write_limits(store: Store, limits: rules.Limits) -> None:
    """Write the limits the SQL function ``enqueue`` enforces (at migrate time, and whenever an
    appliance starts or reloads its configuration)."""
    await store.runner.execute(
        "limits_write",
        rules.PRIORITY_MIN,
        rules.PRIORITY_MAX,
        rules.MAX_ATTEMPTS_MAX,
        rules.SINGLETON_KEY_MAX,
        limits.max_payload_bytes,
        limits.max_payload_depth,
        rules.RUN_AT_MIN,
        rules.RUN_AT_MAX,
    )


async def current_version(store: Store) -> int:
    """The latest migration applied to the schema (0: none)."""
    return int(await store.runner.fetchval("migrate_current_version"))


async def missing_versions(store: Store) -> list[int]:
    """The migrations this fleetbox has that the schema lacks (numbers need not be contiguous:
    one landed later with a lower number is missing too)."""
    done = {row["version"] for row in await store.runner.fetch("migrate_applied_versions")}
    return [version for version, _, _ in migrations() if version not in done]


def latest_version() -> int:
    """The latest migration this fleetbox has."""
    return max(version for version, _, _ in migrations())


#: Tables a benchmark may empty or vacuum between its phases.
BENCH_TABLES = ("jobs", "jobs_done", "job_attempts")


async def drop_schema(store: Store) -> None:
    """Drop the whole fleetbox schema (the benchmark's own, never the configured one)."""
    conn = await store.runner.connect_raw()
    try:
        await conn.run_script(f'DROP SCHEMA IF EXISTS "{store.schema}" CASCADE')
    finally:
        await conn.close()


async def truncate(store: Store, *tables: str) -> None:
    """Empty benchmark tables between phases."""
    await _bench_script(store, "TRUNCATE", tables)


async def vacuum_analyze(store: Store, *tables: str) -> None:
    """Vacuum and analyze benchmark tables between phases (fresh statistics for the next one)."""
    await _bench_script(store, "VACUUM ANALYZE", tables)


async def _bench_script(store: Store, command: str, tables: tuple[str, ...]) -> None:
    unknown = set(tables) - set(BENCH_TABLES)
    if unknown:
        raise ValueError(f"not a benchmark table: {sorted(unknown)}")
    names = ", ".join(f'"{store.schema}".{t}' for t in tables)
    conn = await store.runner.connect_raw()
    try:
        await conn.run_script(f"{command} {names}")
    finally:
        await conn.close()


async def server_version(store: Store) -> str:
    """The PostgreSQL server's version (what a benchmark measured)."""
    return str(await store.runner.fetchval("bench_server_version"))
