"""Migrations: idempotent, safe to run from two processes at once, and required before start."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from fleetbox.app import Appliance
from fleetbox.client import Client
from fleetbox.config import Settings
from fleetbox.errors import DatabaseError, SchemaNotReady
from fleetbox.models import Job, JobState
from fleetbox.store import Store
from fleetbox.store.migrations import current_version, latest_version, migrate
from fleetbox.store.sql import migrations, queries
from fleetbox.worker.registry import BUILTIN_QUEUES, build_registry, register_queues
from tests.conftest import SCHEMA, _admin, wait_for, with_database


@pytest.fixture
async def empty_dsn(server_dsn: str) -> AsyncIterator[str]:
    """A brand-new database with nothing of fleetbox in it."""
    name = f"fleetbox_empty_{uuid.uuid4().hex[:12]}"
    await _admin(server_dsn, f"CREATE DATABASE {name}")
    yield with_database(server_dsn, name)
    await _admin(server_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def settings_for(dsn: str, tmp_path: Path, schema: str = SCHEMA) -> Settings:
    return Settings(
        database={"dsn": dsn, "schema_name": schema, "pool_min": 1, "pool_max": 4},
        appliance={
            "name": "migrate-test",
            "data_dir": str(tmp_path / "data"),
            "poll_seconds": 0.2,
            "lease_seconds": 5,
            "heartbeat_seconds": 1,
            "shutdown_grace_seconds": 2,
        },
        admin={"port": 0},
    )


async def versions(db: Store) -> list[int]:
    return [r["version"] for r in await db.pool.fetch("SELECT version FROM schema_version ORDER BY version")]


def test_migration_files_are_numbered_in_order() -> None:
    found = [version for version, _name, _sql in migrations()]
    assert found == sorted(set(found))
    assert found[0] == 1
    assert latest_version() == found[-1]


async def test_migrate_on_a_migrated_database_is_a_no_op(db: Store) -> None:
    before = await versions(db)
    assert before == [v for v, _n, _s in migrations()]
    assert await migrate(db) == []
    assert await migrate(db) == []
    assert await versions(db) == before
    assert await current_version(db) == latest_version()


async def test_migrate_twice_on_an_empty_database(empty_dsn: str) -> None:
    async with Store(empty_dsn, schema=SCHEMA, min_size=1, max_size=2) as db:
        applied = await migrate(db)
        assert applied == [v for v, _n, _s in migrations()]
        await register_queues(db, build_registry(Settings()))
        await db.pool.execute("INSERT INTO jobs (queue, tier, data) VALUES ('sync', 3, '{}')")
        assert await migrate(db) == []
        assert await versions(db) == applied
        # a second run leaves the data alone
        assert await db.pool.fetchval("SELECT count(*) FROM jobs") == 1
        assert await db.pool.fetchval("SELECT count(*) FROM queues") == len(BUILTIN_QUEUES)


@pytest.mark.parametrize("schema", [SCHEMA, "fb_other"])
async def test_concurrent_migrations_on_a_fresh_database(empty_dsn: str, schema: str) -> None:
    databases = [Store(empty_dsn, schema=schema, min_size=1, max_size=2) for _ in range(4)]
    await asyncio.gather(*(d.open() for d in databases))
    try:
        results = await asyncio.gather(*(migrate(d) for d in databases))
        expected = [v for v, _n, _s in migrations()]
        # exactly one caller applied each version; the others found nothing left to do
        assert sorted(v for applied in results for v in applied) == expected
        assert sum(1 for applied in results if applied) == 1
        rows = await databases[0].pool.fetch(
            f"SELECT version, count(*) AS n FROM {schema}.schema_version GROUP BY version"
        )
        assert {r["version"]: r["n"] for r in rows} == dict.fromkeys(expected, 1)
        assert await current_version(databases[0]) == latest_version()
        tables = await databases[0].pool.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        )
        assert {"jobs", "jobs_done", "dead_letters", "queues", "job_attempts", "schema_version"} <= {
            r["table_name"] for r in tables
        }
    finally:
        await asyncio.gather(*(d.close() for d in databases))


async def test_two_schemas_share_a_database(empty_dsn: str) -> None:
    first = Store(empty_dsn, schema=SCHEMA, min_size=1, max_size=2)
    other = Store(empty_dsn, schema="fb_other", min_size=1, max_size=2)
    await asyncio.gather(first.open(), other.open())
    try:
        await asyncio.gather(migrate(first), migrate(other), migrate(other), migrate(first))
        for db in (first, other):
            assert await versions(db) == [v for v, _n, _s in migrations()]
            await register_queues(db, build_registry(Settings()))
        one = await Client(first).enqueue("sync", {"in": "fleetbox"})
        two = await Client(other).enqueue("sync", {"in": "fb_other"})
        assert (await Client(first).get_job(one.id)).data == {"in": "fleetbox"}
        assert (await Client(other).get_job(two.id)).data == {"in": "fb_other"}
        assert await first.pool.fetchval("SELECT count(*) FROM fleetbox.jobs") == 1
        assert await first.pool.fetchval("SELECT count(*) FROM fb_other.jobs") == 1
        # the SQL function of each schema writes to its own tables, whatever the search_path
        row = await first.pool.fetchrow("SELECT * FROM fb_other.enqueue('sync', '{}'::jsonb)")
        assert row is not None and row["created"]
        assert await first.pool.fetchval("SELECT count(*) FROM fb_other.jobs") == 2
        assert await first.pool.fetchval("SELECT count(*) FROM fleetbox.jobs") == 1
    finally:
        await asyncio.gather(first.close(), other.close())


async def test_appliance_start_on_an_unmigrated_database(empty_dsn: str, tmp_path: Path) -> None:
    app = Appliance(settings_for(empty_dsn, tmp_path))
    with pytest.raises(SchemaNotReady) as err:
        await app.start()
    assert "fleetbox migrate" in str(err.value)
    assert isinstance(err.value, DatabaseError)
    with pytest.raises(DatabaseError, match="not open"):
        _ = app.store.pool  # the pool opened for the check was closed again
    await app.stop()  # stopping an appliance that never started is harmless
    # nothing was created behind the operator's back
    conn_db = Store(empty_dsn, schema=SCHEMA, min_size=1, max_size=1)
    async with conn_db:
        assert not await conn_db.pool.fetchval("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'fleetbox')")


async def test_appliance_start_on_an_older_schema(empty_dsn: str, tmp_path: Path) -> None:
    async with Store(empty_dsn, schema=SCHEMA, min_size=1, max_size=1) as db:
        await db.pool.execute("CREATE SCHEMA fleetbox")
        await db.runner.execute("migrate_create_version_table")  # the version table, but no migration
    app = Appliance(settings_for(empty_dsn, tmp_path))
    with pytest.raises(SchemaNotReady) as err:
        await app.start()
    message = str(err.value)
    assert "version 0" in message
    assert f"this fleetbox has {latest_version()}" in message
    assert "run `fleetbox migrate`" in message


async def test_appliance_start_on_a_schema_missing_a_migration_numbered_below_its_latest(
    dsn: str, tmp_path: Path
) -> None:
    """A migration that landed later with a lower number than the schema's latest is still missing."""
    lower = sorted(v for v, _, _ in migrations())[-3]
    async with Store(dsn, schema=SCHEMA, min_size=1, max_size=1) as db:
        await db.pool.execute("DELETE FROM fleetbox.schema_version WHERE version = $1", lower)
    app = Appliance(settings_for(dsn, tmp_path))
    with pytest.raises(SchemaNotReady, match=rf"lacks migrations \[{lower}\]"):
        await app.start()


