"""Enqueueing from Python: every option, the spec's helpers, bulk enqueue, singleton keys, fuzz."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetbox.client import Client, NewJob
from fleetbox.errors import InvalidInput, NotFound, TransientError, UnknownQueue, ValidationError
from fleetbox.models import Job, JobPriority, JobState, ManualClock, QueueDepth, Tier
from fleetbox.store import Store
from fleetbox.store.jobs import COPY_THRESHOLD
from fleetbox.worker.registry import SPEC_QUEUES
from tests.conftest import SCHEMA, wait_for


@pytest.fixture
def mclient(db: Store, clock: ManualClock) -> Client:
    """A client on the manual clock, so due times can be checked exactly."""
    return Client(db, clock=clock)


async def count_jobs(db: Store) -> int:
    return int(await db.pool.fetchval("SELECT count(*) FROM jobs"))


async def data_by_id(db: Store) -> dict[int, Any]:
    return {r["id"]: r["data"] for r in await db.pool.fetch("SELECT id, data FROM jobs")}


# -- one job, every option -------------------------------------------------------------------


async def test_enqueue_defaults(client: Client) -> None:
    before = dt.datetime.now(dt.UTC)
    result = await client.enqueue("sync", {"resourceType": "messages"})
    assert result.created is True
    job = await client.get_job(result.id)
    assert job.queue == "sync"
    assert job.state is JobState.WAITING
    assert job.priority == JobPriority.NORMAL
    assert job.data == {"resourceType": "messages"}
    assert job.singleton_key is None
    assert job.max_attempts is None
    assert job.attempts == 0
    assert job.history == ()
    assert job.finished_at is None
    # due now (by the database's clock, which is this host's)
    assert before - dt.timedelta(seconds=5) <= job.run_at <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)


async def test_enqueue_with_every_option(mclient: Client, clock: ManualClock) -> None:
    run_at = clock.now() + dt.timedelta(hours=2)
    result = await mclient.enqueue(
        "teams-outbound",
        {"chatId": "c1", "content": "hi", "nested": {"list": [1, 2.5, None, True, "x"]}},
        priority=JobPriority.CRITICAL,
        run_at=run_at,
        singleton_key="chat-c1",
        max_attempts=7,
    )
    job = await mclient.get_job(result.id)
    assert job.queue == "teams-outbound"
    assert job.priority == 1
    assert job.run_at == run_at
    assert job.state is JobState.SCHEDULED
    assert job.singleton_key == "chat-c1"
    assert job.max_attempts == 7
    # read back as operators see it: teams-outbound's message content is masked (fleetbox.redaction)
    assert job.data == {"chatId": "c1", "content": "***", "nested": {"list": [1, 2.5, None, True, "x"]}}


@pytest.mark.parametrize("priority", list(range(1, 11)))
async def test_every_priority_from_1_to_10(mclient: Client, priority: int) -> None:
    result = await mclient.enqueue("webhooks", {}, priority=priority)
    assert (await mclient.get_job(result.id)).priority == priority


@pytest.mark.parametrize(
    ("delay", "expected"),
    [
        (3_600_000, dt.timedelta(hours=1)),
        (1500.5, dt.timedelta(seconds=1.5005)),
        (0, dt.timedelta(0)),
        (dt.timedelta(minutes=5), dt.timedelta(minutes=5)),
        (dt.timedelta(days=2, seconds=3), dt.timedelta(days=2, seconds=3)),
    ],
)
async def test_delay_in_ms_or_timedelta(
    mclient: Client, clock: ManualClock, delay: float | dt.timedelta, expected: dt.timedelta
) -> None:
    result = await mclient.enqueue("sync", {}, delay=delay)
    job = await mclient.get_job(result.id)
    assert job.run_at == clock.now() + expected
    assert job.state is (JobState.SCHEDULED if expected else JobState.WAITING)
    clock.advance(expected.total_seconds())
    assert (await mclient.get_job(result.id)).state is JobState.WAITING


async def test_run_at_in_another_time_zone(mclient: Client) -> None:
    tz = dt.timezone(dt.timedelta(hours=-5))
    run_at = dt.datetime(2031, 6, 1, 9, 30, tzinfo=tz)
    result = await mclient.enqueue("sync", {}, run_at=run_at)
    job = await mclient.get_job(result.id)
    assert job.run_at == run_at
    assert job.run_at.utcoffset() is not None


async def test_run_at_and_delay_together_are_rejected(mclient: Client, db: Store, clock: ManualClock) -> None:
    with pytest.raises(InvalidInput, match="run_at or delay, not both") as err:
        await mclient.enqueue("sync", {}, run_at=clock.now(), delay=1000)
    assert err.value.field == "run_at"
    assert await count_jobs(db) == 0


async def test_naive_datetime_is_rejected(mclient: Client, db: Store) -> None:
    with pytest.raises(InvalidInput, match="time zone") as err:
        await mclient.enqueue("sync", {}, run_at=dt.datetime(2030, 1, 1, 12, 0))  # naive
    assert err.value.field == "run_at"
    with pytest.raises(InvalidInput, match="time zone"):
        await mclient.schedule_job("sync", {}, dt.datetime(2030, 1, 1))  # naive
    assert await count_jobs(db) == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"priority": 0}, "priority"),
        ({"priority": 11}, "priority"),
        ({"priority": 5.0}, "priority"),
        ({"priority": True}, "priority"),
        ({"priority": "5"}, "priority"),
        ({"delay": -1}, "delay"),
        ({"delay": math.nan}, "delay"),
        ({"delay": math.inf}, "delay"),
        ({"delay": "1000"}, "delay"),
        ({"delay": dt.timedelta(days=-1)}, "delay"),
        ({"delay": dt.timedelta(days=3700)}, "delay"),
        ({"run_at": "2030-01-01T00:00:00Z"}, "run_at"),
        ({"run_at": dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5)))}, "run_at"),
        ({"singleton_key": ""}, "singleton_key"),
        ({"singleton_key": "k" * 256}, "singleton_key"),
        ({"singleton_key": 42}, "singleton_key"),
        ({"singleton_key": "a\x00b"}, "singleton_key"),
        ({"singleton_key": "\ud800"}, "singleton_key"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 1001}, "max_attempts"),
        ({"max_attempts": 2.0}, "max_attempts"),
    ],
)
async def test_bad_option_is_named_and_nothing_written(
    mclient: Client, db: Store, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        await mclient.enqueue("sync", {"ok": True}, **kwargs)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")
    assert await count_jobs(db) == 0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ([1, 2], "must be a JSON object"),
        ("text", "must be a JSON object"),
        (None, "must be a JSON object"),
        ({"x": math.nan}, "not JSON-serialisable"),
        ({"x": math.inf}, "not JSON-serialisable"),
        ({"x": {1, 2}}, "not JSON-serialisable"),
        ({"x": object()}, "not JSON-serialisable"),
        ({"x": 10**5000}, "not JSON-serialisable"),
        ({"x": "a\x00b"}, "NUL"),
        ({"a\x00": 1}, "NUL"),
        ({"x": "\udc80"}, "lone surrogate"),
        ({"x": "y" * 2000}, "larger than the limit of 1024 bytes"),
    ],
)
async def test_bad_payload_is_named_and_nothing_written(db: Store, data: Any, reason: str) -> None:
    client = Client(db, max_payload_bytes=1024)
    with pytest.raises(InvalidInput, match=reason) as err:
        await client.enqueue("sync", data)
    assert err.value.field == "data"
    assert await count_jobs(db) == 0


async def test_payload_edge_values_are_stored(mclient: Client) -> None:
    data = {
        "big": 10**30,
        "negative": -(10**20),
        "float": 1.5e300,
        "unicode": "héllo ✓ 😀",
        "backslash": "C:\\u0000dir",  # a literal backslash, not a NUL
        "empty": {},
        "deep": [[[[{"a": [None]}]]]],
    }
    result = await mclient.enqueue("sync", data)
    stored = (await mclient.get_job(result.id)).data
    assert stored["big"] == 10**30
    assert stored["negative"] == -(10**20)
    assert stored["float"] == pytest.approx(1.5e300)
    assert stored["unicode"] == "héllo ✓ 😀"
    assert stored["backslash"] == "C:\\u0000dir"
    assert stored["empty"] == {}
    assert stored["deep"] == [[[[{"a": [None]}]]]]


async def test_unknown_queue_names_the_queue(mclient: Client, db: Store) -> None:
    with pytest.raises(UnknownQueue) as err:
        await mclient.enqueue("no-such-queue", {})
    assert err.value.queue == "no-such-queue"
    assert err.value.field == "queue"
    assert "'no-such-queue'" in str(err.value)
    assert "teams-outbound" in str(err.value)  # the known queues are listed
    assert isinstance(err.value, InvalidInput)
    assert await count_jobs(db) == 0


async def test_dead_letter_queue_takes_no_jobs(mclient: Client, db: Store) -> None:
    with pytest.raises(InvalidInput, match="dead letters") as err:
        await mclient.enqueue("dead-letter", {})
    assert err.value.field == "queue"
    assert await count_jobs(db) == 0


async def test_queue_added_after_the_client_looked_is_found(mclient: Client, db: Store) -> None:
    with pytest.raises(UnknownQueue):
        await mclient.enqueue("reports", {})
    await db.queues.register([("reports", Tier.LOW)])
    result = await mclient.enqueue("reports", {"n": 1})
    assert (await mclient.get_job(result.id)).queue == "reports"


async def test_get_job_of_unknown_id(mclient: Client) -> None:
    with pytest.raises(NotFound):
        await mclient.get_job(123456789)
    with pytest.raises(InvalidInput):
        await mclient.get_job("1")  # type: ignore[arg-type]


# -- the spec's helpers ----------------------------------------------------------------------


async def test_spec_helpers_land_on_their_queues(client: Client) -> None:
    mclient = client  # helpers due now: by the real clock
    teams = await mclient.enqueue_teams_message(
        {"chatId": "chat-id", "content": "Hello from Fleet System!", "contentType": "text", "importance": "high"},
        JobPriority.HIGH,
    )
    email = await mclient.enqueue_outlook_email(
        {
            "to": ["user@example.com"],
            "subject": "Important Update",
            "body": "<h1>Hello!</h1><p>This is an important update.</p>",
            "bodyType": "html",
            "importance": "high",
        },
        JobPriority.NORMAL,
    )
    attachment = await mclient.enqueue_attachment_upload(
        {
            "fileId": "file-123",
            "fileName": "document.pdf",
            "fileSize": 1024000,
            "contentType": "application/pdf",
            "operation": "upload",
            "source": "teams",
        }
    )
    received = dt.datetime.now(dt.UTC)
    webhook = await mclient.enqueue_webhook_processing(
        {
            "webhookId": "webhook-123",
            "source": "teams",
            "eventType": "message.received",
            "data": {"id": "m1"},
            "receivedAt": received,
        }
    )
    sync = await mclient.enqueue_sync(
        {"resourceType": "messages", "userId": "user-123", "teamId": "team-456", "fullSync": False}
    )
    expected = {
        teams.id: ("teams-outbound", JobPriority.HIGH),
        email.id: ("outlook-outbound", JobPriority.NORMAL),
        attachment.id: ("attachments", JobPriority.NORMAL),
        webhook.id: ("webhooks", JobPriority.NORMAL),
        sync.id: ("sync", JobPriority.LOW),
    }
    for job_id, (queue, priority) in expected.items():
        job = await mclient.get_job(job_id)
        assert (job.queue, job.priority) == (queue, priority)
        assert job.state is JobState.WAITING
    assert (await mclient.get_job(teams.id)).data["chatId"] == "chat-id"
    assert (await mclient.get_job(email.id)).data["to"] == ["user@example.com"]
    assert (await mclient.get_job(attachment.id)).data["fileSize"] == 1024000
    webhook_data = (await mclient.get_job(webhook.id)).data
    assert dt.datetime.fromisoformat(webhook_data["receivedAt"]) == received
    assert (await mclient.get_job(sync.id)).data["fullSync"] is False


async def test_helpers_pass_options_through(mclient: Client, clock: ManualClock) -> None:
    result = await mclient.enqueue_sync(
        {"resourceType": "messages", "userId": "u1"}, singleton_key="sync-messages-u1", delay=60_000
    )
    again = await mclient.enqueue_sync({"resourceType": "messages", "userId": "u1"}, singleton_key="sync-messages-u1")
    assert again.id == result.id
    assert again.created is False
    job = await mclient.get_job(result.id)
    assert job.singleton_key == "sync-messages-u1"
    assert job.run_at == clock.now() + dt.timedelta(minutes=1)


async def test_helper_payload_errors_name_the_field(mclient: Client, db: Store) -> None:
    with pytest.raises(InvalidInput) as err:
        await mclient.enqueue_teams_message({"chatId": "c"})
    assert err.value.field == "data.content"
    with pytest.raises(InvalidInput) as err:
        await mclient.enqueue_outlook_email({"to": "a@example.com", "subject": "s", "body": "b"})
    assert err.value.field == "data.to"
    with pytest.raises(InvalidInput) as err:
        await mclient.enqueue_attachment_upload(
            {
                "fileId": "f",
                "fileName": "n",
                "fileSize": -1,
                "contentType": "c",
                "operation": "upload",
                "source": "teams",
            }
        )
    assert err.value.field == "data.fileSize"
    with pytest.raises(InvalidInput) as err:
        await mclient.enqueue_teams_message({"content": "no target"})
    assert err.value.field == "data"
    with pytest.raises(InvalidInput) as err:
        await mclient.enqueue_sync({"resourceType": "messages"}, priority=0)
    assert err.value.field == "priority"
    assert await count_jobs(db) == 0


async def test_schedule_job_with_a_datetime(mclient: Client, clock: ManualClock) -> None:
    when = clock.now() + dt.timedelta(days=3)
    result = await mclient.schedule_job("teams-outbound", {"chatId": "c", "content": "later"}, when)
    job = await mclient.get_job(result.id)
    assert (job.queue, job.run_at, job.state) == ("teams-outbound", when, JobState.SCHEDULED)


async def test_schedule_job_with_a_delay_in_ms(mclient: Client, clock: ManualClock) -> None:
    result = await mclient.schedule_job("outlook-outbound", {"to": ["a@example.com"]}, 3600000)
    job = await mclient.get_job(result.id)
    assert (job.queue, job.run_at, job.state) == (
        "outlook-outbound",
        clock.now() + dt.timedelta(hours=1),
        JobState.SCHEDULED,
    )
    timed = await mclient.schedule_job("sync", {}, dt.timedelta(seconds=30), priority=2)
    job = await mclient.get_job(timed.id)
    assert job.run_at == clock.now() + dt.timedelta(seconds=30)
    assert job.priority == 2


# -- enqueue_many ----------------------------------------------------------------------------


async def test_enqueue_many_empty(mclient: Client) -> None:
    assert await mclient.enqueue_many([]) == []


@pytest.mark.parametrize("size", [5, COPY_THRESHOLD - 1, COPY_THRESHOLD, 150])
async def test_enqueue_many_returns_ids_in_input_order(mclient: Client, db: Store, size: int) -> None:
    queues = ["sync", "teams-outbound", "webhooks"]
    jobs = [NewJob(queue=queues[i % 3], data={"i": i}, priority=1 + i % 10) for i in range(size)]
    results = await mclient.enqueue_many(jobs)
    assert len(results) == size
    assert all(r.created for r in results)
    assert len({r.id for r in results}) == size
    stored = {r["id"]: r for r in await db.pool.fetch("SELECT id, queue, data, priority, tier FROM jobs")}
    assert len(stored) == size
    for i, result in enumerate(results):
        row = stored[result.id]
        assert row["data"] == {"i": i}
        assert row["queue"] == queues[i % 3]
        assert row["priority"] == 1 + i % 10
        assert row["tier"] == SPEC_QUEUES[queues[i % 3]]


@pytest.mark.parametrize("size", [10, COPY_THRESHOLD + 36])
async def test_enqueue_many_with_singleton_keys_mixed_in(mclient: Client, db: Store, size: int) -> None:
    existing = await mclient.enqueue("sync", {"existing": True}, singleton_key="taken")
    jobs: list[NewJob | dict[str, Any]] = []
    for i in range(size):
        if i == 3:
            jobs.append(NewJob(queue="sync", data={"i": i}, singleton_key="taken"))
        elif i in (4, 7):
            jobs.append(NewJob(queue="sync", data={"i": i}, singleton_key="twice-in-batch"))
        elif i % 5 == 0:
            jobs.append({"queue": "webhooks", "data": {"i": i}, "singleton_key": f"key-{i}"})
        else:
            jobs.append({"queue": "sync", "data": {"i": i}})
    results = await mclient.enqueue_many(jobs)
    assert len(results) == size
    assert results[3].id == existing.id
    assert results[3].created is False
    assert results[4].created is True
    assert results[7].id == results[4].id
    assert results[7].created is False
    stored = await data_by_id(db)
    assert stored[existing.id] == {"existing": True}  # the existing job is untouched
    for i, result in enumerate(results):
        if i in (3, 7):
            continue
        assert result.created is True
        assert stored[result.id] == {"i": i}
    assert len(stored) == size - 2 + 1  # two matched existing keys; plus the job made first


async def test_enqueue_many_keeps_options(mclient: Client, clock: ManualClock) -> None:
    run_at = clock.now() + dt.timedelta(hours=5)
    jobs = [
        NewJob(queue="sync", data={"i": i}, run_at=run_at, max_attempts=2, priority=9) for i in range(COPY_THRESHOLD)
    ]
    jobs.append(NewJob(queue="sync", data={"later": True}, delay=dt.timedelta(minutes=1)))
    results = await mclient.enqueue_many(jobs)
    first = await mclient.get_job(results[0].id)
    assert (first.run_at, first.max_attempts, first.priority, first.state) == (run_at, 2, 9, JobState.SCHEDULED)
    last = await mclient.get_job(results[-1].id)
    assert last.run_at == clock.now() + dt.timedelta(minutes=1)


@pytest.mark.parametrize("size", [10, COPY_THRESHOLD * 2])
@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"priority": 0}, "priority"),
        ({"data": [1]}, "data"),
        ({"data": {"x": math.nan}}, "data"),
        ({"queue": "nope"}, "queue"),
        ({"queue": "dead-letter"}, "queue"),
        ({"singleton_key": ""}, "singleton_key"),
        ({"delay": -5}, "delay"),
        ({"run_at": dt.datetime(2030, 1, 1)}, "run_at"),  # naive
        ({"max_attempts": 0}, "max_attempts"),
    ],
)
async def test_enqueue_many_is_all_or_nothing(
    mclient: Client, db: Store, size: int, bad: dict[str, Any], field: str
) -> None:
    jobs = [NewJob(queue="sync", data={"i": i}) for i in range(size)]
    index = size - 3
    jobs[index] = NewJob(**{"queue": "sync", "data": {"i": index}, **bad})
    jobs[1] = NewJob(queue="sync", data={"i": 1}, singleton_key="k1")
    with pytest.raises(InvalidInput) as err:
        await mclient.enqueue_many(jobs)
    assert err.value.field == f"jobs[{index}].{field}"
    assert str(err.value).startswith(f"jobs[{index}].{field}: ")
    assert await count_jobs(db) == 0


async def test_enqueue_many_rejects_malformed_items(mclient: Client, db: Store) -> None:
    good = {"queue": "sync", "data": {}}
    with pytest.raises(InvalidInput, match="unknown field") as err:
        await mclient.enqueue_many([good, {"queue": "sync", "data": {}, "colour": "red"}])
    assert err.value.field == "jobs[1]"
    with pytest.raises(InvalidInput, match="needs queue and data") as err:
        await mclient.enqueue_many([good, good, {"queue": "sync"}])
    assert err.value.field == "jobs[2]"
    with pytest.raises(InvalidInput) as err:
        await mclient.enqueue_many([good, "not a job"])  # type: ignore[list-item]
    assert err.value.field == "jobs[1]"
    assert await count_jobs(db) == 0


# -- singleton keys under concurrency --------------------------------------------------------


async def test_singleton_key_under_concurrency(dsn: str, db: Store) -> None:
    callers = 24
    databases = [Store(dsn, schema=SCHEMA, min_size=1, max_size=1) for _ in range(callers)]
    await asyncio.gather(*(d.open() for d in databases))
    try:
        clients = [Client(d) for d in databases]
        await asyncio.gather(*(c.queues() for c in clients))  # warm: the enqueue is one round trip
        for key in ("sync-messages-u1", "sync-messages-u2"):
            results = await asyncio.gather(
                *(c.enqueue("sync", {"caller": n}, singleton_key=key) for n, c in enumerate(clients))
            )
            ids = {r.id for r in results}
            assert len(ids) == 1
            assert sum(r.created for r in results) == 1
            rows = await db.pool.fetch("SELECT id FROM jobs WHERE singleton_key = $1", key)
            assert [r["id"] for r in rows] == list(ids)
        assert await count_jobs(db) == 2
    finally:
        await asyncio.gather(*(d.close() for d in databases))


async def test_singleton_bulk_and_single_race(dsn: str, db: Store) -> None:
    databases = [Store(dsn, schema=SCHEMA, min_size=1, max_size=1) for _ in range(8)]
    await asyncio.gather(*(d.open() for d in databases))
    try:
        clients = [Client(d) for d in databases]
        await asyncio.gather(*(c.queues() for c in clients))

        async def call(n: int, client: Client) -> int:
            if n % 2:
                return (await client.enqueue("webhooks", {"n": n}, singleton_key="hook-1")).id
            jobs = [NewJob(queue="webhooks", data={"n": n, "i": i}) for i in range(COPY_THRESHOLD)]
            jobs.append(NewJob(queue="webhooks", data={"n": n}, singleton_key="hook-1"))
            return (await client.enqueue_many(jobs))[-1].id

        ids = await asyncio.gather(*(call(n, c) for n, c in enumerate(clients)))
        assert len(set(ids)) == 1
        keyed = await db.pool.fetchval("SELECT count(*) FROM jobs WHERE singleton_key = 'hook-1'")
        assert keyed == 1
        assert await count_jobs(db) == 1 + 4 * COPY_THRESHOLD
    finally:
        await asyncio.gather(*(d.close() for d in databases))


async def test_singleton_key_is_free_again_after_the_job_finishes(appliance_factory: Any, client: Client) -> None:
    ran: list[int] = []

    async def handle(job: Job) -> None:
        ran.append(job.id)

    first = await client.enqueue("sync", {"n": 1}, singleton_key="sync-messages-u1")
    duplicate = await client.enqueue("sync", {"n": 2}, singleton_key="sync-messages-u1")
    assert duplicate.id == first.id and not duplicate.created
    await appliance_factory(handlers={"sync": handle})

    async def succeeded(job_id: int) -> bool:
        return (await client.get_job(job_id)).state is JobState.SUCCEEDED

    await wait_for(lambda: succeeded(first.id))
    again = await client.enqueue("sync", {"n": 3}, singleton_key="sync-messages-u1")
    assert again.created is True
    assert again.id != first.id
    await wait_for(lambda: succeeded(again.id))
    assert ran == [first.id, again.id]
    finished = await client.get_job(first.id)
    assert finished.singleton_key == "sync-messages-u1"
    assert finished.data == {"n": 1}


async def test_singleton_key_held_while_retrying(appliance_factory: Any, client: Client, clock: ManualClock) -> None:
    async def fail(job: Job) -> None:
        raise TransientError("upstream 503")

    # due by the appliance's manual clock
    first = await client.enqueue("sync", {}, singleton_key="k", run_at=clock.now())
    await appliance_factory(handlers={"sync": fail}, clock=clock)

    async def retrying() -> bool:
        return (await client.get_job(first.id)).state is JobState.RETRYING

    await wait_for(retrying)
    again = await client.enqueue("sync", {}, singleton_key="k")
    assert (again.id, again.created) == (first.id, False)


# -- queue depth -----------------------------------------------------------------------------


async def test_queue_depth_counts_each_state(appliance_factory: Any, clock: ManualClock) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def block(job: Job) -> None:
        started.set()
        await release.wait()

    async def fail(job: Job) -> None:
        raise TransientError("network blip")

    async def refuse(job: Job) -> None:
        raise ValidationError("not a notification")

    app = await appliance_factory(handlers={"webhooks": block, "sync": fail, "notifications": refuse}, clock=clock)
    client = app.client
    await client.set_paused("outlook-outbound", True)
    now = clock.now()  # due by the appliance's manual clock
    await client.enqueue("outlook-outbound", {"to": ["a@example.com"]}, run_at=now)
    await client.enqueue("outlook-outbound", {"to": ["b@example.com"]}, run_at=now)
    await client.enqueue("outlook-outbound", {"to": ["c@example.com"]}, delay=60_000)
    await client.enqueue("teams-inbound", {}, delay=dt.timedelta(hours=1))
    await client.enqueue("webhooks", {}, run_at=now)
    await client.enqueue("sync", {}, run_at=now)
    await client.enqueue("notifications", {}, run_at=now)  # refused: straight to the dead letters

    async def depth() -> dict[str, QueueDepth]:
        return {d.queue: d for d in await client.queue_depth()}

    async def settled() -> bool:
        d = await depth()
        return d["webhooks"].running == 1 and d["sync"].retrying == 1 and d["notifications"].dead == 1

    await wait_for(settled)
    assert started.is_set()
    d = await depth()
    outlook = d["outlook-outbound"]
    assert (outlook.paused, outlook.waiting, outlook.scheduled, outlook.retrying, outlook.running) == (
        True,
        2,
        1,
        0,
        0,
    )
    assert outlook.backlog == 3
    assert (d["teams-inbound"].scheduled, d["teams-inbound"].waiting) == (1, 0)
    assert (d["webhooks"].running, d["webhooks"].waiting, d["webhooks"].backlog) == (1, 0, 0)
    assert (d["sync"].retrying, d["sync"].waiting, d["sync"].running) == (1, 0, 0)
    assert d["notifications"].dead == 1
    assert d["notifications"].backlog == 0
    assert d["dead-letter"].dead == 1
    assert set(d) >= set(SPEC_QUEUES)
    # time passes: the scheduled jobs become waiting
    clock.advance(61)
    d = await depth()
    assert (d["outlook-outbound"].waiting, d["outlook-outbound"].scheduled) == (3, 0)
    assert d["teams-inbound"].scheduled == 1
    release.set()
    await wait_for(lambda: depth_is(client, "webhooks", running=0))


async def depth_is(client: Client, queue: str, **expected: int) -> bool:
    d = {x.queue: x for x in await client.queue_depth()}[queue]
    return all(getattr(d, k) == v for k, v in expected.items())


# -- fuzz ------------------------------------------------------------------------------------
#
# Each argument is drawn valid most of the time and wild otherwise, so both accepted calls and
# every kind of rejection are exercised.

ENQUEUEABLE = [q for q in SPEC_QUEUES if q != "dead-letter"]
clean_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
lone_surrogate = st.builds(lambda a, c, b: a + c + b, clean_text, st.characters(categories=["Cs"]), clean_text)
with_nul = st.builds(lambda a, b: a + "\x00" + b, clean_text, clean_text)
wild_text = st.one_of(
    lone_surrogate,
    with_nul,
    st.text(alphabet=st.characters(codec=None)),
    st.sampled_from(["\\u0000", "😀", "\\", ""]),  # valid, but easy to get wrong
)
odd_leaf = st.one_of(
    wild_text,
    st.sampled_from([math.nan, math.inf, -math.inf, frozenset(), b"bytes", dt.date(2025, 1, 1)]),
    st.integers(4301, 4400).map(lambda digits: 10**digits),
)
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, -(2**64), 10**40]),
    st.integers(4301, 4400).map(lambda digits: 10**digits),  # past Python's int-to-text limit
    st.floats(allow_nan=True, allow_infinity=True),
    clean_text,
    wild_text,
)
json_key = st.one_of(
    clean_text, wild_text, st.integers(), st.booleans(), st.none(), st.floats(), st.tuples(st.integers())
)
json_value = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(json_key, children, max_size=4),
        st.tuples(children),
        st.frozensets(st.integers(), max_size=2),
    ),
    max_leaves=12,
)
clean_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), clean_text),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(clean_text, children, max_size=3)),
    max_leaves=8,
)


def same_json(stored: Any, given: Any) -> bool:
    """Equal as JSON: jsonb keeps numbers as decimals, so 1e16 (a float) may come back as an int.

    ``given`` is first read back the way JSON sees it (non-string keys become strings, tuples
    become lists, and of two keys that become one string the last wins), since that is what a
    caller sends.
    """
    given = json.loads(json.dumps(given))
    return _same(stored, given)


def _same(stored: Any, given: Any) -> bool:
    if isinstance(given, bool) or given is None or isinstance(given, str):
        return stored == given and type(stored) is type(given)
    if isinstance(given, int | float):
        return not isinstance(stored, bool) and math.isclose(stored, given, rel_tol=1e-15, abs_tol=0)
    if isinstance(given, dict):
        return stored.keys() == given.keys() and all(_same(stored[k], v) for k, v in given.items())
    return len(stored) == len(given) and all(_same(a, b) for a, b in zip(stored, given, strict=True))


def mostly(valid: st.SearchStrategy[Any], wild: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` four times in five, else ``wild``."""
    return st.integers(0, 4).flatmap(lambda n: valid if n else wild)


