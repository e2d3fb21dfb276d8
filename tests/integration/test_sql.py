"""The SQL itself: every named query against the real schema, the enqueue function, NOTIFY."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from fleetbox.client import Client, NewJob
from fleetbox.errors import InvalidInput
from fleetbox.models import JsonText, Tier
from fleetbox.store import Store
from fleetbox.store.jobs import COPY_THRESHOLD
from fleetbox.store.sql import queries

CHANNEL = "fleetbox_jobs"


# -- (a) every named query prepares -----------------------------------------------------------


async def test_every_named_query_prepares_against_the_schema(db: Store) -> None:
    # One database for all of them (a fresh one per query costs more than the check itself);
    # every failure is collected so one broken query does not hide another.
    failures = {}
    async with db.runner.acquire() as conn:
        for name in sorted(queries()):
            try:
                await conn.prepare(name)
            except Exception as exc:
                failures[name] = f"{type(exc).__name__}: {exc}"
    assert failures == {}
    assert all(text.strip() for text in queries().values())


def test_queries_are_found() -> None:
    names = queries()
    for expected in ("enqueue_one", "enqueue_many", "claim", "complete_succeeded", "complete_dead", "job_get"):
        assert expected in names


# -- (b) fleetbox.enqueue from any connection -------------------------------------------------


@pytest.fixture
async def raw(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection: no search_path, no codecs (what another language would have)."""
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def job_count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM fleetbox.jobs"))


ENQUEUE = "SELECT job_id, created FROM fleetbox.enqueue($1, $2::jsonb, $3, $4, $5, $6)"


async def test_enqueue_function_from_a_plain_connection(raw: asyncpg.Connection) -> None:
    assert "fleetbox" not in await raw.fetchval("SHOW search_path")
    run_at = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
    row = await raw.fetchrow(ENQUEUE, "sync", json.dumps({"resourceType": "messages"}), 8, run_at, "k-1", 3)
    assert row is not None
    assert row["created"] is True
    job = await raw.fetchrow("SELECT * FROM fleetbox.jobs WHERE id = $1", row["job_id"])
    assert job is not None
    assert job["queue"] == "sync"
    assert job["tier"] == Tier.LOW
    assert job["priority"] == 8
    assert job["run_at"] == run_at
    assert job["singleton_key"] == "k-1"
    assert job["max_attempts"] == 3
    assert job["state"] == "waiting"
    assert job["attempt"] == 0
    assert json.loads(job["data"]) == {"resourceType": "messages"}


async def test_enqueue_function_with_defaults_as_documented(raw: asyncpg.Connection) -> None:
    row = await raw.fetchrow(
        """SELECT * FROM fleetbox.enqueue('teams-outbound', '{"chatId": "c1", "content": "hi"}')"""
    )
    assert row is not None
    assert row["created"] is True
    job = await raw.fetchrow(
        "SELECT tier, priority, run_at <= now() AS due, singleton_key, max_attempts FROM fleetbox.jobs WHERE id = $1",
        row["job_id"],
    )
    assert dict(job) == {"tier": 1, "priority": 5, "due": True, "singleton_key": None, "max_attempts": None}


async def test_enqueue_function_named_arguments(raw: asyncpg.Connection) -> None:
    row = await raw.fetchrow(
        "SELECT * FROM fleetbox.enqueue(queue_name => 'webhooks', payload => '{}'::jsonb, priority => 1)"
    )
    assert row is not None
    assert await raw.fetchval("SELECT priority FROM fleetbox.jobs WHERE id = $1", row["job_id"]) == 1


async def test_enqueue_function_singleton(raw: asyncpg.Connection) -> None:
    first = await raw.fetchrow(ENQUEUE, "sync", "{}", 5, None, "sync-messages-u1", None)
    second = await raw.fetchrow(ENQUEUE, "sync", '{"other": true}', 1, None, "sync-messages-u1", None)
    assert first is not None and second is not None
    assert first["created"] is True
    assert second["created"] is False
    assert second["job_id"] == first["job_id"]
    assert await job_count(raw) == 1
    # the first job's payload and priority are kept
    kept = await raw.fetchrow("SELECT data, priority FROM fleetbox.jobs WHERE id = $1", first["job_id"])
    assert json.loads(kept["data"]) == {}
    assert kept["priority"] == 5
    # the same key on another queue is another job; no key is never a singleton
    other = await raw.fetchrow(ENQUEUE, "webhooks", "{}", 5, None, "sync-messages-u1", None)
    assert other is not None and other["created"] is True and other["job_id"] != first["job_id"]
    for _ in range(2):
        plain = await raw.fetchrow(ENQUEUE, "sync", "{}", 5, None, None, None)
        assert plain is not None and plain["created"] is True
    assert await job_count(raw) == 4


