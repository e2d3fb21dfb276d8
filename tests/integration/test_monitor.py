"""The monitor as an operator sees it: the health document, thresholds crossed, alerts opened once
and resolved, thresholds changed at runtime, statistics snapshots and metrics, and the figures
staying index-backed with many finished jobs.

Attempts and dead letters are written with plain SQL where a test needs exact figures at exact
times (a ManualClock decides what "the last five minutes" are); the appliance test makes them
the real way.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import logging
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from fleetbox.app import Appliance
from fleetbox.client import Client
from fleetbox.errors import InvalidInput
from fleetbox.models import Job, JobState, ManualClock, Thresholds
from fleetbox.monitor import Monitor
from fleetbox.monitor.health import WINDOW_SAMPLE
from fleetbox.rules import parse_thresholds
from fleetbox.store import Store
from fleetbox.store.sql import queries
from fleetbox.worker.registry import BUILTIN_QUEUES
from tests.conftest import SCHEMA, monitor_for, wait_for

AppFactory = Callable[..., Awaitable[Appliance]]

RUNNING_QUEUES = sorted(name for name in BUILTIN_QUEUES if name != "dead-letter")
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
T0 = dt.datetime(2026, 3, 4, 10, 0, 0, tzinfo=dt.UTC)  # a Wednesday

_job_ids = itertools.count(1_000_000, 10_000)


async def add_attempts(
    db: Store,
    queue: str,
    finished_at: dt.datetime,
    count: int,
    *,
    outcome: str = "succeeded",
    duration_ms: float = 100.0,
) -> None:
    """``count`` attempts on ``queue`` that finished at ``finished_at``."""
    await db.pool.execute(
        """INSERT INTO job_attempts (job_id, attempt, queue, worker_id, started_at, finished_at, duration_ms, outcome)
           SELECT $1 + g, 1, $2, 'test', $3::timestamptz - make_interval(secs => $4::float8 / 1000), $3, $4, $5
             FROM generate_series(0, $6 - 1) g""",
        next(_job_ids),
        queue,
        finished_at,
        duration_ms,
        outcome,
        count,
    )


async def add_dead_letters(db: Store, queue: str, count: int, *, status: str = "open") -> None:
    await db.pool.execute(
        """INSERT INTO dead_letters (job_id, queue, priority, data, error_class, error, attempts, history,
                                     job_created_at, status)
           SELECT $1 + g, $2, 5, '{}', 'permanent', 'broken', 1, '[]', now(), $3
             FROM generate_series(0, $4 - 1) g""",
        next(_job_ids),
        queue,
        status,
        count,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def make_monitor(db: Store, clock: ManualClock) -> Callable[..., Monitor]:
    def make(database: Store | None = None, **kwargs: Any) -> Monitor:
        kwargs.setdefault("thresholds", Thresholds())
        kwargs.setdefault("depth_cache_seconds", 0)
        kwargs.setdefault("settle_seconds", 0)
        return monitor_for(database or db, clock=clock, **kwargs)

    return make


@pytest.fixture
async def second_db(dsn: str) -> AsyncIterator[Store]:
    """Another pool on the same database: what a second appliance process has."""
    async with Store(dsn, schema=SCHEMA, min_size=1, max_size=4) as database:
        yield database


# -- health ----------------------------------------------------------------------------------


async def test_health_of_an_idle_database_in_the_spec_shape(make_monitor: Callable[..., Monitor]) -> None:
    report = await make_monitor().health()
    assert report.healthy is True
    assert report.database == "ok"
    doc = report.to_json()
    json.dumps(doc)  # JSON-ready
    assert doc["healthy"] is True
    assert doc["reasons"] == []
    assert doc["deadLetterCount"] == 0
    assert doc["lastChecked"] == "2026-03-04T10:00:00.000Z"
    assert ISO_Z.match(doc["lastChecked"])
    assert sorted(doc["queues"]) == RUNNING_QUEUES  # the dead-letter queue runs nothing
    teams = doc["queues"]["teams-outbound"]
    assert {"isRunning": True, "backlog": 0, "failureRate": 0.0, "avgProcessingTime": 0.0}.items() <= teams.items()
    assert teams["tier"] == "high"


async def test_backlog_counts_waiting_scheduled_and_retrying_and_crossing_it_is_unhealthy(
    make_monitor: Callable[..., Monitor], db: Store, clock: ManualClock
) -> None:
    client = Client(db, clock=clock)
    for i in range(3):
        await client.enqueue("sync", {"i": i})
    await client.enqueue("sync", {"later": True}, delay=60_000)
    await db.pool.execute("UPDATE jobs SET attempt = 1 WHERE id = (SELECT min(id) FROM jobs)")  # one retrying
    report = await make_monitor(thresholds=Thresholds(max_backlog=3)).health()
    sync = report.queues["sync"]
    assert (sync.waiting, sync.scheduled, sync.retrying, sync.running, sync.backlog) == (2, 1, 1, 0, 4)
    assert report.healthy is False
    assert report.reasons == ("sync: backlog 4 exceeds maxBacklog 3",)
    assert report.to_json()["queues"]["sync"]["backlog"] == 4
    # at the threshold is not over it
    assert (await make_monitor(thresholds=Thresholds(max_backlog=4)).health()).healthy is True


async def test_failure_rate_over_the_window_only(
    make_monitor: Callable[..., Monitor], db: Store, clock: ManualClock
) -> None:
    now = clock.now()
    await add_attempts(db, "webhooks", now - dt.timedelta(seconds=30), 8)
    await add_attempts(db, "webhooks", now - dt.timedelta(seconds=20), 1, outcome="retry")
    await add_attempts(db, "webhooks", now - dt.timedelta(seconds=10), 1, outcome="dead")
    # failures older than the window do not count
    await add_attempts(db, "webhooks", now - dt.timedelta(seconds=301), 50, outcome="retry")
    report = await make_monitor(window_seconds=300).health()
    webhooks = report.queues["webhooks"]
    assert webhooks.failure_rate == pytest.approx(20.0)
    assert (webhooks.completed, webhooks.failed) == (8, 2)
    assert webhooks.throughput == pytest.approx(8 / 5)
    assert report.healthy is False
    assert report.reasons == ("webhooks: failure rate 20.0% exceeds maxFailureRate 10%",)
    assert report.to_json()["queues"]["webhooks"]["failureRate"] == 20.0
    # ten minutes later the window holds nothing
    clock.advance(600)
    later = await make_monitor(window_seconds=300).health()
    assert later.healthy is True
    assert later.queues["webhooks"].failure_rate == 0.0


async def test_a_busy_queue_is_judged_by_its_latest_attempts(
    make_monitor: Callable[..., Monitor], db: Store, clock: ManualClock
) -> None:
    # Ten attempts every ten seconds for the whole five-minute window (300), the latest ten of
    # them failed; the monitor reads at most 100: the ten latest groups, 95 s back.
    now = clock.now()
    await add_attempts(db, "webhooks", now - dt.timedelta(seconds=5), 10, outcome="retry", duration_ms=900)
    for age in range(15, 300, 10):
        await add_attempts(db, "webhooks", now - dt.timedelta(seconds=age), 10, duration_ms=100)
    report = await make_monitor(window_seconds=300, sample=100).health()
    webhooks = report.queues["webhooks"]
    assert webhooks.failure_rate == pytest.approx(10.0)  # 10 of the 100 read
    assert webhooks.p95_processing_time == pytest.approx(900)
    # the counts stand for the whole window: 90 and 10 over 95 s, scaled to 300 s
    assert (webhooks.completed, webhooks.failed) == (round(90 * 300 / 95), round(10 * 300 / 95))
    assert webhooks.throughput == pytest.approx(90 / (95 / 60))
    assert report.healthy is True  # 10 % is at the default maxFailureRate (10 %), not over it
    # read in full (no sample limit reached), the same window gives its exact figures
    exact = (await make_monitor(window_seconds=300).health()).queues["webhooks"]
    assert (exact.completed, exact.failed) == (290, 10)
    assert exact.failure_rate == pytest.approx(10 / 300 * 100)


async def test_processing_time_over_the_threshold(
    make_monitor: Callable[..., Monitor], db: Store, clock: ManualClock
) -> None:
    now = clock.now()
    await add_attempts(db, "attachments", now - dt.timedelta(seconds=5), 3, duration_ms=70_000)
    await add_attempts(db, "attachments", now - dt.timedelta(seconds=5), 1, duration_ms=10_000)
    report = await make_monitor().health()
    attachments = report.queues["attachments"]
    assert attachments.avg_processing_time == pytest.approx(55_000)
    assert attachments.p95_processing_time == pytest.approx(70_000)
    assert report.healthy is True  # 55 s on average is under the 60 s default
    strict = await make_monitor(thresholds=Thresholds(max_processing_time=50_000)).health()
    assert strict.healthy is False
    assert strict.reasons == ("attachments: average processing time 55000 ms exceeds maxProcessingTime 50000 ms",)
    assert strict.to_json()["queues"]["attachments"]["avgProcessingTime"] == 55000.0


async def test_open_dead_letters_over_the_threshold(make_monitor: Callable[..., Monitor], db: Store) -> None:
    await add_dead_letters(db, "teams-outbound", 2)
    await add_dead_letters(db, "sync", 1)
    await add_dead_letters(db, "sync", 5, status="discarded")  # no longer in the queue
    await add_dead_letters(db, "sync", 5, status="retried")
    report = await make_monitor(thresholds=Thresholds(max_dead_letter_jobs=2)).health()
    assert report.dead_letter_count == 3
    assert report.queues["teams-outbound"].dead_letters == 2
    assert report.healthy is False
    assert report.reasons == ("dead letters: 3 open exceed maxDeadLetterJobs 2",)
    assert report.to_json()["deadLetterCount"] == 3


async def test_every_crossed_threshold_is_listed(
    make_monitor: Callable[..., Monitor], db: Store, clock: ManualClock
) -> None:
    client = Client(db, clock=clock)
    await client.enqueue_many([{"queue": "notifications", "data": {}} for _ in range(3)])
    await add_attempts(db, "teams-inbound", clock.now(), 1, outcome="retry", duration_ms=90_000)
    await add_dead_letters(db, "sync", 2)
    t = Thresholds(max_backlog=2, max_dead_letter_jobs=1)
    report = await make_monitor(thresholds=t).health()
    assert report.healthy is False
    assert set(report.reasons) == {
        "notifications: backlog 3 exceeds maxBacklog 2",
        "teams-inbound: failure rate 100.0% exceeds maxFailureRate 10%",
        "teams-inbound: average processing time 90000 ms exceeds maxProcessingTime 60000 ms",
        "dead letters: 2 open exceed maxDeadLetterJobs 1",
    }


async def test_a_paused_queue_is_not_running(make_monitor: Callable[..., Monitor], db: Store) -> None:
    monitor = make_monitor(depth_cache_seconds=3600)
    assert (await monitor.health()).queues["sync"].is_running is True
    await Client(db).set_paused("sync", True, actor="ops")
    report = await monitor.health()  # the pause flag is read fresh even while depth is cached
    assert report.queues["sync"].is_running is False
    assert report.to_json()["queues"]["sync"]["isRunning"] is False
    assert report.healthy is True  # paused is a state, not a fault


async def test_depth_is_counted_at_most_once_per_cache_period(
    make_monitor: Callable[..., Monitor], db: Store, clock: ManualClock
) -> None:
    cached = make_monitor(depth_cache_seconds=3600)
    uncached = make_monitor(depth_cache_seconds=0)
    assert (await cached.health()).queues["sync"].backlog == 0
    await Client(db, clock=clock).enqueue("sync", {})
    assert (await cached.health()).queues["sync"].backlog == 0  # the cached count
    assert (await uncached.health()).queues["sync"].backlog == 1
    # alerts always look at fresh figures, and refresh the cache
    await cached.check_alerts()
    assert (await cached.health()).queues["sync"].backlog == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_database_is_unhealthy_without_an_exception() -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres"
    async with Store(dsn, schema=SCHEMA, min_size=0, max_size=2) as db:  # connects on first use
        monitor = monitor_for(db, clock=ManualClock(T0), thresholds=Thresholds())
        report = await monitor.health()
        assert report.healthy is False
        assert report.database == "unreachable"
        assert len(report.reasons) == 1
        # the public reason names no host or port; the driver's message is kept for the log
        assert report.reasons[0].startswith("database unreachable")
        assert "ConnectionRefused" in (report.database_error or "")
        assert "ConnectionRefused" not in report.reasons[0]
        doc = report.to_json()
        assert doc["healthy"] is False
        assert doc["database"] == "unreachable"
        assert doc["queues"] == {}
        assert doc["lastChecked"] == "2026-03-04T10:00:00.000Z"
    # and a pool that was never opened
    never = monitor_for(Store(dsn, schema=SCHEMA), clock=ManualClock(T0), thresholds=Thresholds())
    report = await never.health()
    assert report.healthy is False
    assert report.reasons == ("database unreachable",)
    assert report.database_error == "the database pool is not open"


async def test_a_database_too_busy_to_answer_is_reported_with_the_timeout(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with Store(dsn, schema=SCHEMA, min_size=1, max_size=1, acquire_timeout=30) as db:
        monitor = monitor_for(db, clock=ManualClock(T0), thresholds=Thresholds(), timeout_seconds=0.2)
        async with db.pool.acquire():  # the only connection is taken: nothing answers in time
            with caplog.at_level(logging.WARNING, logger="fleetbox.monitor"):
                report = await monitor.health()
    assert report.reasons == ("database unreachable: no answer within 0.2 s",)
    assert report.database_error == "TimeoutError"
    # the log names what happened (a timeout's own message is empty)
    logged = [r for r in caplog.records if getattr(r, "event", None) == "health_database_error"]
    assert [getattr(r, "error", None) for r in logged] == ["TimeoutError"]


# -- alerts ----------------------------------------------------------------------------------


async def test_an_alert_opens_once_and_resolves_when_the_condition_clears(
    make_monitor: Callable[..., Monitor], db: Store, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = make_monitor(thresholds=Thresholds(max_backlog=1))
    client = Client(db, clock=clock)
    await client.enqueue("sync", {"n": 1})
    await client.enqueue("sync", {"n": 2})
    caplog.set_level(logging.INFO, logger="fleetbox.monitor")
    opened = await monitor.check_alerts()
    assert [(a.kind, a.queue, a.value, a.threshold, a.status) for a in opened] == [("backlog", "sync", 2, 1, "open")]
    assert opened[0].message == "sync: backlog 2 exceeds maxBacklog 1"
    assert opened[0].opened_at == T0
    clock.advance(60)
    await client.enqueue("sync", {"n": 3})
    assert await monitor.check_alerts() == []  # still crossed: the same alert stays open
    assert await monitor.check_alerts() == []
    assert [a.id for a in await monitor.alerts(status="open")] == [opened[0].id]
    # the condition clears
    await db.pool.execute("DELETE FROM jobs")
    clock.advance(60)
    resolved = await monitor.check_alerts()
    assert [(a.id, a.status, a.resolved_at) for a in resolved] == [
        (opened[0].id, "resolved", T0 + dt.timedelta(0, 120))
    ]
    assert await monitor.alerts(status="open") == []
    listed = await monitor.alerts(status="resolved")
    assert [a.id for a in listed] == [opened[0].id]
    doc = listed[0].to_json()
    assert doc["status"] == "resolved"
    assert doc["openedAt"] == "2026-03-04T10:00:00.000Z"
    assert doc["resolvedAt"] == "2026-03-04T10:02:00.000Z"
    events = [r.__dict__.get("event") for r in caplog.records]
    assert events.count("alert_opened") == 1
    assert events.count("alert_resolved") == 1
    # crossed again: a new alert
    await client.enqueue_many([{"queue": "sync", "data": {}} for _ in range(2)])
    again = await monitor.check_alerts()
    assert len(again) == 1 and again[0].id != opened[0].id
    assert [a.id for a in await monitor.alerts()] == [again[0].id, opened[0].id]  # newest first


async def test_two_monitors_racing_keep_one_open_alert_per_condition(
    make_monitor: Callable[..., Monitor], db: Store, second_db: Store, clock: ManualClock
) -> None:
    t = Thresholds(max_backlog=0, max_dead_letter_jobs=0)
    first, second = make_monitor(thresholds=t), make_monitor(second_db, thresholds=t)
    await Client(db, clock=clock).enqueue_many([{"queue": q, "data": {}} for q in ("sync", "webhooks")])
    await add_dead_letters(db, "sync", 1)
    opened: list[Any] = []
    for _ in range(5):
        results = await asyncio.gather(first.check_alerts(), second.check_alerts(), first.check_alerts())
        opened.extend(a for r in results for a in r)
    assert sorted((a.kind, a.queue) for a in opened) == [
        ("backlog", "sync"),
        ("backlog", "webhooks"),
        ("dead_letters", None),
    ]
    rows = await db.pool.fetch("SELECT kind, queue FROM queue_alerts WHERE resolved_at IS NULL")
    assert len(rows) == 3
    # resolved once, by one of them
    await db.pool.execute("DELETE FROM jobs")
    await db.pool.execute("UPDATE dead_letters SET status = 'discarded'")
    results = await asyncio.gather(first.check_alerts(), second.check_alerts())
    assert sorted(a.kind for r in results for a in r) == ["backlog", "backlog", "dead_letters"]
    assert await first.alerts(status="open") == []


async def test_alerts_listing_checks_its_arguments(make_monitor: Callable[..., Monitor]) -> None:
    monitor = make_monitor()
    with pytest.raises(InvalidInput) as err:
        await monitor.alerts(status="closed")
    assert err.value.field == "status"
    for bad in (0, 1001, True, "10"):
        with pytest.raises(InvalidInput) as err:
            await monitor.alerts(limit=bad)  # type: ignore[arg-type]
        assert err.value.field == "limit"


# -- thresholds ------------------------------------------------------------------------------


def test_thresholds_parse_accepts_the_spec_keys_and_snake_case() -> None:
    assert parse_thresholds({}) == Thresholds()
    assert parse_thresholds({"maxBacklog": 2000, "maxFailureRate": 15}) == Thresholds(
        max_backlog=2000, max_failure_rate=15.0
    )
    assert parse_thresholds({"max_processing_time": 1000, "max_dead_letter_jobs": 0}) == Thresholds(
        max_processing_time=1000.0, max_dead_letter_jobs=0
    )
    assert Thresholds().to_json() == {
        "maxBacklog": 1000,
        "maxFailureRate": 10.0,
        "maxProcessingTime": 60000.0,
        "maxDeadLetterJobs": 50,
    }


@pytest.mark.parametrize(
    ("mapping", "field"),
    [
        ({"maxBacklog": -1}, "maxBacklog"),
        ({"maxBacklog": 1.5}, "maxBacklog"),
        ({"maxBacklog": "100"}, "maxBacklog"),
        ({"maxBacklog": True}, "maxBacklog"),
        ({"max_backlog": None}, "max_backlog"),
        ({"maxFailureRate": 101}, "maxFailureRate"),
        ({"maxFailureRate": float("nan")}, "maxFailureRate"),
        ({"maxProcessingTime": 0}, "maxProcessingTime"),
        ({"maxProcessingTime": float("inf")}, "maxProcessingTime"),
        ({"maxDeadLetterJobs": 10**13}, "maxDeadLetterJobs"),
        ({"maxBacklog": 1, "max_backlog": 2}, "max_backlog"),
        ({"maxbacklog": 1}, "maxbacklog"),
    ],
)
def test_thresholds_parse_names_the_bad_field(mapping: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_thresholds(mapping)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")


async def test_update_thresholds_persists_for_every_process(
    make_monitor: Callable[..., Monitor], db: Store, second_db: Store
) -> None:
    first = make_monitor(thresholds=Thresholds(max_backlog=10))
    second = make_monitor(second_db, thresholds=Thresholds(max_backlog=10, max_dead_letter_jobs=7))
    assert await second.thresholds.current() == Thresholds(max_backlog=10, max_dead_letter_jobs=7)
    result = await first.thresholds.update({"maxBacklog": 2000, "maxFailureRate": 15}, actor="ops@example.com")
    assert result == Thresholds(max_backlog=2000, max_failure_rate=15.0)
    # the other process sees the change; what nobody changed stays as each one configured it
    assert await second.thresholds.current() == Thresholds(
        max_backlog=2000, max_failure_rate=15.0, max_dead_letter_jobs=7
    )
    assert (await second.health()).thresholds.max_backlog == 2000
    await second.thresholds.update({"max_processing_time": 500}, actor="alice")
    assert await first.thresholds.current() == Thresholds(
        max_backlog=2000, max_failure_rate=15.0, max_processing_time=500.0
    )
    audit = await db.pool.fetch("SELECT actor, action, target, details FROM audit_log ORDER BY id")
    assert [(r["actor"], r["action"], r["target"]) for r in audit] == [
        ("ops@example.com", "monitor.thresholds", "thresholds"),
        ("alice", "monitor.thresholds", "thresholds"),
    ]
    assert audit[0]["details"]["changes"] == {"maxBacklog": 2000, "maxFailureRate": 15}


async def test_update_thresholds_rejects_bad_input_and_changes_nothing(
    make_monitor: Callable[..., Monitor], db: Store
) -> None:
    monitor = make_monitor()
    for changes, field in (({}, "thresholds"), ({"maxBacklog": -5}, "maxBacklog"), ({"colour": "red"}, "colour")):
        with pytest.raises(InvalidInput) as err:
            await monitor.thresholds.update(changes, actor="ops")
        assert err.value.field == field
    assert await monitor.thresholds.current() == Thresholds()
    assert await db.pool.fetchval("SELECT count(*) FROM monitor_thresholds") == 0
    assert await db.pool.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_thresholds_changed_at_runtime_apply_to_health_and_alerts(
    make_monitor: Callable[..., Monitor], db: Store, clock: ManualClock
) -> None:
    monitor = make_monitor()
    await Client(db, clock=clock).enqueue_many([{"queue": "sync", "data": {}} for _ in range(5)])
    assert (await monitor.health()).healthy is True
    await make_monitor().thresholds.update({"maxBacklog": 4}, actor="ops")
    report = await monitor.health()
    assert report.reasons == ("sync: backlog 5 exceeds maxBacklog 4",)
    assert [a.kind for a in await monitor.check_alerts()] == ["backlog"]


# -- snapshots, stats, metrics ---------------------------------------------------------------


async def statistics(db: Store) -> list[dict[str, Any]]:
    rows = await db.pool.fetch(
        "SELECT queue, period_start, at, succeeded, failed, dead, attempts, waiting FROM queue_statistics "
        "ORDER BY at, queue"
    )
    return [dict(r) for r in rows]


async def test_snapshots_cover_consecutive_intervals_without_double_counting(
    make_monitor: Callable[..., Monitor], db: Store, clock: ManualClock
) -> None:
    monitor = make_monitor(window_seconds=300, settle_seconds=5)
    await add_attempts(db, "sync", T0 - dt.timedelta(seconds=400), 7)  # before the first snapshot's span
    await add_attempts(db, "sync", T0 - dt.timedelta(seconds=100), 3)
    await add_attempts(db, "sync", T0 - dt.timedelta(seconds=2), 4)  # within settle: the next snapshot's
    assert await monitor.snapshot() == len(RUNNING_QUEUES)
    first_end = T0 - dt.timedelta(seconds=5)
    clock.advance(300)
    await add_attempts(db, "sync", clock.now() - dt.timedelta(seconds=60), 5, outcome="retry")
    await add_attempts(db, "sync", clock.now() - dt.timedelta(seconds=60), 1, outcome="dead")
    assert await monitor.snapshot() == len(RUNNING_QUEUES)
    assert await monitor.snapshot() == 0  # nothing new to cover at the same time
    rows = [r for r in await statistics(db) if r["queue"] == "sync"]
    assert [(r["period_start"], r["at"]) for r in rows] == [
        (first_end - dt.timedelta(seconds=300), first_end),
        (first_end, first_end + dt.timedelta(seconds=300)),
    ]
    assert [(r["succeeded"], r["failed"], r["dead"], r["attempts"]) for r in rows] == [(3, 0, 0, 3), (4, 6, 1, 10)]
    other = [r for r in await statistics(db) if r["queue"] == "webhooks"]
    assert [r["attempts"] for r in other] == [0, 0]


async def test_snapshots_from_two_processes_at_once_do_not_overlap(
    make_monitor: Callable[..., Monitor], db: Store, second_db: Store, clock: ManualClock
) -> None:
    first, second = make_monitor(), make_monitor(second_db)
    await add_attempts(db, "webhooks", T0 - dt.timedelta(seconds=10), 9)
    written = await asyncio.gather(first.snapshot(), second.snapshot(), first.snapshot())
    assert sorted(written) == [0, 0, len(RUNNING_QUEUES)]
    clock.advance(300)
    await add_attempts(db, "webhooks", clock.now() - dt.timedelta(seconds=10), 2)
    written = await asyncio.gather(first.snapshot(), second.snapshot())
    assert sorted(written) == [0, len(RUNNING_QUEUES)]
    rows = [r for r in await statistics(db) if r["queue"] == "webhooks"]
    assert [r["succeeded"] for r in rows] == [9, 2]
    assert rows[1]["period_start"] == rows[0]["at"]


async def test_a_snapshot_after_a_long_gap_covers_at_most_an_hour(
    make_monitor: Callable[..., Monitor], db: Store, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = make_monitor()
    await monitor.snapshot()
    clock.advance(6 * 3600)  # the appliances were down
    await add_attempts(db, "sync", clock.now() - dt.timedelta(hours=3), 100)
    await add_attempts(db, "sync", clock.now() - dt.timedelta(minutes=30), 1)
    caplog.set_level(logging.WARNING, logger="fleetbox.monitor")
    await monitor.snapshot()
    last = [r for r in await statistics(db) if r["queue"] == "sync"][-1]
    assert last["at"] - last["period_start"] == dt.timedelta(hours=1)
    assert last["succeeded"] == 1
    assert [r.__dict__.get("event") for r in caplog.records] == ["statistics_gap"]


async def test_stats_per_queue_and_totals(make_monitor: Callable[..., Monitor], db: Store, clock: ManualClock) -> None:
    monitor = make_monitor()
    client = Client(db, clock=clock)
    await client.enqueue_many([{"queue": "sync", "data": {}} for _ in range(2)] + [{"queue": "webhooks", "data": {}}])
    await add_attempts(db, "sync", T0 - dt.timedelta(seconds=30), 3, duration_ms=200)
    await add_attempts(db, "webhooks", T0 - dt.timedelta(seconds=30), 1, outcome="retry", duration_ms=600)
    await add_dead_letters(db, "webhooks", 2)
    await monitor.snapshot()
    stats = await monitor.stats()
    json.dumps(stats)
    assert stats["generatedAt"] == "2026-03-04T10:00:00.000Z"
    sync = stats["queues"]["sync"]
    assert (sync["backlog"], sync["waiting"], sync["completed"], sync["failed"]) == (2, 2, 3, 0)
    assert sync["last24h"]["completed"] == 3
    assert stats["queues"]["webhooks"]["deadLetters"] == 2
    totals = stats["totals"]
    assert (totals["backlog"], totals["completed"], totals["failed"], totals["deadLetterCount"]) == (3, 3, 1, 2)
    assert totals["failureRate"] == 25.0
    assert totals["avgProcessingTime"] == 300.0  # (3 * 200 + 600) / 4
    assert totals["last24h"] == {
        "completed": 3,
        "failed": 1,
        "deadLettered": 0,
        "attempts": 4,
        "failureRate": 25.0,
        "avgProcessingTime": 300.0,
        "p95ProcessingTime": 600.0,
    }


async def test_metrics_for_each_time_range(make_monitor: Callable[..., Monitor], db: Store, clock: ManualClock) -> None:
    monitor = make_monitor()
    await monitor.snapshot()
    # two days of snapshots, one every 5 minutes, 2 succeeded and 1 failed attempt on sync in each
    for _ in range(2 * 24 * 12):
        clock.advance(300)
        await add_attempts(db, "sync", clock.now() - dt.timedelta(seconds=100), 2, duration_ms=100)
        await add_attempts(db, "sync", clock.now() - dt.timedelta(seconds=100), 1, outcome="retry", duration_ms=400)
        await monitor.snapshot()
    expected = {"1h": (300, 12), "24h": (3600, 24), "7d": (21600, 28)}
    for time_range, (bucket, buckets) in expected.items():
        doc = await monitor.metrics(time_range)
        json.dumps(doc)
        assert doc["timeRange"] == time_range
        assert doc["bucketSeconds"] == bucket
        assert doc["to"] == "2026-03-06T10:00:00.000Z"
        sync = doc["series"]["sync"]
        assert len(sync) in (buckets, buckets + 1)  # the range's start falls inside its first bucket
        assert sorted(doc["series"]) == RUNNING_QUEUES
        assert all(p["completed"] == 0 for p in doc["series"]["webhooks"])
        snapshots = {"1h": 12, "24h": 24 * 12, "7d": 2 * 24 * 12}[time_range]
        assert sum(p["completed"] for p in sync) == 2 * snapshots
        assert sum(p["failed"] for p in sync) == snapshots
        busy = [p for p in sync if p["attempts"]]
        assert all(p["failureRate"] == pytest.approx(100 / 3, abs=0.01) for p in busy)
        assert all(p["avgProcessingTime"] == 200.0 for p in busy)
        assert [p["completed"] for p in doc["totals"]] == [p["completed"] for p in sync]
    hourly = (await monitor.metrics("24h"))["series"]["sync"]
    assert hourly[-2]["at"] == "2026-03-06T09:00:00.000Z"
    assert hourly[-2]["completed"] == 24  # 12 snapshots an hour


async def test_metrics_rejects_an_unknown_time_range(make_monitor: Callable[..., Monitor]) -> None:
    for bad in ("2h", "", "24H", "1d"):
        with pytest.raises(InvalidInput) as err:
            await make_monitor().metrics(bad)
        assert err.value.field == "timeRange"
        assert "1h, 24h, 7d" in str(err.value)


async def test_the_daily_report_is_stored_once_and_logged(
    make_monitor: Callable[..., Monitor], db: Store, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = make_monitor()
    await monitor.snapshot()
    for _ in range(12):
        clock.advance(300)
        await add_attempts(db, "teams-outbound", clock.now() - dt.timedelta(seconds=10), 5, duration_ms=50)
        await monitor.snapshot()
    caplog.set_level(logging.INFO, logger="fleetbox.monitor")
    end = clock.now()
    report = await monitor.performance_report(end=end)
    assert report["queues"]["teams-outbound"]["completed"] == 60
    assert report["totals"]["completed"] == 60
    assert report["periodEnd"] == "2026-03-04T11:00:00.000Z"
    assert await monitor.performance_report(end=end) == report  # stored once, returned again
    assert await db.pool.fetchval("SELECT count(*) FROM performance_reports") == 1
    assert [r.__dict__.get("event") for r in caplog.records].count("performance_report") == 1


async def test_the_appliance_figures_come_from_real_jobs(appliance_factory: AppFactory) -> None:
    async def handle(job: Job) -> None:
        if job.data.get("fail"):
            raise ValueError("no")

    app = await appliance_factory(handlers={"sync": handle}, retry={"transient": {"max_retries": 0}})
    ids = [(await app.client.enqueue("sync", {"fail": i % 4 == 0})).id for i in range(8)]

    async def finished() -> bool:
        states = [(await app.client.get_job(i)).state for i in ids]
        return all(s in (JobState.SUCCEEDED, JobState.DEAD) for s in states)

    await wait_for(finished)
    app.monitor.depth_cache_seconds = 0
    report = await app.monitor.health()
    sync = report.queues["sync"]
    assert (sync.completed, sync.failed, sync.backlog) == (6, 2, 0)
    assert sync.failure_rate == pytest.approx(25.0)
    assert report.dead_letter_count == 2
    assert report.reasons == ("sync: failure rate 25.0% exceeds maxFailureRate 10%",)


# -- cheap at scale --------------------------------------------------------------------------

BIG = 200_000


def _literal(value: object) -> str:
    """A SQL literal for EXECUTE (parameters cannot be bound there)."""
    if isinstance(value, dt.datetime):
        return f"'{value.isoformat()}'::timestamptz"
    if isinstance(value, dt.timedelta):
        return f"'{value.total_seconds()} seconds'::interval"
    if isinstance(value, int):
        return str(value)
    raise TypeError(value)


def _seq_scans(plan: Any, found: list[str]) -> list[str]:
    if isinstance(plan, dict):
        if plan.get("Node Type") == "Seq Scan":
            found.append(plan.get("Relation Name", "?"))
        for value in plan.values():
            _seq_scans(value, found)
    elif isinstance(plan, list):
        for item in plan:
            _seq_scans(item, found)
    return found


async def test_health_and_stats_stay_index_backed_with_many_finished_jobs(
    make_monitor: Callable[..., Monitor], db: Store, clock: ManualClock
) -> None:
    queues = RUNNING_QUEUES
    # 200k finished jobs and their attempts over 30 days, 50k closed dead letters and 30 days of
    # snapshots; a little recent work on top.
    await db.pool.execute(
        """INSERT INTO jobs_done (id, queue, priority, state, data, attempts, created_at, run_at, finished_at,
                                  duration_ms)
           SELECT g, ($1::text[])[1 + g % 8], 5, 'succeeded', '{}', 1, f, f, f, 100
             FROM generate_series(1, $2) g,
                  LATERAL (SELECT $3::timestamptz - make_interval(secs => g * 12.96) AS f) t""",
        queues,
        BIG,
        T0,
    )
    await db.pool.execute(
        """INSERT INTO job_attempts (job_id, attempt, queue, worker_id, started_at, finished_at, duration_ms, outcome)
           SELECT id, 1, queue, 'w', finished_at, finished_at, 100, 'succeeded' FROM jobs_done""",
    )
    await db.pool.execute(
        """INSERT INTO dead_letters (job_id, queue, priority, data, error_class, error, attempts, history,
                                     job_created_at, status)
           SELECT 10000000 + g, ($1::text[])[1 + g % 8], 5, '{}', 'permanent', 'x', 1, '[]', $2, 'discarded'
             FROM generate_series(1, 50000) g""",
        queues,
        T0,
    )
    await db.pool.execute(
        """INSERT INTO queue_statistics (queue, at, period_start, waiting, scheduled, running, succeeded, failed,
                                         dead, attempts)
           SELECT q, t - make_interval(mins => 5 * g), t - make_interval(mins => 5 * g + 5), 0, 0, 0, 1, 0, 0, 1
             FROM unnest($1::text[]) q, generate_series(1, 30 * 288) g, (SELECT $2::timestamptz AS t) t0""",
        queues,
        T0,
    )
    await add_dead_letters(db, "sync", 3)
    await add_attempts(db, "sync", T0 - dt.timedelta(seconds=20), 10)
    for table in ("jobs_done", "job_attempts", "dead_letters", "queue_statistics"):
        await db.pool.execute(f"ANALYZE {table}")

    now = T0
    calls: list[tuple[str, tuple[Any, ...]]] = [
        ("monitor_window", (now - dt.timedelta(seconds=300), WINDOW_SAMPLE)),
        ("dead_letter_depth", ()),
        ("monitor_totals", (now - dt.timedelta(hours=24), now)),
        ("monitor_series", (now - dt.timedelta(days=7), now, dt.timedelta(hours=6))),
        ("monitor_last_snapshot", ()),
        ("monitor_thresholds_get", ()),
        ("queue_list", ()),
        ("queue_depth", (now,)),
    ]
    watched = {"jobs_done", "job_attempts", "dead_letters", "queue_statistics"}
    async with db.pool.acquire() as raw:
        for name, args in calls:
            custom = await raw.fetchval(f"EXPLAIN (FORMAT JSON) {queries()[name]}", *args)
            assert watched.isdisjoint(_seq_scans(custom, [])), (name, custom)
            # the plan asyncpg may switch to after five executions: generic, parameters unknown
            await raw.execute(f"PREPARE generic_{name} AS {queries()[name]}")
            await raw.execute("SET plan_cache_mode = force_generic_plan")
            literals = ", ".join(_literal(a) for a in args)
            execute = f"EXECUTE generic_{name}({literals})" if args else f"EXECUTE generic_{name}"
            generic = await raw.fetchval(f"EXPLAIN (FORMAT JSON) {execute}")
            await raw.execute("RESET plan_cache_mode")
            assert watched.isdisjoint(_seq_scans(generic, [])), (name, "generic", generic)
        # the snapshot's write (EXPLAIN without ANALYZE writes nothing)
        plan = await raw.fetchval(
            f"EXPLAIN (FORMAT JSON) {queries()['monitor_snapshot_write']}", now - dt.timedelta(seconds=300), now, now
        )
        assert watched.isdisjoint(_seq_scans(plan, [])), plan

    # and the figures are right
    monitor = make_monitor()
    report = await monitor.health()
    assert report.queues["sync"].completed == 10 + sum(1 for g in range(1, 24) if queues[g % 8] == "sync")
    assert report.dead_letter_count == 3
    stats = await monitor.stats()
    assert stats["totals"]["last24h"]["completed"] == len(queues) * 287
