"""Faults inside one appliance: its database connections killed under load, a background task
that keeps failing, a payload no decoder can read. None of them stops the appliance."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from fleetbox.app import Appliance
from fleetbox.client import Client, NewJob
from fleetbox.models import JobState, ManualClock
from fleetbox.supervise import Supervisor
from tests.conftest import wait_for

AppFactory = Callable[..., Awaitable[Appliance]]
QUEUE = "faults"


async def test_consumption_resumes_after_its_backends_are_killed_in_a_loop_under_load(
    appliance_factory: AppFactory, client: Client, dsn: str
) -> None:
    """The security review's driver fault: pg_terminate_backend twice a second on every fleetbox
    connection while jobs flow. The claim, completion, heartbeat and listener loops each lose their
    connection mid-statement (asyncpg raises InternalClientError or a dropped-connection error);
    each survives, the broken connection is replaced, and every job finishes."""
    done: set[int] = set()

    async def handle(job: Any) -> None:
        done.add(job.id)

    app = await appliance_factory(handlers={QUEUE: handle}, queues={QUEUE: {"tier": "high"}})
    killer = await asyncpg.connect(dsn)
    killed = 0
    stop = asyncio.Event()

    async def kill_loop() -> None:
        nonlocal killed
        while not stop.is_set():
            killed += len(
                await killer.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'fleetbox' AND datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    async def produce() -> list[int]:
        ids: list[int] = []
        async with Client.connect(dsn) as producer:
            for _ in range(20):
                for attempt in range(50):  # the producer is killed too: it retries, as a caller would
                    try:
                        results = await producer.enqueue_many([NewJob(queue=QUEUE, data={}) for _ in range(50)])
                    except Exception:
                        await asyncio.sleep(0.05 * (attempt + 1))
                        continue
                    ids += [r.id for r in results]
                    break
                await asyncio.sleep(0.2)
        return ids

    killing = asyncio.create_task(kill_loop())
    try:
        ids = await produce()
    finally:
        stop.set()
        await killing
        await killer.close()
    assert killed > 0

    # Consumption resumes within seconds after the killing ends, and nothing is lost.
    async def all_succeeded() -> bool:
        count = await app.store.pool.fetchval(
            "SELECT count(*) FROM jobs_done WHERE state = 'succeeded' AND id = ANY($1::bigint[])", ids
        )
        return bool(count == len(ids))

    await wait_for(all_succeeded, timeout=30)
    assert set(ids) <= done
    for name in ("fleetbox.dispatcher", "fleetbox.completer", "fleetbox.heartbeat", "fleetbox.reaper"):
        assert app.supervisor.running(name), name


async def test_a_failing_loop_is_restarted_with_backoff_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    waits: list[float] = []
    runs = 0
    healthy = asyncio.Event()

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 4:
            raise RuntimeError(f"iteration {runs} broke")
        healthy.set()
        await asyncio.Event().wait()

    supervisor = Supervisor(sleep=no_wait)
    caplog.set_level(logging.ERROR, logger="fleetbox.supervise")
    supervisor.spawn("fleetbox.flaky", flaky)
    await asyncio.wait_for(healthy.wait(), 5)
    assert waits == [1, 2, 4, 8]  # backing off, and going on
    state = supervisor.tasks["fleetbox.flaky"]
    assert (state.failures, state.restarts, state.last_error) == (4, 4, "RuntimeError: iteration 4 broke")
    assert "fleetbox.flaky" in supervisor.failing()
    assert [r.event for r in caplog.records if hasattr(r, "event")] == ["task_failed"] * 4  # type: ignore[attr-defined]
    await supervisor.stop_all()
    assert not supervisor.running("fleetbox.flaky")


async def test_a_task_failing_for_long_makes_the_appliance_not_ready_and_opens_an_alert(
    appliance_factory: AppFactory, clock: ManualClock
) -> None:
    app = await appliance_factory(clock=clock, monitor={"task_failing_seconds": 30, "schedule": False})

    async def broken() -> None:
        raise ConnectionResetError("the fault this test plants")

    # A critical loop of this appliance keeps failing (the supervisor restarts it each time).
    await app.supervisor.stop("fleetbox.completer")
    app.supervisor.spawn("fleetbox.completer", broken)
    await wait_for(lambda: "fleetbox.completer" in app.supervisor.failing())
    readiness = await app.readiness()
    assert not readiness.ready
    assert "task fleetbox.completer is failing" in readiness.reasons
    assert readiness.failing["fleetbox.completer"] == "ConnectionResetError: the fault this test plants"

    # Another appliance's monitor sees it through the presence rows, once it has lasted.
    await app.presence.beat()
    assert await app.monitor.check_alerts(await app.presence.conditions()) == []  # not yet a minute
    clock.advance(31)
    await app.presence.beat()
    [alert] = await app.monitor.check_alerts(await app.presence.conditions())
    assert (alert.kind, alert.subject) == ("task_failing", "test/fleetbox.completer")
    assert "ConnectionResetError" in alert.message
    # Restored: the condition clears and the alert resolves.
    await app.supervisor.stop("fleetbox.completer")
    app.supervisor.spawn("fleetbox.completer", app.worker.completer.run)
    app.supervisor.tasks["fleetbox.completer"].failing_since = None
    await app.presence.beat()
    [resolved] = await app.monitor.check_alerts(await app.presence.conditions())
    assert resolved.id == alert.id and resolved.resolved_at is not None


async def test_a_queue_with_waiting_jobs_and_no_consumer_raises_an_alert(
    appliance_factory: AppFactory, clock: ManualClock, client: Client
) -> None:
    app = await appliance_factory(clock=clock, monitor={"no_consumer_seconds": 300, "schedule": False})
    await client.enqueue("teams-outbound", {"chatId": "c1", "content": "hi"}, run_at=clock.now())
    await app.presence.beat()
    health = await app.monitor.health()
    assert health.queues["teams-outbound"].consumers == 0  # nothing here runs Graph queues
    assert await app.monitor.check_alerts(await app.presence.conditions()) == []  # just enqueued
    clock.advance(301)
    await app.presence.beat()
    [alert] = await app.monitor.check_alerts(await app.presence.conditions())
    assert (alert.kind, alert.queue) == ("no_consumer", "teams-outbound")
    assert "no appliance that can run them" in alert.message


async def test_a_job_whose_payload_cannot_be_decoded_is_dead_lettered_as_poison(
    appliance_factory: AppFactory, client: Client, db: Any
) -> None:
    ran: list[int] = []

    async def handle(job: Any) -> None:
        ran.append(job.id)

    await appliance_factory(handlers={"sync": handle})
    deep = '{"a":' * 3000 + "1" + "}" * 3000
    poison = await db.pool.fetchval(
        "INSERT INTO jobs (queue, tier, data) VALUES ('sync', 3, $1::text::jsonb) RETURNING id", deep
    )
    fine = await client.enqueue("sync", {"n": 1})

    async def settled() -> bool:
        return (await client.get_job(poison)).state is JobState.DEAD and fine.id in ran

    await wait_for(settled)
    assert ran == [fine.id]
    [letter] = await client.dead_letters.list(queue="sync")
    assert (letter.job_id, letter.error_class) == (poison, "poison")
    # Reading it back never fails either: its payload is described, not decoded.
    assert "nested too deeply" in letter.data.reason  # type: ignore[attr-defined]


async def test_a_job_that_keeps_losing_its_lease_is_dead_lettered_whatever_the_cause(
    appliance_factory: AppFactory, clock: ManualClock, client: Client, db: Any
) -> None:
    """The guard against a job that crashes its workers runs in the reaper, which sees every lost
    lease (a killed process, a stalled one), not in the handler's path."""
    app = await appliance_factory(handlers={}, clock=clock, appliance={"reap_seconds": 3600})
    job = await client.enqueue("sync", {}, run_at=clock.now())
    lease = dt.timedelta(seconds=5)
    for lost in range(1, 5):
        now = clock.now()
        [claimed] = await db.jobs.claim(app.registry["sync"].tier, 1, f"doomed-{lost}", now, now + lease)
        assert claimed.id == job.id
        clock.advance(6)
        assert await app.worker.leases.reap() == 1
    info = await client.get_job(job.id)
    assert info.state is JobState.DEAD
    [letter] = await client.dead_letters.list(queue="sync")
    assert letter.error_class == "poison"
    assert "the lease expired 4 times" in letter.error
    assert [h["outcome"] for h in letter.history] == ["lease_expired"] * 3 + ["dead"]