queues = mostly(
    st.sampled_from(ENQUEUEABLE),
    st.one_of(
        st.sampled_from(["dead-letter", "no-such-queue", "", "SYNC", "sync "]), wild_text, st.integers(), st.none()
    ),
)
clean_dict = st.dictionaries(clean_text, clean_value, max_size=4)
payloads = mostly(
    clean_dict,
    st.one_of(
        st.builds(lambda d, k, v: {**d, k: v}, clean_dict, clean_text, odd_leaf),  # one odd value
        st.builds(lambda d, k, v: {**d, k: v}, clean_dict, json_key, clean_value),  # one odd key
        st.builds(lambda d, k, v: {**d, k: v}, clean_dict, wild_text, clean_value),
        st.dictionaries(json_key, json_value, max_size=5),
        json_value,
    ),
)
priorities = mostly(
    st.integers(1, 10),
    st.one_of(
        st.integers(),
        st.booleans(),
        st.floats(),
        st.none(),
        st.text(max_size=3),
        st.sampled_from(list(JobPriority)),
    ),
)
delays = mostly(
    st.one_of(st.none(), st.integers(0, 10**9), st.timedeltas(dt.timedelta(0), dt.timedelta(days=365))),
    st.one_of(st.integers(), st.floats(), st.timedeltas(), st.text(max_size=3), st.booleans()),
)
offsets = st.builds(dt.timezone, st.timedeltas(min_value=-dt.timedelta(hours=23), max_value=dt.timedelta(hours=23)))
edge_times = st.sampled_from(
    [
        dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5))),
        dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        dt.datetime.min.replace(tzinfo=dt.UTC),
        dt.datetime.max.replace(tzinfo=dt.UTC),
    ]
)
run_ats = mostly(
    st.none(), st.one_of(st.datetimes(timezones=st.one_of(st.none(), offsets)), edge_times, st.text(max_size=3))
)
singleton_keys = mostly(
    st.one_of(st.none(), clean_text.filter(bool), st.sampled_from(["k", "sync-messages-u1", "k" * 255])),
    st.one_of(
        st.text(alphabet=st.characters(codec=None), max_size=300),
        st.sampled_from(["", "k" * 256]),
        wild_text,
        st.integers(),
    ),
)
max_attempts = mostly(st.one_of(st.none(), st.integers(1, 1000)), st.one_of(st.integers(), st.booleans(), st.floats()))


