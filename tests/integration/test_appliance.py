"""The appliance end to end against a real PostgreSQL: dispatch order, tier isolation, retries,
dead letters, pause, wake-ups, batched completions, leases, graceful stop and several appliances.

Time-based behaviour (retry delays, scheduled jobs, leases) is driven by a ManualClock given to the
appliance; jobs in those tests are enqueued with ``run_at=clock.now()`` so "due" means due by that
clock. Waiting is always on a condition with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
import pytest

from fleetbox import (
    AuthenticationError,
    Client,
    NetworkError,
    NewJob,
    RateLimitError,
    ValidationError,
    rules,
)
from fleetbox.app import Appliance
from fleetbox.models import DeadLetterStatus, Job, JobInfo, JobState, ManualClock, Outcome, Tier
from fleetbox.store import Store
from tests.conftest import wait_for

AppFactory = Callable[..., Awaitable[Appliance]]


# -- helpers ------------------------------------------------------------------------------


def seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)


def in_state(client: Client, job_id: int, *states: JobState) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await client.get_job(job_id)).state in states

    return check


def has_attempts(client: Client, job_id: int, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len((await client.get_job(job_id)).history) >= count

    return check


async def wait_attempts(client: Client, job_id: int, count: int, *, within: float = 10.0) -> JobInfo:
    """The job once ``count`` attempts are recorded (and its row reflects the last one)."""
    await wait_for(has_attempts(client, job_id, count), timeout=within)
    info = await client.get_job(job_id)
    assert len(info.history) == count, info.history
    return info


async def wait_state(client: Client, job_id: int, *states: JobState, within: float = 10.0) -> JobInfo:
    await wait_for(in_state(client, job_id, *states), timeout=within)
    return await client.get_job(job_id)


def advance(app: Appliance, clock: ManualClock, by: float) -> None:
    clock.advance(by)
    app.wake()


async def depth(client: Client, queue: str) -> Any:
    return next(d for d in await client.queue_depth() if d.queue == queue)


async def probe(app: Appliance, queue: str, ran: list[int], *, run_at: dt.datetime | None = None) -> None:
    """Enqueue a job on ``queue`` and wait for it to run: proof the appliance had its chance."""
    result = await app.client.enqueue(queue, {"probe": True}, run_at=run_at)
    await wait_for(lambda: result.id in ran)
    await wait_state(app.client, result.id, JobState.SUCCEEDED)


class Concurrency:
    """Counts handlers running at once, per key."""

    def __init__(self) -> None:
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    def enter(self, key: str) -> None:
        self.now[key] += 1
        self.peak[key] = max(self.peak[key], self.now[key])

    def leave(self, key: str) -> None:
        self.now[key] -= 1


class HoldingProxy:
    """A TCP proxy to PostgreSQL that holds back server replies carrying a marker.

    The query has run (and committed) in the database; only its reply is late to the client.
    The server is reached over TCP, or over its unix socket (the embedded server of the tests).
    """

    def __init__(self, dsn: str, marker: bytes) -> None:
        parts = urlsplit(dsn)
        socket_dir = parse_qs(parts.query).get("host", [""])[0]
        if parts.hostname:
            self.target: tuple[str, int] | str = (parts.hostname, parts.port or 5432)
        else:
            self.target = f"{socket_dir}/.s.PGSQL.{parts.port or 5432}"
        #: the same database, through this proxy (set on entry)
        self.dsn = ""
        self._parts = parts
        self.marker = marker
        self.release = asyncio.Event()
        self.held = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> HoldingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        user = self._parts.username or "postgres"
        self.dsn = urlunsplit(self._parts._replace(netloc=f"{user}@127.0.0.1:{self.port}", query=""))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if isinstance(self.target, str):
            up_reader, up_writer = await asyncio.open_unix_connection(self.target)
        else:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]
        for coro in (self._pipe(reader, up_writer, hold=False), self._pipe(up_reader, writer, hold=True)):
            self._tasks.add(asyncio.ensure_future(coro))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, hold: bool) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if hold and self.marker in data:
                    self.held.set()
                    await self.release.wait()
                writer.write(data)
                await writer.drain()
        writer.close()


# -- dispatch order and tier isolation ----------------------------------------------------


async def test_priority_order_within_a_queue(appliance_factory: AppFactory, client: Client) -> None:
    priorities = [10, 1, 5, 5, 3, 1, 10, 5, 8, 3]
    ids = [(await client.enqueue("sync", {"i": i}, priority=p)).id for i, p in enumerate(priorities)]
    order: list[int] = []

    async def handle(job: Job) -> None:
        order.append(job.id)

    await appliance_factory(handlers={"sync": handle}, pools={"low": 1})
    await wait_for(lambda: len(order) == len(ids))
    # lowest number first; among equal priorities, the order they were enqueued in
    expected = [job_id for _, _, job_id in sorted(zip(priorities, range(len(ids)), ids, strict=True))]
    assert order == expected


async def test_a_flood_of_low_tier_work_never_delays_the_high_tier(
    appliance_factory: AppFactory, client: Client
) -> None:
    release = asyncio.Event()
    busy = Concurrency()
    low_done: list[int] = []
    high_done: list[int] = []

    async def slow_low(job: Job) -> None:
        busy.enter("low")
        try:
            await release.wait()
        finally:
            busy.leave("low")
        low_done.append(job.id)

    async def high(job: Job) -> None:
        high_done.append(job.id)

    await appliance_factory(handlers={"sync": slow_low, "notifications": high}, pools={"low": 2})
    flood = await client.enqueue_many([NewJob(queue="sync", data={"i": i}) for i in range(300)])
    await wait_for(lambda: busy.now["low"] == 2)
    sync = await depth(client, "sync")
    assert (sync.running, sync.waiting) == (2, 298)

    urgent = await client.enqueue("notifications", {"alert": "fire"})
    info = await wait_state(client, urgent.id, JobState.SUCCEEDED, within=5)
    assert high_done == [urgent.id]
    assert info.attempts == 1
    # the low pool is still saturated by its flood, and never went beyond its two slots
    assert busy.now["low"] == 2
    assert not low_done
    sync = await depth(client, "sync")
    assert (sync.running, sync.waiting) == (2, 298)

    release.set()
    await wait_for(lambda: len(low_done) == 300, timeout=60)
    assert sorted(low_done) == sorted(r.id for r in flood)
    assert busy.peak["low"] == 2


async def test_never_claims_more_jobs_than_free_slots(appliance_factory: AppFactory, client: Client) -> None:
    sizes = {"high": 3, "medium": 2, "low": 1}
    queue_tier = {"notifications": "high", "webhooks": "medium", "sync": "low"}
    busy = Concurrency()
    done: list[int] = []

    def handler_for(tier: str) -> Callable[[Job], Awaitable[None]]:
        async def handle(job: Job) -> None:
            busy.enter(tier)
            try:
                await asyncio.sleep(0.005)  # the work itself (not a wait for a condition)
            finally:
                busy.leave(tier)
            done.append(job.id)

        return handle

    jobs = [NewJob(queue=q, data={"i": i}) for q in queue_tier for i in range(30)]
    await client.enqueue_many(jobs)
    app = await appliance_factory(handlers={q: handler_for(t) for q, t in queue_tier.items()}, pools=sizes)

    await wait_for(lambda: len(done) == len(jobs), timeout=60)
    assert dict(busy.peak) == sizes
    assert app.worker.dispatcher.claimed == len(jobs)  # every claimed job ran: nothing claimed beyond a slot


async def test_a_scheduled_job_does_not_start_early(appliance_factory: AppFactory, clock: ManualClock) -> None:
    ran: list[int] = []

    async def handle(job: Job) -> None:
        ran.append(job.id)

    app = await appliance_factory(handlers={"sync": handle}, clock=clock)
    later = await app.client.enqueue("sync", {"when": "later"}, run_at=clock.now() + seconds(60))
    app.wake()
    await probe(app, "sync", ran, run_at=clock.now())
    assert later.id not in ran
    assert (await app.client.get_job(later.id)).state is JobState.SCHEDULED

    advance(app, clock, 59)  # still a second early
    await probe(app, "sync", ran, run_at=clock.now())
    assert later.id not in ran

    advance(app, clock, 1)
    info = await wait_state(app.client, later.id, JobState.SUCCEEDED)
    assert info.history[0].started_at == clock.now()
    assert ran.count(later.id) == 1


async def test_a_job_with_a_delay_waits_for_it(appliance_factory: AppFactory, clock: ManualClock) -> None:
    ran: list[int] = []

    async def handle(job: Job) -> None:
        ran.append(job.id)

    app = await appliance_factory(handlers={"sync": handle}, clock=clock)
    delayed = await app.client.schedule_job("sync", {"n": 1}, 30_000)  # milliseconds
    assert (await app.client.get_job(delayed.id)).run_at == clock.now() + seconds(30)
    await probe(app, "sync", ran, run_at=clock.now())
    assert delayed.id not in ran
    advance(app, clock, 30)
    await wait_state(app.client, delayed.id, JobState.SUCCEEDED)


# -- retries --------------------------------------------------------------------------------


async def test_network_errors_back_off_1_2_4_8_16_seconds_then_dead_letter(
    appliance_factory: AppFactory, clock: ManualClock
) -> None:
    calls: list[int] = []

    async def flaky(job: Job) -> None:
        calls.append(job.attempt)
        raise NetworkError("connection reset")

    probes: list[int] = []

    async def probe_handler(job: Job) -> None:
        probes.append(job.id)

    app = await appliance_factory(handlers={"sync": flaky, "attachments": probe_handler}, clock=clock)
    job = await app.client.enqueue("sync", {"to": "x"}, run_at=clock.now())
    for n, delay in enumerate([1, 2, 4, 8, 16], start=1):
        info = await wait_attempts(app.client, job.id, n)
        last = info.history[-1]
        assert info.state is JobState.RETRYING
        assert (last.attempt, last.outcome, last.error_class) == (n, Outcome.RETRY, "transient")
        assert last.error == "NetworkError: connection reset"
        assert info.run_at - last.finished_at == seconds(delay)
        if n == 1:
            # half a delay later it has not run again (another job on the tier has, meanwhile)
            advance(app, clock, delay / 2)
            await probe(app, "attachments", probes, run_at=clock.now())
            assert len((await app.client.get_job(job.id)).history) == 1
            advance(app, clock, delay / 2)
        else:
            advance(app, clock, delay)

    info = await wait_state(app.client, job.id, JobState.DEAD)
    assert calls == [1, 2, 3, 4, 5, 6]
    assert info.attempts == 6
    assert [a.outcome for a in info.history] == [Outcome.RETRY] * 5 + [Outcome.DEAD]
    [dead] = await app.client.dead_letters.list(queue="sync")
    assert dead.job_id == job.id
    assert dead.attempts == 6
    assert dead.error_class == "transient"
    assert "5 retries used up" in dead.error


async def test_a_retry_runs_when_it_is_due_not_at_the_next_poll(appliance_factory: AppFactory) -> None:
    """Found from outside: the spec's 1 s first retry ran 1.9 s later, as the dispatcher only looked
    again at its poll tick. With the poll a minute away, retries still run on time, each at its
    own time, written in one batch or not (the real clock here: the wake is a loop timer)."""
    calls: dict[int, int] = {}

    async def once(job: Job) -> None:
        calls[job.id] = calls.get(job.id, 0) + 1
        if calls[job.id] == 1:
            raise RateLimitError("429", retry_after=job.data["after"])

    app = await appliance_factory(handlers={"sync": once}, appliance={"poll_seconds": 60})
    jobs = await app.client.enqueue_many([NewJob(queue="sync", data={"after": a}) for a in (0.5, 1.5)])
    for job, after in zip(jobs, (0.5, 1.5), strict=True):
        info = await wait_state(app.client, job.id, JobState.SUCCEEDED)  # within 10 s, far below the poll
        first, second = info.history
        waited = (second.started_at - first.finished_at).total_seconds()
        assert after <= waited < after + 3, (after, waited)


async def test_rate_limit_waits_for_retry_after(appliance_factory: AppFactory, clock: ManualClock) -> None:
    outcomes = iter([RateLimitError("429", retry_after=7), None])

    async def throttled(job: Job) -> None:
        error = next(outcomes)
        if error is not None:
            raise error

    app = await appliance_factory(handlers={"sync": throttled}, clock=clock)
    job = await app.client.enqueue("sync", {}, run_at=clock.now())
    info = await wait_attempts(app.client, job.id, 1)
    assert info.history[0].error_class == "rate_limited"
    assert info.run_at - info.history[0].finished_at == seconds(7)
    advance(app, clock, 7)
    info = await wait_state(app.client, job.id, JobState.SUCCEEDED)
    assert [a.outcome for a in info.history] == [Outcome.RETRY, Outcome.SUCCEEDED]
    assert info.history[1].started_at == info.history[0].finished_at + seconds(7)


async def test_a_retry_after_past_any_delay_is_capped_and_its_error_kept(
    appliance_factory: AppFactory, clock: ManualClock
) -> None:
    """A handler asking for 1e12 s (or whose exception cannot even say what it is) gets its attempt
    recorded and its retry scheduled: found from outside, such a job's outcome was never written,
    the lease reaper blamed a live appliance four times and dead-lettered it as poison."""

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no message")

    async def far(job: Job) -> None:
        if job.data["n"] == 1:
            raise RateLimitError("429 too many", retry_after=1e12)
        raise Unprintable

    app = await appliance_factory(handlers={"sync": far}, clock=clock)
    first = await app.client.enqueue("sync", {"n": 1}, run_at=clock.now())
    second = await app.client.enqueue("sync", {"n": 2}, run_at=clock.now())
    info = await wait_attempts(app.client, first.id, 1)
    assert info.state is JobState.RETRYING
    assert (info.history[0].outcome, info.history[0].error_class) == (Outcome.RETRY, "rate_limited")
    assert info.history[0].error == "RateLimitError: 429 too many"
    assert info.run_at - info.history[0].finished_at == seconds(rules.MAX_DELAY_SECONDS)
    info = await wait_attempts(app.client, second.id, 1)
    assert (info.state, info.history[0].error_class) == (JobState.RETRYING, "transient")
    assert info.history[0].error == "Unprintable: (the exception's message could not be read)"


async def test_rate_limit_without_retry_after_backs_off(appliance_factory: AppFactory, clock: ManualClock) -> None:
    async def throttled(job: Job) -> None:
        raise RateLimitError("429")

    app = await appliance_factory(handlers={"sync": throttled}, clock=clock)
    job = await app.client.enqueue("sync", {}, run_at=clock.now())
    for n, delay in enumerate([2, 4, 8], start=1):
        info = await wait_attempts(app.client, job.id, n)
        assert info.history[-1].error_class == "rate_limited"
        assert info.run_at - info.history[-1].finished_at == seconds(delay)
        advance(app, clock, delay)
    await wait_attempts(app.client, job.id, 4)


async def test_retries_are_counted_per_error_class(appliance_factory: AppFactory, clock: ManualClock) -> None:
    errors = iter([RateLimitError("429"), RateLimitError("429"), NetworkError("reset")])

    async def handle(job: Job) -> None:
        raise next(errors)

    app = await appliance_factory(handlers={"sync": handle}, clock=clock)
    job = await app.client.enqueue("sync", {}, run_at=clock.now())
    for n, delay in enumerate([2, 4, 1], start=1):  # the first network retry waits 1 s, not 8 s
        info = await wait_attempts(app.client, job.id, n)
        assert info.run_at - info.history[-1].finished_at == seconds(delay)
        advance(app, clock, delay)


async def test_authentication_error_refreshes_then_retries_once(
    appliance_factory: AppFactory, clock: ManualClock
) -> None:
    events: list[str] = []

    async def handle(job: Job) -> None:
        events.append(f"attempt {job.attempt}")
        if job.attempt == 1:
            raise AuthenticationError("token expired")

    async def refresh(job: Job, exc: BaseException) -> None:
        assert isinstance(exc, AuthenticationError)
        events.append(f"refresh {job.id}")

    app = await appliance_factory(handlers={"sync": handle}, clock=clock, on_auth_error=refresh)
    job = await app.client.enqueue("sync", {}, run_at=clock.now())
    # no clock advance needed: the one retry follows the refresh at once
    info = await wait_state(app.client, job.id, JobState.SUCCEEDED)
    assert events == ["attempt 1", f"refresh {job.id}", "attempt 2"]
    assert [(a.outcome, a.error_class) for a in info.history] == [
        (Outcome.RETRY, "authentication"),
        (Outcome.SUCCEEDED, None),
    ]


async def test_authentication_error_twice_dead_letters(appliance_factory: AppFactory, clock: ManualClock) -> None:
    attempts: list[int] = []
    refreshed: list[int] = []

    async def handle(job: Job) -> None:
        attempts.append(job.attempt)
        raise AuthenticationError("token rejected")

    async def refresh(job: Job, exc: BaseException) -> None:
        refreshed.append(job.attempt)

    app = await appliance_factory(handlers={"sync": handle}, clock=clock, on_auth_error=refresh)
    job = await app.client.enqueue("sync", {}, run_at=clock.now())
    info = await wait_state(app.client, job.id, JobState.DEAD)
    assert attempts == [1, 2]  # one retry only
    # the token is refreshed once, for the one retry; not again when no retry follows
    assert refreshed == [1]
    assert [a.outcome for a in info.history] == [Outcome.RETRY, Outcome.DEAD]
    [dead] = await app.client.dead_letters.list(queue="sync")
    assert (dead.job_id, dead.error_class, dead.attempts) == (job.id, "authentication", 2)


async def test_validation_error_dead_letters_at_once(appliance_factory: AppFactory, clock: ManualClock) -> None:
    async def handle(job: Job) -> None:
        raise ValidationError("chatId is missing")

    app = await appliance_factory(handlers={"sync": handle}, clock=clock)
    job = await app.client.enqueue("sync", {"content": "hi"}, run_at=clock.now())
    info = await wait_state(app.client, job.id, JobState.DEAD)
    assert info.attempts == 1
    [attempt] = info.history
    assert (attempt.outcome, attempt.error_class) == (Outcome.DEAD, "permanent")
    assert "ValidationError: chatId is missing" in (attempt.error or "")
    [dead] = await app.client.dead_letters.list(queue="sync")
    assert (dead.job_id, dead.attempts, dead.error_class) == (job.id, 1, "permanent")


async def test_an_unexpected_exception_counts_as_transient(appliance_factory: AppFactory, clock: ManualClock) -> None:
    async def handle(job: Job) -> None:
        if job.attempt == 1:
            raise ValueError("bad luck")

    app = await appliance_factory(handlers={"sync": handle}, clock=clock)
    job = await app.client.enqueue("sync", {}, run_at=clock.now())
    info = await wait_attempts(app.client, job.id, 1)
    [attempt] = info.history
    assert (attempt.outcome, attempt.error_class, attempt.error) == (Outcome.RETRY, "transient", "ValueError: bad luck")
    assert info.state is JobState.RETRYING
    assert info.run_at - attempt.finished_at == seconds(1)
    advance(app, clock, 1)
    await wait_state(app.client, job.id, JobState.SUCCEEDED)


async def test_per_queue_retry_overrides_apply(appliance_factory: AppFactory, clock: ManualClock) -> None:
    async def handle(job: Job) -> None:
        raise NetworkError("down")

    queues = {
        "reports": {
            "tier": "low",
            "retry": {"transient": {"max_retries": 2, "base_seconds": 10, "factor": 3, "max_seconds": 60}},
        }
    }
    app = await appliance_factory(handlers={"reports": handle, "sync": handle}, queues=queues, clock=clock)
    job = await app.client.enqueue("reports", {}, run_at=clock.now())
    default = await app.client.enqueue("sync", {}, run_at=clock.now())
    # the other queue keeps the default rule
    other = await wait_attempts(app.client, default.id, 1)
    assert other.run_at - other.history[0].finished_at == seconds(1)
    for n, delay in enumerate([10, 30], start=1):
        info = await wait_attempts(app.client, job.id, n)
        assert info.run_at - info.history[-1].finished_at == seconds(delay)
        advance(app, clock, delay)
    info = await wait_state(app.client, job.id, JobState.DEAD)
    assert info.attempts == 3
    assert "2 retries used up" in (info.history[-1].error or "")


async def test_max_attempts_caps_attempts(appliance_factory: AppFactory, clock: ManualClock) -> None:
    async def handle(job: Job) -> None:
        raise NetworkError("down")

    queues = {"capped": {"tier": "low", "max_attempts": 3}}
    app = await appliance_factory(handlers={"capped": handle, "sync": handle}, queues=queues, clock=clock)
    per_job = await app.client.enqueue("sync", {}, run_at=clock.now(), max_attempts=2)
    per_queue = await app.client.enqueue("capped", {}, run_at=clock.now())
    await wait_attempts(app.client, per_job.id, 1)
    await wait_attempts(app.client, per_queue.id, 1)
    advance(app, clock, 1)
    await wait_attempts(app.client, per_queue.id, 2)
    info = await wait_state(app.client, per_job.id, JobState.DEAD)
    assert info.attempts == 2
    assert "all 2 attempts used" in (info.history[-1].error or "")
    advance(app, clock, 2)
    info = await wait_state(app.client, per_queue.id, JobState.DEAD)
    assert info.attempts == 3
    assert "all 3 attempts used" in (info.history[-1].error or "")


async def test_every_attempt_is_recorded(appliance_factory: AppFactory, clock: ManualClock) -> None:
    async def handle(job: Job) -> None:
        clock.advance(0.25 * job.attempt)  # the attempt takes 250 ms, then 500 ms, by the clock
        if job.attempt == 1:
            raise NetworkError("timed out")

    app = await appliance_factory(handlers={"sync": handle}, clock=clock)
    t0 = clock.now()
    job = await app.client.enqueue("sync", {"k": "v"}, run_at=t0)
    await wait_attempts(app.client, job.id, 1)
    advance(app, clock, 1)
    info = await wait_state(app.client, job.id, JobState.SUCCEEDED)
    first, second = info.history
    assert (first.job_id, first.attempt, first.queue, first.worker_id) == (job.id, 1, "sync", app.worker_id)
    assert (first.started_at, first.finished_at) == (t0, t0 + seconds(0.25))
    assert first.duration_ms == pytest.approx(250)
    assert (first.outcome, first.error_class, first.error) == (Outcome.RETRY, "transient", "NetworkError: timed out")
    assert (second.started_at, second.finished_at) == (t0 + seconds(1.25), t0 + seconds(1.75))
    assert second.duration_ms == pytest.approx(500)
    assert (second.outcome, second.error_class, second.error) == (Outcome.SUCCEEDED, None, None)
    assert info.attempts == 2
    assert info.finished_at == t0 + seconds(1.75)


async def test_an_appliance_claims_only_the_queues_it_can_run(appliance_factory: AppFactory, client: Client) -> None:
    """A rolling deploy: an appliance without a queue's handler leaves that queue's jobs waiting
    (it does not dead-letter them) until one that has the handler takes them."""
    ran: list[str] = []

    async def handle(job: Job) -> None:
        ran.append(job.queue)

    await appliance_factory(handlers={"sync": handle})
    teams = await client.enqueue("teams-outbound", {"chatId": "c1", "content": "hi"})
    sync = await client.enqueue("sync", {})
    await wait_state(client, sync.id, JobState.SUCCEEDED)
    untouched = await client.get_job(teams.id)
    assert (untouched.state, untouched.attempts) == (JobState.WAITING, 0)
    assert await client.dead_letters.list() == []
    await appliance_factory(handlers={"teams-outbound": handle})
    await wait_state(client, teams.id, JobState.SUCCEEDED)
    assert sorted(ran) == ["sync", "teams-outbound"]


async def test_a_dead_letter_keeps_payload_queue_and_history(appliance_factory: AppFactory, clock: ManualClock) -> None:
    async def handle(job: Job) -> None:
        if job.attempt < 3:
            raise NetworkError(f"try {job.attempt}")
        raise ValidationError("recipient does not exist")

    app = await appliance_factory(handlers={"sync": handle}, clock=clock)
    payload = {"to": "a@example.com", "nested": {"list": [1, 2, 3]}, "text": "héllo"}
    job = await app.client.enqueue("sync", payload, priority=3, run_at=clock.now(), singleton_key="sync-1")
    for n in (1, 2):
        info = await wait_attempts(app.client, job.id, n)
        advance(app, clock, (info.run_at - clock.now()).total_seconds())
    await wait_state(app.client, job.id, JobState.DEAD)
    info = await app.client.get_job(job.id)
    [dead] = await app.client.dead_letters.list()
    assert (dead.job_id, dead.queue, dead.priority, dead.data, dead.singleton_key) == (
        job.id,
        "sync",
        3,
        payload,
        "sync-1",
    )
    assert dead.attempts == 3
    assert dead.status is DeadLetterStatus.OPEN
    assert [(h["attempt"], h["outcome"], h["error_class"]) for h in dead.history] == [
        (1, "retry", "transient"),
        (2, "retry", "transient"),
        (3, "dead", "permanent"),
    ]
    assert [h["error"] for h in dead.history[:2]] == ["NetworkError: try 1", "NetworkError: try 2"]
    for kept, recorded in zip(dead.history, info.history, strict=True):
        assert dt.datetime.fromisoformat(kept["started_at"]) == recorded.started_at
        assert dt.datetime.fromisoformat(kept["finished_at"]) == recorded.finished_at
        assert kept["error"] == recorded.error
    assert dead.job_created_at == info.created_at
    assert dead.failed_at == info.history[-1].finished_at


# -- pause, wake-ups and batching --------------------------------------------------------


async def test_pause_stops_claiming_from_the_queue_and_resume_lets_it_run(
    appliance_factory: AppFactory, client: Client
) -> None:
    ran: list[int] = []

    async def handle(job: Job) -> None:
        ran.append(job.id)

    app = await appliance_factory(handlers={"sync": handle, "attachments": handle})
    info = await client.set_paused("sync", True, actor="ops")
    assert info.paused and info.paused_by == "ops"
    held = [(await client.enqueue("sync", {"i": i})).id for i in range(3)]
    # the other queue of the same tier keeps running
    await probe(app, "attachments", ran)
    app.wake()
    await probe(app, "attachments", ran)
    assert not set(held) & set(ran)
    sync = await depth(client, "sync")
    assert (sync.paused, sync.waiting, sync.running) == (True, 3, 0)
    for job_id in held:
        assert (await client.get_job(job_id)).state is JobState.WAITING

    await client.set_paused("sync", False)
    for job_id in held:
        await wait_state(client, job_id, JobState.SUCCEEDED)
    assert sorted(ran.count(j) for j in held) == [1, 1, 1]


async def test_notify_wakes_the_dispatcher_without_waiting_for_the_poll(
    appliance_factory: AppFactory, client: Client
) -> None:
    ran: list[int] = []

    async def handle(job: Job) -> None:
        ran.append(job.id)

    app = await appliance_factory(handlers={"sync": handle}, appliance={"poll_seconds": 30})
    await wait_for(lambda: app.worker.listener.connected)  # internal: the LISTEN connection is up
    for i in range(3):
        job = await client.enqueue("sync", {"i": i})
        started = time.monotonic()
        await wait_for(lambda job_id=job.id: job_id in ran, timeout=2)
        assert time.monotonic() - started < 2
    assert len(ran) == 3


async def test_polling_covers_a_job_that_came_due_without_a_notification(
    appliance_factory: AppFactory, client: Client, db: Store
) -> None:
    ran: list[int] = []

    async def handle(job: Job) -> None:
        ran.append(job.id)

    await appliance_factory(handlers={"sync": handle}, appliance={"poll_seconds": 0.2})
    # due 300 ms after the insert by the database's clock: the insert trigger does not notify
    job_id = await db.pool.fetchval(
        "SELECT job_id FROM enqueue('sync', '{\"n\": 1}'::jsonb, 5, now() + interval '300 milliseconds')"
    )
    await wait_for(lambda: job_id in ran, timeout=3)
    await wait_state(client, job_id, JobState.SUCCEEDED)


async def test_polling_covers_a_resume_that_did_not_notify(
    appliance_factory: AppFactory, client: Client, db: Store
) -> None:
    ran: list[int] = []

    async def handle(job: Job) -> None:
        ran.append(job.id)

    app = await appliance_factory(handlers={"sync": handle, "attachments": handle}, appliance={"poll_seconds": 0.2})
    await client.set_paused("sync", True)
    job = await client.enqueue("sync", {})
    await probe(app, "attachments", ran)
    assert job.id not in ran
    # resumed behind the appliance's back: no NOTIFY
    await db.pool.execute("UPDATE queues SET paused = false WHERE name = 'sync'")
    await wait_for(lambda: job.id in ran, timeout=3)


async def test_completions_are_written_in_batches(appliance_factory: AppFactory, client: Client) -> None:
    async def noop(job: Job) -> None:
        return None

    results = await client.enqueue_many([NewJob(queue="notifications", data={"i": i}) for i in range(300)])
    app = await appliance_factory(handlers={"notifications": noop})

    async def drained() -> bool:
        d = await depth(client, "notifications")
        return d.backlog == 0 and d.running == 0

    await wait_for(drained, timeout=30)
    assert app.worker.completer.written == 300
    assert app.worker.completer.stale == 0
    assert app.worker.completer.batches < 300 / 5, app.worker.completer.batches
    for r in results[::50]:
        assert (await client.get_job(r.id)).state is JobState.SUCCEEDED


# -- leases ----------------------------------------------------------------------------------


async def test_an_expired_lease_returns_the_job_to_the_queue(
    appliance_factory: AppFactory, clock: ManualClock, client: Client, db: Store
) -> None:
    ran: Counter[int] = Counter()

    async def handle(job: Job) -> None:
        ran[job.id] += 1

    job = await client.enqueue("sync", {"n": 1}, run_at=clock.now())
    now = clock.now()
    [claimed] = await db.jobs.claim(Tier.LOW, 1, "dead-worker", now, now + seconds(5))
    assert claimed.id == job.id  # a worker took it, then died without a word

    app = await appliance_factory(handlers={"sync": handle}, clock=clock)
    advance(app, clock, 3)  # the lease is still alive
    assert await app.worker.leases.reap() == 0
    other = await app.client.enqueue("sync", {"probe": True}, run_at=clock.now())
    await wait_state(app.client, other.id, JobState.SUCCEEDED)
    assert ran[job.id] == 0
    info = await app.client.get_job(job.id)
    assert (info.state, info.attempts) == (JobState.RUNNING, 1)

    advance(app, clock, 3)  # now past the lease
    await app.worker.leases.reap()  # (the reaper's own loop may have been first)
    info = await wait_state(app.client, job.id, JobState.SUCCEEDED)
    assert ran[job.id] == 1
    lost, done = info.history
    assert (lost.attempt, lost.outcome, lost.worker_id) == (1, Outcome.LEASE_EXPIRED, "dead-worker")
    assert lost.error_class == "lease_expired"
    assert (done.attempt, done.outcome, done.worker_id) == (2, Outcome.SUCCEEDED, app.worker_id)
    assert await app.worker.leases.reap() == 0


async def test_a_lost_lease_cancels_the_local_job(appliance_factory: AppFactory, client: Client, db: Store) -> None:
    started = asyncio.Event()
    cancelled: list[int] = []
    ran: list[int] = []

    async def handle(job: Job) -> None:
        if job.data.get("block"):
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(job.id)
                raise
        ran.append(job.id)

    app = await appliance_factory(handlers={"sync": handle}, pools={"low": 1})
    job = await client.enqueue("sync", {"block": True})
    await asyncio.wait_for(started.wait(), 10)
    # another process claimed the job after (what it saw as) the lease running out
    await db.pool.execute(
        "UPDATE jobs SET attempt = attempt + 1, worker_id = 'other-process', lease_until = now() + interval '1 hour'"
        " WHERE id = $1",
        job.id,
    )
    await app.worker.leases.heartbeat()
    await wait_for(lambda: cancelled == [job.id])
    # the slot is free again (the pool has one), and nothing was written for the lost attempt
    after = await client.enqueue("sync", {"block": False})
    await wait_state(client, after.id, JobState.SUCCEEDED)
    info = await client.get_job(job.id)
    assert (info.state, info.attempts, info.history) == (JobState.RUNNING, 2, ())
    assert app.worker.completer.stale == 0
    assert app.worker.completer.written == 1  # only the other job's outcome


# -- graceful stop -------------------------------------------------------------------------


async def test_stop_lets_a_job_finish_within_the_grace_period(appliance_factory: AppFactory, client: Client) -> None:
    started = asyncio.Event()

    async def handle(job: Job) -> None:
        started.set()
        await asyncio.sleep(0.3)  # the job's own work, shorter than the grace period

    app = await appliance_factory(handlers={"sync": handle}, appliance={"shutdown_grace_seconds": 10})
    job = await client.enqueue("sync", {})
    await asyncio.wait_for(started.wait(), 10)
    t0 = time.monotonic()
    await app.stop()
    assert time.monotonic() - t0 < 10
    info = await client.get_job(job.id)
    assert info.state is JobState.SUCCEEDED
    assert [a.outcome for a in info.history] == [Outcome.SUCCEEDED]


async def test_an_outcome_whose_write_is_cut_off_by_stop_is_written_by_the_drain(
    appliance_factory: AppFactory, client: Client, dsn: str
) -> None:
    """Stop cancels the completer while its write waits on a row lock; the drain writes it again."""
    done = asyncio.Event()

    async def handle(job: Job) -> None:
        await done.wait()

    app = await appliance_factory(handlers={"sync": handle})
    job = await client.enqueue("sync", {})
    await wait_for(in_state(client, job.id, JobState.RUNNING))
    locker = await asyncpg.connect(dsn, server_settings={"search_path": "fleetbox"})
    try:
        tx = locker.transaction()
        await tx.start()
        await locker.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", job.id)
        done.set()

        async def write_blocked() -> bool:
            # Inside a transaction pg_stat_activity is one snapshot: drop it to see the present.
            await locker.execute("SELECT pg_stat_clear_snapshot()")
            waiting = await locker.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            return bool(waiting)

        await wait_for(write_blocked)
        completer = app.supervisor.tasks["fleetbox.completer"].task
        assert completer is not None
        stopping = asyncio.create_task(app.stop())
        await wait_for(completer.done)  # cancelled in the middle of its write
        await tx.rollback()
        await asyncio.wait_for(stopping, 30)
    finally:
        await locker.close()
    assert (await client.get_job(job.id)).state is JobState.SUCCEEDED


async def test_stop_interrupts_a_job_past_the_grace_period_and_retries_it(
    appliance_factory: AppFactory, client: Client
) -> None:
    started = asyncio.Event()
    interrupted: list[int] = []

    async def stuck(job: Job) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            interrupted.append(job.id)
            raise

    app = await appliance_factory(handlers={"sync": stuck}, appliance={"shutdown_grace_seconds": 0.3})
    job = await client.enqueue("sync", {})
    await asyncio.wait_for(started.wait(), 10)
    await app.stop()
    assert interrupted == [job.id]
    info = await client.get_job(job.id)
    assert (info.state, info.attempts) == (JobState.RETRYING, 1)
    [attempt] = info.history
    assert (attempt.outcome, attempt.error_class) == (Outcome.RETRY, "transient")
    assert "interrupted" in (attempt.error or "")

    # not lost: the next appliance runs it
    ran: list[int] = []

    async def fine(job: Job) -> None:
        ran.append(job.id)

    await appliance_factory(handlers={"sync": fine})
    info = await wait_state(client, job.id, JobState.SUCCEEDED)
    assert ran == [job.id]
    assert info.attempts == 2


async def test_stop_hands_back_jobs_claimed_but_not_started(appliance_factory: AppFactory, client: Client) -> None:
    ran: list[int] = []

    async def handle(job: Job) -> None:
        ran.append(job.id)

    app = await appliance_factory(handlers={"sync": handle}, pools={"low": 3})
    # Internal: hold each claimed job between its claim and its start (its slot is taken, its
    # handler has not begun), the window a stop can fall into.
    held: list[int] = []
    run = app.worker.executor.run

    async def held_run(pool: Any, entry: Any) -> None:
        held.append(entry.job.id)
        await asyncio.Event().wait()
        await run(pool, entry)

    app.worker.executor.run = held_run  # type: ignore[method-assign]
    jobs = [(await client.enqueue("sync", {"i": i})).id for i in range(3)]
    await wait_for(lambda: sorted(held) == sorted(jobs))
    assert (await depth(client, "sync")).running == 3

    await app.stop()
    assert not ran
    for job_id in jobs:
        info = await client.get_job(job_id)
        assert (info.state, info.attempts, info.history) == (JobState.WAITING, 0, ())

    await appliance_factory(handlers={"sync": handle})
    for job_id in jobs:
        info = await wait_state(client, job_id, JobState.SUCCEEDED)
        assert info.attempts == 1
    assert sorted(ran) == sorted(jobs)


async def test_stop_hands_back_jobs_whose_claim_was_in_flight(
    appliance_factory: AppFactory, client: Client, dsn: str
) -> None:
    """A stop that lands while a claim's reply is on its way still hands the claimed jobs back."""
    ran: list[int] = []

    async def handle(job: Job) -> None:
        ran.append(job.id)

    async with HoldingProxy(dsn, b"hold-this-reply") as proxy:
        app = await appliance_factory(handlers={"sync": handle}, database={"dsn": proxy.dsn})
        new = [NewJob(queue="sync", data={"marker": "hold-this-reply", "i": i}) for i in range(3)]
        jobs = [r.id for r in await client.enqueue_many(new)]
        # the appliance claims them: the database has done it, the reply is held
        await asyncio.wait_for(proxy.held.wait(), 10)
        assert (await depth(client, "sync")).running == 3
        stop = asyncio.ensure_future(app.stop())
        # internal: stop has stopped listening and reached the dispatcher
        await wait_for(lambda: not app.supervisor.running("fleetbox.listener"))
        proxy.release.set()
        await asyncio.wait_for(stop, 30)
    assert not ran
    for job_id in jobs:
        info = await client.get_job(job_id)
        assert (info.state, info.attempts, info.history) == (JobState.WAITING, 0, ())