async def test_after_a_database_outage_the_reaper_lets_live_owners_renew_first(
    appliance_factory: AppFactory, clock: ManualClock, client: Client, db: Any
) -> None:
    """When the database comes back, a lease that ran out during the outage may belong to an owner
    that is alive and about to renew it: the reaper holds off for two heartbeats."""
    app = await appliance_factory(handlers={}, clock=clock, appliance={"reap_seconds": 3600, "heartbeat_seconds": 1})
    job = await client.enqueue("sync", {}, run_at=clock.now())
    now = clock.now()
    await db.jobs.claim(app.registry["sync"].tier, 1, "owner-elsewhere", now, now + dt.timedelta(seconds=5))
    clock.advance(6)  # the lease ran out
    await app.store.close()  # the database is away for this appliance
    assert await app.worker.leases.reap() == 0
    await app.store.open()
    assert await app.worker.leases.reap() == 0  # back, but holding off
    assert (await client.get_job(job.id)).state is JobState.RUNNING
    await wait_for(app.worker.leases.reap, timeout=5)  # two heartbeats later it reaps
    assert (await client.get_job(job.id)).state is not JobState.RUNNING


async def test_enqueue_with_no_free_connection_fails_fast_with_a_retryable_error(dsn: str) -> None:
    """A database at its connection limit slows an enqueue down, it does not hang it."""
    from fleetbox.errors import DatabaseError
    from fleetbox.store import Store

    async with Store(dsn, schema="fleetbox", min_size=1, max_size=1, acquire_timeout=0.5) as store:
        client = Client(store)
        async with store.pool.acquire():  # the only connection is taken
            loop = asyncio.get_running_loop()
            began = loop.time()
            with pytest.raises(DatabaseError, match=r"no connection free within 0\.5 s; try again"):
                await client.enqueue("sync", {})
            assert loop.time() - began < 5
        assert (await client.enqueue("sync", {})).created  # and it works again once one is free