def test_fuzz_enqueue_succeeds_or_raises_invalid_input(dsn: str) -> None:
    """Whatever a caller passes, enqueue either works or raises InvalidInput having written nothing."""
    loop = asyncio.new_event_loop()
    db = Store(dsn, schema=SCHEMA, min_size=1, max_size=2)
    loop.run_until_complete(db.open())
    client = Client(db)
    outcomes = {"ok": 0, "invalid": 0}

    async def attempt(queue: Any, data: Any, priority: Any, delay: Any, run_at: Any, key: Any, cap: Any) -> None:
        before = await count_jobs(db)
        try:
            result = await client.enqueue(
                queue, data, priority=priority, delay=delay, run_at=run_at, singleton_key=key, max_attempts=cap
            )
        except InvalidInput as exc:
            outcomes["invalid"] += 1
            assert exc.field, exc
            assert await count_jobs(db) == before
            return
        outcomes["ok"] += 1
        assert await count_jobs(db) == before + (1 if result.created else 0)
        job = await client.get_job(result.id)
        assert job.queue == queue
        assert job.singleton_key == key
        if result.created:
            assert job.priority == priority
            assert job.max_attempts == cap

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(
        queue=queues,
        data=payloads,
        priority=priorities,
        delay=delays,
        run_at=run_ats,
        key=singleton_keys,
        cap=max_attempts,
    )
    def check(queue: Any, data: Any, priority: Any, delay: Any, run_at: Any, key: Any, cap: Any) -> None:
        loop.run_until_complete(attempt(queue, data, priority, delay, run_at, key, cap))

    try:
        check()
    finally:
        loop.run_until_complete(db.close())
        loop.close()
    assert outcomes["ok"] > 0
    assert outcomes["invalid"] > 0