# -- several appliances ----------------------------------------------------------------------


async def test_two_appliances_run_each_job_exactly_once(appliance_factory: AppFactory, client: Client) -> None:
    runs: Counter[int] = Counter()
    by_app: dict[str, int] = defaultdict(int)

    def handler_for(name: str) -> Callable[[Job], Awaitable[None]]:
        async def handle(job: Job) -> None:
            runs[job.id] += 1
            by_app[name] += 1
            await asyncio.sleep(0)

        return handle

    await appliance_factory(handlers={"notifications": handler_for("a")}, pools={"high": 8})
    await appliance_factory(handlers={"notifications": handler_for("b")}, pools={"high": 8})
    results = await client.enqueue_many([NewJob(queue="notifications", data={"i": i}) for i in range(500)])
    ids = {r.id for r in results}

    async def drained() -> bool:
        d = await depth(client, "notifications")
        return d.backlog == 0 and d.running == 0

    await wait_for(drained, timeout=60)
    await wait_for(lambda: sum(runs.values()) >= 500)
    assert set(runs) == ids
    assert set(runs.values()) == {1}
    assert sum(by_app.values()) == 500
    for job_id in sorted(ids)[::25]:
        info = await client.get_job(job_id)
        assert (info.state, info.attempts, len(info.history)) == (JobState.SUCCEEDED, 1, 1)