async def test_a_database_at_its_connection_limit_is_a_clear_retryable_error(dsn: str, db: Any) -> None:
    """New connections refused by the server (too many clients) are a DatabaseError that says so."""
    from urllib.parse import urlsplit, urlunsplit

    from fleetbox.errors import DatabaseError
    from fleetbox.store import Store

    role = f"fleetbox_limited_{uuid.uuid4().hex[:8]}"
    await db.pool.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
    try:
        parts = urlsplit(dsn)
        limited = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))
        with pytest.raises(DatabaseError, match=r"database busy: .*too many connections.*try again"):
            await Store(limited, schema="fleetbox", min_size=1, max_size=2).open()
    finally:
        await db.pool.execute(f"DROP ROLE {role}")


async def test_the_live_stream_says_how_many_appliances_can_run_each_queue(appliance_factory: AppFactory) -> None:
    from fleetbox.admin.routes import STATE

    async def handle(job: Any) -> None:
        return None

    app = await appliance_factory(handlers={"sync": handle})
    await app.presence.beat()
    assert app.admin is not None
    tick = await app.admin.app[STATE].stream.step()
    consumers = {q["name"]: q.get("consumers") for q in tick["queues"]}
    assert (consumers["sync"], consumers["teams-outbound"]) == (1, 0)