async def test_singleton_key_is_free_once_the_job_is_gone(raw: asyncpg.Connection) -> None:
    first = await raw.fetchrow(ENQUEUE, "sync", "{}", 5, None, "once", None)
    await raw.execute("DELETE FROM fleetbox.jobs WHERE id = $1", first["job_id"])
    again = await raw.fetchrow(ENQUEUE, "sync", "{}", 5, None, "once", None)
    assert again["created"] is True
    assert again["job_id"] != first["job_id"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("no-such-queue", "{}", 5, None, None, None), r"^queue: unknown queue 'no-such-queue'"),
        ((None, "{}", 5, None, None, None), r"^queue: must be a queue name"),
        (("dead-letter", "{}", 5, None, None, None), r"^queue: 'dead-letter' holds dead letters"),
        (("sync", "[1, 2]", 5, None, None, None), r"^data: must be a JSON object"),
        (("sync", '"text"', 5, None, None, None), r"^data: must be a JSON object"),
        (("sync", "42", 5, None, None, None), r"^data: must be a JSON object"),
        (("sync", "null", 5, None, None, None), r"^data: must be a JSON object"),
        (("sync", None, 5, None, None, None), r"^data: must be a JSON object"),
        (("sync", "{}", 0, None, None, None), r"^priority: must be an integer from 1 to 10, got 0"),
        (("sync", "{}", 11, None, None, None), r"^priority: must be an integer from 1 to 10, got 11"),
        (("sync", "{}", -5, None, None, None), r"^priority: .* got -5"),
        (("sync", "{}", None, None, None, None), r"^priority: .* got NULL"),
        (("sync", "{}", 5, None, None, 0), r"^max_attempts: must be an integer from 1 to 1000, got 0"),
        (("sync", "{}", 5, None, None, 1001), r"^max_attempts: must be an integer from 1 to 1000, got 1001"),
        (("sync", "{}", 5, None, "", None), r"^singleton_key: must be a string of 1 to 255 characters"),
        (("sync", "{}", 5, None, "k" * 256, None), r"^singleton_key: must be a string of 1 to 255 characters"),
        (("sync", '{"a":' * 65 + "1" + "}" * 65, 5, None, None, None), r"^data: is nested more than 64 levels deep"),
        (("sync", '{"a":' * 3000 + "1" + "}" * 3000, 5, None, None, None), r"^data: is nested more than 64 levels"),
        (("sync", json.dumps({"x": "y" * 1_048_576}), 5, None, None, None), r"^data: is larger than the limit"),
    ],
)
async def test_enqueue_function_rejects_bad_input(
    raw: asyncpg.Connection, args: tuple[object, ...], message: str
) -> None:
    before = await job_count(raw)
    with pytest.raises(asyncpg.InvalidParameterValueError, match=message):
        await raw.fetchrow(ENQUEUE, *args)
    assert await job_count(raw) == before
    assert await raw.fetchval("SELECT count(*) FROM fleetbox.jobs_done") == 0


async def test_enqueue_function_errors_become_invalid_input(db: Store) -> None:
    with pytest.raises(InvalidInput) as err:
        await db.jobs.enqueue("sync", JsonText("{}"), 12, None, None, None)
    assert err.value.field == "priority"
    with pytest.raises(InvalidInput) as err:
        await db.jobs.enqueue("nope", JsonText("{}"), 5, None, None, None)
    assert err.value.field == "queue"
    assert await db.pool.fetchval("SELECT count(*) FROM jobs") == 0


# -- (c) NOTIFY on insert ----------------------------------------------------------------------