def test_fuzz_many_is_all_or_nothing(dsn: str) -> None:
    """A batch with any bad item writes nothing; a good batch writes every job, in order."""
    loop = asyncio.new_event_loop()
    db = Store(dsn, schema=SCHEMA, min_size=1, max_size=2)
    loop.run_until_complete(db.open())
    client = Client(db)

    async def attempt(jobs: list[dict[str, Any]]) -> None:
        before = await count_jobs(db)
        try:
            results = await client.enqueue_many(jobs)
        except InvalidInput as exc:
            assert exc.field is not None
            assert exc.field.startswith("jobs[")
            assert await count_jobs(db) == before
            return
        assert len(results) == len(jobs)
        assert await count_jobs(db) == before + sum(r.created for r in results)
        rows = await db.pool.fetch("SELECT id, data FROM jobs WHERE id = any($1::bigint[])", [r.id for r in results])
        stored = {r["id"]: r["data"] for r in rows}
        for job, result in zip(jobs, results, strict=True):
            if result.created:
                assert same_json(stored[result.id], job["data"])

    job = st.fixed_dictionaries(
        {"queue": queues, "data": payloads},
        optional={"priority": priorities, "delay": delays, "singleton_key": singleton_keys},
    )
    size = st.one_of(st.integers(0, 5), st.integers(COPY_THRESHOLD - 1, COPY_THRESHOLD + 2))

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(jobs=size.flatmap(lambda n: st.lists(job, min_size=n, max_size=n)))
    def check(jobs: list[dict[str, Any]]) -> None:
        loop.run_until_complete(attempt(jobs))

    try:
        check()
    finally:
        loop.run_until_complete(db.close())
        loop.close()