# -- manual retries --------------------------------------------------------------------------


async def test_a_retried_dead_letter_runs_as_a_new_linked_job(appliance_factory: AppFactory, client: Client) -> None:
    broken = True
    ran: list[Job] = []

    async def handle(job: Job) -> None:
        ran.append(job)
        if broken:
            raise ValidationError("upstream rejected the payload")

    await appliance_factory(handlers={"sync": handle})
    job = await client.enqueue("sync", {"x": 1}, priority=2)
    await wait_state(client, job.id, JobState.DEAD)
    [dead] = await client.dead_letters.list(queue="sync")

    broken = False
    new_id = await client.dead_letters.retry(dead.id)
    assert new_id != job.id
    info = await wait_state(client, new_id, JobState.SUCCEEDED)
    assert (info.queue, info.data, info.priority, info.dead_letter_id) == ("sync", {"x": 1}, 2, dead.id)
    assert ran[-1].dead_letter_id == dead.id
    dead = await client.dead_letters.get(dead.id)
    assert (dead.status, dead.retried_job_id) == (DeadLetterStatus.RETRIED, new_id)
    assert (await client.get_job(job.id)).state is JobState.DEAD  # the old job stays as it was


async def test_retry_failed_job_runs_a_waiting_retry_now(appliance_factory: AppFactory, client: Client) -> None:
    async def handle(job: Job) -> None:
        if job.attempt == 1:
            raise NetworkError("down")

    queues = {"reports": {"tier": "low", "retry": {"transient": {"base_seconds": 3600, "max_seconds": 3600}}}}
    await appliance_factory(handlers={"reports": handle}, queues=queues)
    job = await client.enqueue("reports", {})
    info = await wait_attempts(client, job.id, 1)
    assert info.state is JobState.RETRYING
    assert info.run_at - info.history[0].finished_at == seconds(3600)

    assert await client.retry_failed_job(job.id) == job.id
    info = await wait_state(client, job.id, JobState.SUCCEEDED)
    assert info.attempts == 2


async def test_retry_failed_job_requeues_a_dead_lettered_job(appliance_factory: AppFactory, client: Client) -> None:
    async def handle(job: Job) -> None:
        if job.dead_letter_id is None:
            raise ValidationError("bad")

    await appliance_factory(handlers={"sync": handle})
    job = await client.enqueue("sync", {"y": 2})
    await wait_state(client, job.id, JobState.DEAD)
    new_id = await client.retry_failed_job(job.id)
    assert new_id != job.id
    info = await wait_state(client, new_id, JobState.SUCCEEDED)
    [dead] = await client.dead_letters.list(queue="sync")
    assert (info.dead_letter_id, dead.job_id, dead.retried_job_id) == (dead.id, job.id, new_id)


async def test_start_up_objects_stay_out_of_the_collector_only_while_running(appliance_factory: AppFactory) -> None:
    # A running appliance freezes what start-up allocated (the drain's full collections skip
    # it); once stopped, nothing stays frozen, so what became garbage can be collected.
    app = await appliance_factory()
    assert gc.get_freeze_count() > 10_000
    await app.stop()
    assert gc.get_freeze_count() == 0