class Notifications:
    """Payloads on the fleetbox channel, in arrival order."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.received: asyncio.Queue[str] = asyncio.Queue()

    def _on(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.received.put_nowait(payload)

    async def next(self) -> str:
        """The next payload; a notification that never comes fails the test after 10 s."""
        async with asyncio.timeout(10):
            return await self.received.get()

    async def until_sentinel(self, sender: asyncpg.Connection) -> list[str]:
        """Everything that arrived before a marker sent now: notifications are delivered in commit order."""
        await sender.execute(f"SELECT pg_notify('{CHANNEL}', 'sentinel')")
        seen = []
        while (payload := await self.next()) != "sentinel":
            seen.append(payload)
        return seen


@pytest.fixture
async def notifications(dsn: str) -> AsyncIterator[Notifications]:
    conn = await asyncpg.connect(dsn)
    listener = Notifications(conn)
    await conn.add_listener(CHANNEL, listener._on)
    try:
        yield listener
    finally:
        await conn.close()


def tiers(payload: str) -> set[int]:
    return {int(t) for t in payload.split(",")}


async def test_single_enqueue_notifies_with_its_tier(
    notifications: Notifications, raw: asyncpg.Connection, client: Client
) -> None:
    await client.enqueue("webhooks", {"n": 1})
    assert tiers(await notifications.next()) == {Tier.MEDIUM}
    await raw.fetchrow(ENQUEUE, "teams-outbound", "{}", 5, None, None, None)
    assert tiers(await notifications.next()) == {Tier.HIGH}
    await client.enqueue("attachments", {"n": 1})
    assert tiers(await notifications.next()) == {Tier.LOW}
    assert await notifications.until_sentinel(raw) == []


async def test_future_job_sends_no_notify(
    notifications: Notifications, raw: asyncpg.Connection, client: Client
) -> None:
    await client.enqueue("sync", {"later": True}, delay=dt.timedelta(hours=1))
    await client.enqueue("sync", {"later": True}, run_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    await raw.fetchrow(
        ENQUEUE, "teams-outbound", "{}", 5, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5), None, None
    )
    assert await notifications.until_sentinel(raw) == []
    assert await job_count(raw) == 3


async def test_enqueue_many_copy_path_notifies_once_with_its_tiers(
    notifications: Notifications, raw: asyncpg.Connection, client: Client
) -> None:
    jobs = [NewJob(queue="teams-outbound" if i % 2 else "sync", data={"i": i}) for i in range(COPY_THRESHOLD)]
    results = await client.enqueue_many(jobs)
    assert len(results) == COPY_THRESHOLD
    assert tiers(await notifications.next()) == {Tier.HIGH, Tier.LOW}
    assert await notifications.until_sentinel(raw) == []  # one NOTIFY for the whole batch
    assert await job_count(raw) == COPY_THRESHOLD


async def test_enqueue_many_unnest_path_notifies_with_its_tiers(
    notifications: Notifications, raw: asyncpg.Connection, client: Client
) -> None:
    jobs = [NewJob(queue="notifications" if i % 2 else "webhooks", data={"i": i}) for i in range(COPY_THRESHOLD - 1)]
    results = await client.enqueue_many(jobs)
    assert len(results) == COPY_THRESHOLD - 1
    assert tiers(await notifications.next()) == {Tier.HIGH, Tier.MEDIUM}
    assert await notifications.until_sentinel(raw) == []


async def test_enqueue_many_of_future_jobs_sends_no_notify(
    notifications: Notifications, raw: asyncpg.Connection, client: Client
) -> None:
    later = dt.timedelta(hours=2)
    await client.enqueue_many([NewJob(queue="sync", data={}, delay=later) for _ in range(COPY_THRESHOLD)])
    await client.enqueue_many([NewJob(queue="sync", data={}, delay=later) for _ in range(3)])
    assert await notifications.until_sentinel(raw) == []
    assert await job_count(raw) == COPY_THRESHOLD + 3


async def test_enqueue_many_mixed_due_and_future_notifies_due_tiers_only(
    notifications: Notifications, raw: asyncpg.Connection, client: Client
) -> None:
    jobs = [NewJob(queue="sync", data={}, delay=dt.timedelta(hours=1)) for _ in range(COPY_THRESHOLD)]
    jobs.append(NewJob(queue="webhooks", data={}))
    await client.enqueue_many(jobs)
    assert tiers(await notifications.next()) == {Tier.MEDIUM}
    assert await notifications.until_sentinel(raw) == []


async def test_notify_is_sent_on_commit_only(notifications: Notifications, raw: asyncpg.Connection) -> None:
    tx = raw.transaction()
    await tx.start()
    await raw.fetchrow(ENQUEUE, "sync", "{}", 5, None, None, None)
    await tx.rollback()
    assert await notifications.until_sentinel(raw) == []
    assert await job_count(raw) == 0
