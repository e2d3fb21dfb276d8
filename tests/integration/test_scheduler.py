"""The shared schedule: each tick runs once across processes, failures are recorded and the loop
goes on, and the spec's schedule (every minute, every 5 minutes, midnight, 2 AM, Sunday) fires at
the right times. A ManualClock is the time; nothing sleeps to wait for work.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from fleetbox.app import Appliance
from fleetbox.config import Settings
from fleetbox.errors import InvalidInput
from fleetbox.models import ManualClock, Thresholds
from fleetbox.monitor.schedule import PeriodicTask, Scheduler
from fleetbox.store import Store
from tests.conftest import SCHEMA, monitor_for, tasks_for, wait_for

AppFactory = Callable[..., Awaitable[Appliance]]

UTC = dt.UTC
SUNDAY = dt.datetime(2026, 3, 1, tzinfo=UTC)
CRON_TASKS = {"performance-report", "statistics-cleanup", "job-archive", "job-cleanup"}


@pytest.fixture
async def second_db(dsn: str) -> AsyncIterator[Store]:
    async with Store(dsn, schema=SCHEMA, min_size=1, max_size=4) as database:
        yield database


class Counter:
    """A task body that counts its runs (per process)."""

    def __init__(self, fail: bool = False) -> None:
        self.runs = 0
        self.fail = fail

    async def __call__(self) -> object:
        self.runs += 1
        if self.fail:
            raise RuntimeError(f"boom {self.runs}")
        return {"run": self.runs}


async def ticks(db: Store, task: str | None = None) -> list[dict[str, Any]]:
    rows = await db.pool.fetch(
        "SELECT task, tick, worker_id, ok, error, result, finished_at FROM scheduler_ticks "
        "WHERE $1::text IS NULL OR task = $1 ORDER BY tick, task",
        task,
    )
    return [dict(r) for r in rows]


# -- once per tick ---------------------------------------------------------------------------


async def test_two_schedulers_run_each_tick_once(db: Store, second_db: Store) -> None:
    clock = ManualClock(dt.datetime(2026, 3, 4, 10, 0, 30, tzinfo=UTC))
    counters: dict[str, list[Counter]] = {"minutely": [], "nightly": []}

    def tasks() -> list[PeriodicTask]:
        minutely, nightly = Counter(), Counter()
        counters["minutely"].append(minutely)
        counters["nightly"].append(nightly)
        return [
            PeriodicTask(name="minutely", every=60, run=minutely),
            PeriodicTask(name="nightly", schedule="0 0 * * *", run=nightly),
        ]

    one = Scheduler(db, clock=clock, tasks=tasks(), worker_id="one")
    two = Scheduler(second_db, clock=clock, tasks=tasks(), worker_id="two")

    async def both() -> list[str]:
        ran = await asyncio.gather(one.run_due(clock.now()), two.run_due(clock.now()))
        return sorted(ran[0] + ran[1])

    assert await both() == ["minutely"]  # the nightly tick is 10 hours old: not caught up
    assert await both() == []  # same tick again: nobody runs it
    clock.advance(20)
    assert await both() == []  # 10:00:50, still the 10:00 tick
    clock.advance(10)
    assert await both() == ["minutely"]  # 10:01:00
    for _ in range(5):
        clock.advance(60)
        assert await both() == ["minutely"]
    assert sum(c.runs for c in counters["minutely"]) == 7
    rows = await ticks(db, "minutely")
    assert [r["tick"] for r in rows] == [dt.datetime(2026, 3, 4, 10, m, tzinfo=UTC) for m in range(7)]
    assert all(r["ok"] is True and r["finished_at"] is not None for r in rows)
    assert {r["worker_id"] for r in rows} <= {"one", "two"}
    # the night: exactly one of them writes it
    clock.current = dt.datetime(2026, 3, 5, 0, 0, 0, tzinfo=UTC)
    assert await both() == ["minutely", "nightly"]
    assert sum(c.runs for c in counters["nightly"]) == 1
    assert [r["tick"] for r in await ticks(db, "nightly")] == [clock.now()]


async def test_a_fresh_process_does_not_rerun_a_tick_another_one_ran(db: Store, second_db: Store) -> None:
    clock = ManualClock(dt.datetime(2026, 3, 4, 0, 0, 5, tzinfo=UTC))
    first = Counter()
    assert await Scheduler(db, clock=clock, tasks=[PeriodicTask(name="n", schedule="0 0 * * *", run=first)]).run_due(
        clock.now()
    ) == ["n"]
    clock.advance(600)  # a second appliance starts ten minutes later: the tick is within catch-up
    late = Counter()
    assert (
        await Scheduler(second_db, clock=clock, tasks=[PeriodicTask(name="n", schedule="0 0 * * *", run=late)]).run_due(
            clock.now()
        )
        == []
    )
    assert late.runs == 0


async def test_a_failing_task_is_recorded_and_the_loop_goes_on(db: Store, caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock(dt.datetime(2026, 3, 4, 10, 0, 0, tzinfo=UTC))
    broken, healthy = Counter(fail=True), Counter()
    scheduler = Scheduler(
        db,
        clock=clock,
        worker_id="w1",
        poll_seconds=0.02,
        tasks=[PeriodicTask(name="broken", every=60, run=broken), PeriodicTask(name="fine", every=60, run=healthy)],
    )
    caplog.set_level(logging.INFO, logger="fleetbox.scheduler")
    loop = asyncio.create_task(scheduler.run(), name="test.scheduler")
    try:
        await wait_for(lambda: healthy.runs == 1 and broken.runs == 1)

        async def recorded(n: int) -> bool:
            return len([r for r in await ticks(db, "broken") if r["finished_at"] is not None]) == n

        await wait_for(lambda: recorded(1))
        clock.advance(60)
        await wait_for(lambda: healthy.runs == 2 and broken.runs == 2)
        await wait_for(lambda: recorded(2))
        assert not loop.done()
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
    rows = await ticks(db, "broken")
    assert [(r["ok"], r["error"]) for r in rows] == [(False, "RuntimeError: boom 1"), (False, "RuntimeError: boom 2")]
    assert [(r["ok"], r["result"]) for r in await ticks(db, "fine")] == [(True, {"run": 1}), (True, {"run": 2})]
    failed = [r for r in caplog.records if r.__dict__.get("event") == "scheduled_task_failed"]
    assert [r.__dict__["task"] for r in failed] == ["broken", "broken"]


async def test_cancelling_the_loop_stops_a_run_in_progress_and_records_it(db: Store) -> None:
    clock = ManualClock(dt.datetime(2026, 3, 4, 10, 0, 0, tzinfo=UTC))
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.Event().wait()  # until cancelled

    scheduler = Scheduler(db, clock=clock, poll_seconds=0.02, tasks=[PeriodicTask(name="slow", every=60, run=slow)])
    loop = asyncio.create_task(scheduler.run())
    await asyncio.wait_for(started.wait(), 10)
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    [row] = await ticks(db, "slow")
    assert (row["ok"], row["error"]) == (False, "cancelled: the appliance stopped during the run")
    assert [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("fleetbox.scheduler.")] == []


def test_periodic_task_checks_its_schedule() -> None:
    async def noop() -> None:
        return None

    with pytest.raises(InvalidInput, match="not both or neither"):
        PeriodicTask(name="x", run=noop)
    with pytest.raises(InvalidInput, match="not both or neither"):
        PeriodicTask(name="x", run=noop, every=5, schedule="* * * * *")
    with pytest.raises(InvalidInput) as err:
        PeriodicTask(name="x", run=noop, schedule="every day")
    assert err.value.field == "x.schedule"
    with pytest.raises(InvalidInput) as err:
        PeriodicTask(name="x", run=noop, every=0)
    assert err.value.field == "x.every"
    with pytest.raises(InvalidInput) as err:
        PeriodicTask(name="x", run=noop, every=1, timezone="Mars/Olympus")
    assert err.value.field == "x.timezone"
    task = PeriodicTask(name="x", run=noop, schedule="0 2 * * *")
    now = dt.datetime(2026, 3, 4, 2, 0, 0, tzinfo=UTC)
    assert task.tick_at(now) == now  # a tick is due at its own time
    assert task.tick_at(now - dt.timedelta(microseconds=1)) == now - dt.timedelta(days=1)
    assert task.next_tick(now) == now + dt.timedelta(days=1)
    with pytest.raises(InvalidInput, match="unique"):
        Scheduler(None, clock=ManualClock(), tasks=[task, task])  # type: ignore[arg-type]


# -- the spec's schedule ---------------------------------------------------------------------


def spec_scheduler(db: Store, clock: ManualClock, **monitor: Any) -> Scheduler:
    settings = Settings(database={"dsn": "postgresql://unused"}, monitor=monitor)
    mon = monitor_for(db, clock=clock, thresholds=Thresholds(), settle_seconds=0, depth_cache_seconds=0)
    return Scheduler(db, clock=clock, tasks=tasks_for(settings, db, mon, clock), catch_up_seconds=120)


def t(days: int, hour: int, minute: int, second: int = 0) -> dt.datetime:
    """A time counted from Sunday 2026-03-01 00:00 UTC (days=-1 is the Saturday before)."""
    return SUNDAY + dt.timedelta(days=days, hours=hour, minutes=minute, seconds=second)


async def test_the_spec_schedule_fires_at_the_right_times(db: Store) -> None:
    clock = ManualClock(t(-1, 23, 58))
    scheduler = spec_scheduler(db, clock)
    expected: list[tuple[dt.datetime, set[str]]] = [
        (t(-1, 23, 58), set()),  # Saturday: the 23:30 archive is 28 minutes old, past catch-up
        (t(-1, 23, 59, 59), set()),
        (t(0, 0, 0), {"performance-report", "job-cleanup"}),  # Sunday midnight
        (t(0, 0, 0, 30), set()),
        (t(0, 0, 30), {"job-archive"}),  # hourly at :30
        (t(0, 1, 59), set()),
        (t(0, 2, 0, 10), {"statistics-cleanup"}),  # 2 AM
        (t(0, 2, 30), {"job-archive"}),
        (t(1, 0, 0), {"performance-report"}),  # Monday midnight: no job cleanup
        (t(1, 2, 1), {"statistics-cleanup"}),
        (t(6, 23, 59), set()),
        (t(7, 0, 0), {"performance-report", "job-cleanup"}),  # the next Sunday
    ]
    seen = []
    for now, _cron in expected:
        clock.current = now
        seen.append((now, set(await scheduler.run_due(now)) & CRON_TASKS))
    assert seen == expected
    # the interval tasks ran once per tick they were looked at in
    health = [r["tick"] for r in await ticks(db, "health-check")]
    assert health == sorted({now.replace(second=0) for now, _cron in expected})
    snapshots = [r["tick"] for r in await ticks(db, "statistics-snapshot")]
    assert snapshots == sorted({now.replace(minute=now.minute - now.minute % 5, second=0) for now, _ in expected})
    assert all(r["ok"] for r in await ticks(db))
    reports = await db.pool.fetch("SELECT period_start, period_end FROM performance_reports ORDER BY period_end")
    assert [r["period_end"] for r in reports] == [t(0, 0, 0), t(1, 0, 0), t(7, 0, 0)]
    assert reports[0]["period_start"] == t(-1, 0, 0)


async def test_intervals_and_time_zone_come_from_the_settings(db: Store) -> None:
    clock = ManualClock(dt.datetime(2026, 3, 4, 22, 59, 59, tzinfo=UTC))
    scheduler = spec_scheduler(
        db, clock, interval_seconds=15, snapshot_seconds=60, timezone="Europe/Berlin", report_cron="0 0 * * *"
    )
    assert set(await scheduler.run_due(clock.now())) == {"health-check", "statistics-snapshot"}
    clock.advance(1)  # 23:00 UTC is midnight in Berlin (winter time)
    assert set(await scheduler.run_due(clock.now())) == {"health-check", "statistics-snapshot", "performance-report"}
    clock.advance(14)
    assert await scheduler.run_due(clock.now()) == []
    clock.advance(1)  # 15 s after the last health check
    assert await scheduler.run_due(clock.now()) == ["health-check"]


async def test_a_restart_catches_up_a_recent_cron_tick_only(db: Store) -> None:
    clock = ManualClock(dt.datetime(2026, 3, 3, 0, 20, tzinfo=UTC))  # Tuesday 00:20
    settings = Settings(database={"dsn": "postgresql://unused"})
    mon = monitor_for(db, clock=clock, thresholds=Thresholds(), settle_seconds=0)
    scheduler = Scheduler(db, clock=clock, tasks=tasks_for(settings, db, mon, clock))  # catch-up: an hour
    assert "performance-report" in await scheduler.run_due(clock.now())
    clock.current = dt.datetime(2026, 3, 3, 15, 0, tzinfo=UTC)  # a first start on Tuesday afternoon
    fresh = Scheduler(db, clock=clock, tasks=tasks_for(settings, db, mon, clock))
    assert set(await fresh.run_due(clock.now())) & CRON_TASKS == {"job-archive"}  # 14:30's, not Sunday's cleanup


async def test_the_health_check_task_opens_alerts(db: Store) -> None:
    clock = ManualClock(dt.datetime(2026, 3, 4, 10, 0, tzinfo=UTC))
    settings = Settings(database={"dsn": "postgresql://unused"}, monitor={"max_backlog": 0})
    mon = monitor_for(db, clock=clock, thresholds=Thresholds(max_backlog=0), depth_cache_seconds=0)
    await db.pool.execute("INSERT INTO jobs (queue, tier, data) VALUES ('sync', 3, '{}')")
    scheduler = Scheduler(db, clock=clock, tasks=tasks_for(settings, db, mon, clock))
    assert "health-check" in await scheduler.run_due(clock.now())
    [row] = await ticks(db, "health-check")
    assert row["result"]["healthy"] is False
    assert row["result"]["reasons"] == ["sync: backlog 1 exceeds maxBacklog 0"]
    assert [a["kind"] for a in row["result"]["alertsChanged"]] == ["backlog"]
    assert [a.queue for a in await mon.alerts(status="open")] == ["sync"]


# -- in the appliance ------------------------------------------------------------------------


async def test_the_appliance_runs_the_schedule_and_stops_it(appliance_factory: AppFactory) -> None:
    app = await appliance_factory(monitor={"interval_seconds": 60})
    assert app.supervisor.running("fleetbox.scheduler")

    async def health_checked() -> bool:
        return any(r["ok"] for r in await ticks(app.store, "health-check"))

    await wait_for(health_checked)
    rows = await ticks(app.store, "health-check")
    assert rows[0]["worker_id"] == app.worker_id
    await app.stop()
    assert not app.supervisor.running("fleetbox.scheduler")
    assert [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("fleetbox.scheduler")] == []


async def test_an_appliance_can_leave_the_schedule_to_others(appliance_factory: AppFactory) -> None:
    app = await appliance_factory(monitor={"schedule": False})
    assert not app.supervisor.running("fleetbox.scheduler")
    assert (await app.monitor.health()).healthy is True
