"""One definition of every enqueue rule: the Python path (Client, service) and the SQL functions
``fleetbox.enqueue`` and ``fleetbox.enqueue_after`` refuse the same values with the same
``field: reason``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from fleetbox import rules
from fleetbox.client import Client
from fleetbox.errors import InvalidInput
from fleetbox.store import Store

DEEP = {"a": 1}
for _ in range(70):
    DEEP = {"a": DEEP}

#: (queue, data, priority, singleton_key, max_attempts): each breaks one rule
BAD: list[tuple[Any, Any, Any, Any, Any]] = [
    ("no-such-queue", {}, 5, None, None),
    ("dead-letter", {}, 5, None, None),
    ("sync", {}, 0, None, None),
    ("sync", {}, 11, None, None),
    ("sync", {}, -5, None, None),
    ("sync", {}, 5, "", None),
    ("sync", {}, 5, "k" * 256, None),
    ("sync", {}, 5, None, 0),
    ("sync", {}, 5, None, 1001),
    ("sync", [1, 2], 5, None, None),
    ("sync", "text", 5, None, None),
    ("sync", 42, 5, None, None),
    ("sync", None, 5, None, None),
    ("sync", DEEP, 5, None, None),
    ("sync", {"x": "y" * rules.DEFAULT_MAX_PAYLOAD_BYTES}, 5, None, None),
    # several problems: both paths name the same first one
    ("sync", [1], 11, "", 0),
    ("sync", DEEP, 5, "k" * 300, None),
]


@pytest.fixture
async def raw(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection, as another language would have one."""
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.mark.parametrize(("queue", "data", "priority", "key", "attempts"), BAD)
async def test_python_and_sql_refuse_a_bad_value_with_the_same_error(
    db: Store, raw: asyncpg.Connection, queue: Any, data: Any, priority: Any, key: Any, attempts: Any
) -> None:
    client = Client(db)
    with pytest.raises(InvalidInput) as python:
        await client.enqueue(queue, data, priority=priority, singleton_key=key, max_attempts=attempts)
    with pytest.raises(asyncpg.InvalidParameterValueError) as sql:
        await raw.fetchrow(
            "SELECT * FROM fleetbox.enqueue($1, $2::text::jsonb, $3, NULL, $4, $5)",
            queue,
            None if data is None else json.dumps(data),
            priority,
            key,
            attempts,
        )
    assert str(python.value) == str(sql.value)
    assert await raw.fetchval("SELECT count(*) FROM fleetbox.jobs") == 0


async def test_the_sql_function_enforces_the_configured_limits(db: Store, raw: asyncpg.Connection) -> None:
    """A smaller payload limit in the settings reaches the SQL path too (the appliance writes it)."""
    from fleetbox.store.migrations import write_limits

    await write_limits(db, rules.Limits(max_payload_bytes=100, max_payload_depth=3))
    client = Client(db, max_payload_bytes=100, max_payload_depth=3)
    for data in ({"a": {"b": {"c": {"d": 1}}}}, {"x": "y" * 200}):
        with pytest.raises(InvalidInput) as python:
            await client.enqueue("sync", data)
        with pytest.raises(asyncpg.InvalidParameterValueError) as sql:
            await raw.fetchrow("SELECT * FROM fleetbox.enqueue('sync', $1::text::jsonb)", json.dumps(data))
        assert str(python.value) == str(sql.value)
    ok = {"a": {"b": {"c": 1}}}
    await client.enqueue("sync", ok)
    await raw.fetchrow("SELECT * FROM fleetbox.enqueue('sync', $1::text::jsonb)", json.dumps(ok))
    assert await raw.fetchval("SELECT count(*) FROM fleetbox.jobs") == 2


@pytest.mark.parametrize(
    "run_at",
    [dt.datetime(9999, 12, 31, tzinfo=dt.UTC), dt.datetime(1, 1, 1, 23, tzinfo=dt.timezone(dt.timedelta(hours=5)))],
)
async def test_python_and_sql_refuse_a_due_time_outside_what_every_reader_can_hold(
    db: Store, raw: asyncpg.Connection, run_at: dt.datetime
) -> None:
    with pytest.raises(InvalidInput) as python:
        await Client(db).enqueue("sync", {}, run_at=run_at)
    with pytest.raises(asyncpg.InvalidParameterValueError) as sql:
        await raw.fetchrow("SELECT * FROM fleetbox.enqueue('sync', '{}', run_at => $1)", run_at)
    assert str(python.value) == str(sql.value) == "run_at: must be from 0001-01-02 to 9999-12-30 (UTC)"


@pytest.mark.parametrize("run_at", ["infinity", "-infinity", "294276-12-31"])
async def test_sql_refuses_due_times_python_could_not_read(db: Store, raw: asyncpg.Connection, run_at: str) -> None:
    """Found from outside: PostgreSQL takes these, and a job holding one made every list of its
    queue (the API's, the CLI's) fail, even after the queue was cleared."""
    for call in (
        "SELECT * FROM fleetbox.enqueue('sync', '{}', run_at => $1::text::timestamptz)",
        "SELECT fleetbox.enqueue_after('sync', '{}', ARRAY[1]::bigint[], run_at => $1::text::timestamptz)",
    ):
        with pytest.raises(asyncpg.InvalidParameterValueError, match=r"run_at: must be from 0001-01-02 to 9999-12-30"):
            await raw.fetchrow(call, run_at)
    assert await raw.fetchval("SELECT count(*) FROM fleetbox.jobs") == 0


@pytest.mark.parametrize(("queue", "data", "priority", "key", "attempts"), [b for b in BAD if b[3] is None])
async def test_enqueue_after_refuses_what_enqueue_refuses_with_the_same_error(
    db: Store, raw: asyncpg.Connection, queue: Any, data: Any, priority: Any, key: Any, attempts: Any
) -> None:
    """enqueue_after had a copy of the checks that drifted (any max_attempts above 0, payloads of
    any size or depth): both now run check_new_job."""
    parent = (await Client(db).enqueue("sync", {})).id
    payload = None if data is None else json.dumps(data)
    with pytest.raises(asyncpg.InvalidParameterValueError) as plain:
        await raw.fetchrow(
            "SELECT * FROM fleetbox.enqueue($1, $2::text::jsonb, $3, NULL, NULL, $4)",
            queue,
            payload,
            priority,
            attempts,
        )
    with pytest.raises(asyncpg.InvalidParameterValueError) as after:
        await raw.fetchval(
            "SELECT fleetbox.enqueue_after($1, $2::text::jsonb, ARRAY[$5::bigint], 'cancel', $3, NULL, $4)",
            queue,
            payload,
            priority,
            attempts,
            parent,
        )
    assert str(after.value) == str(plain.value)
    assert await raw.fetchval("SELECT count(*) FROM fleetbox.jobs") == 1
    assert await raw.fetchval("SELECT count(*) FROM fleetbox.jobs_blocked") == 0