async def test_appliance_can_migrate_at_start_in_a_custom_schema(empty_dsn: str, tmp_path: Path) -> None:
    ran: list[int] = []

    async def handle(job: Job) -> None:
        ran.append(job.id)

    settings = settings_for(empty_dsn, tmp_path, schema="fb_other")
    app = Appliance(settings, handlers={"sync": handle}, migrate=True)
    await app.start()
    try:
        result = await app.client.enqueue("sync", {"n": 1})

        async def done() -> bool:
            return (await app.client.get_job(result.id)).state is JobState.SUCCEEDED

        await wait_for(done)
        assert ran == [result.id]
        assert await app.store.pool.fetchval("SELECT count(*) FROM fb_other.jobs_done") == 1
        assert await current_version(app.store) == latest_version()
    finally:
        await app.stop()
    # a second appliance on the same schema finds it migrated and starts without migrating
    again = Appliance(settings, handlers={"sync": handle})
    await again.start()
    await again.stop()


async def test_migration_23_moves_due_times_no_reader_can_hold_into_range(empty_dsn: str) -> None:
    """Before 0023 the SQL function took run_at 'infinity' or the year 294276, and every list of
    that queue failed to read the job; upgrading brings such jobs back into range, readable."""
    conn = await asyncpg.connect(empty_dsn, server_settings={"search_path": SCHEMA})
    try:
        await conn.execute(f'CREATE SCHEMA "{SCHEMA}"')
        await conn.execute(queries()["migrate_create_version_table"])
        for version, name, sql in migrations():
            if version < 23:
                await conn.execute(sql)
                await conn.execute(queries()["migrate_record_version"], version, name)
        await conn.execute("INSERT INTO queues (name, tier) VALUES ('sync', 3)")
        ids = [
            await conn.fetchval(
                "INSERT INTO jobs (queue, tier, run_at, data) "
                "VALUES ('sync', 3, $1::text::timestamptz, '{}') RETURNING id",
                when,
            )
            for when in ("infinity", "294276-12-31", "-infinity")
        ]
    finally:
        await conn.close()
    async with Store(empty_dsn, schema=SCHEMA, min_size=1, max_size=2) as db:
        assert await migrate(db) == [v for v, _, _ in migrations() if v >= 23]
        client = Client(db)
        due = [(await client.get_job(job_id)).run_at for job_id in ids]
        assert [d.date().isoformat() for d in due] == ["9999-12-30", "9999-12-30", "0001-01-02"]
        listed = await db.jobs.page_live("sync", dt.datetime.now(dt.UTC), 0, 0, 10)  # what the API's list reads
        assert sorted(j.id for j in listed) == sorted(ids)
