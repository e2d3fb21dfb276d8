"""Cron schedules on real PostgreSQL with a clock the test moves: once per tick whatever the number
of appliances, DST on both changes, each catch-up and overlap policy, the dead-man alert, and the
config file's [[schedules]]."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from fleetbox.app import Appliance
from fleetbox.errors import InvalidInput
from fleetbox.models import ManualClock
from fleetbox.service import Service
from fleetbox.service.schedules import ScheduleSpec
from fleetbox.store import Store

UTC = dt.UTC
AppFactory = Callable[..., Awaitable[Appliance]]


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


async def jobs_of(db: Store) -> list[dict[str, Any]]:
    rows = await db.pool.fetch("SELECT id, queue, data, run_at FROM jobs ORDER BY id")
    return [dict(r) for r in rows]


async def runs_of(db: Store, name: str) -> list[tuple[dt.datetime, str]]:
    rows = await db.pool.fetch("SELECT tick, outcome FROM schedule_runs WHERE schedule = $1 ORDER BY tick", name)
    return [(r["tick"], r["outcome"]) for r in rows]


class Fleet:
    """Appliances' worth of services on one database, each with its own clock."""

    def __init__(self, stores: list[Store], clocks: list[ManualClock]) -> None:
        self.services = [Service(s, clock=c) for s, c in zip(stores, clocks, strict=True)]
        self.clocks = clocks

    def advance(self, seconds: float) -> None:
        for clock in self.clocks:
            clock.advance(seconds)

    async def fire(self) -> None:
        for i, service in enumerate(self.services):
            await service.schedules.fire_due(worker_id=f"appliance-{i}")


@pytest.fixture
async def fleet(dsn: str, db: Store) -> AsyncIterator[Fleet]:
    second = await Store(dsn, schema="fleetbox", min_size=1, max_size=2).open()
    try:
        yield Fleet([db, second], [ManualClock(at("2026-03-02T09:59:00")), ManualClock(at("2026-03-02T09:59:00"))])
    finally:
        await second.close()


def spec(name: str = "nightly", **kw: Any) -> ScheduleSpec:
    values: dict[str, Any] = {"cron": "0 * * * *", "queue": "sync", "data": {"kind": name}, **kw}
    return ScheduleSpec(name=name, **values)


async def test_each_tick_fires_once_with_two_appliances_and_a_clock_skew(fleet: Fleet, db: Store) -> None:
    await fleet.services[0].schedules.put(spec(cron="*/15 * * * *"), actor="ops")
    # the second appliance's clock runs 40 s ahead of the first
    fleet.clocks[1].advance(40)
    for _ in range(4 * 61):  # from 09:59 to 11:00, loop passes 15 s apart, on both
        fleet.advance(15)
        await fleet.fire()
    ticks = [t for t, outcome in await runs_of(db, "nightly") if outcome == "enqueued"]
    assert ticks == [
        at("2026-03-02T10:00"),
        at("2026-03-02T10:15"),
        at("2026-03-02T10:30"),
        at("2026-03-02T10:45"),
        at("2026-03-02T11:00"),
    ]
    assert len(await jobs_of(db)) == 5


async def test_a_time_the_spring_forward_day_skips_runs_once_at_the_next_valid_minute(fleet: Fleet, db: Store) -> None:
    service = fleet.services[0]
    fleet.clocks[0].current = at("2026-03-28T12:00")  # Europe/Berlin springs forward 2026-03-29 02:00 -> 03:00
    await service.schedules.put(spec(cron="30 2 * * *", timezone="Europe/Berlin"), actor="ops")
    upcoming = await service.schedules.upcoming("nightly", 3)
    assert [(t.at, t.dst) for t in upcoming] == [
        (at("2026-03-29T01:00"), "skipped-forward"),  # 03:00 local, the first valid minute
        (at("2026-03-30T00:30"), None),
        (at("2026-03-31T00:30"), None),
    ]
    for _ in range(3 * 24 * 12):  # three days, every five minutes
        fleet.clocks[0].advance(300)
        await service.schedules.fire_due(worker_id="a")
    assert [t for t, _o in await runs_of(db, "nightly")] == [t.at for t in upcoming]


@pytest.mark.parametrize(("dst", "expected"), [("once", 1), ("both", 2)])
async def test_a_time_the_fall_back_day_repeats_runs_once_or_twice(
    fleet: Fleet, db: Store, dst: str, expected: int
) -> None:
    service = fleet.services[0]
    fleet.clocks[0].current = at("2026-10-24T23:00")  # Berlin falls back 2026-10-25 03:00 -> 02:00
    await service.schedules.put(spec(cron="30 2 * * *", timezone="Europe/Berlin", dst=dst), actor="ops")
    for _ in range(6 * 12):
        fleet.clocks[0].advance(300)
        await service.schedules.fire_due(worker_id="a")
    assert [t for t, _o in await runs_of(db, "nightly")] == [at("2026-10-25T00:30"), at("2026-10-25T01:30")][:expected]


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [
        ("none", ["missed"] * 6),
        ("latest", ["missed"] * 5 + ["enqueued"]),  # 15:00, the latest of them
        ("all", ["enqueued"] * 6),
        # back at 15:00:10 the tick due now runs whatever the policy; "latest" adds nothing to it
        ("none@15:00:10", ["missed"] * 5 + ["enqueued"]),
        ("latest@15:00:10", ["missed"] * 5 + ["enqueued"]),
    ],
)
async def test_runs_missed_while_no_appliance_ran_follow_the_catch_up_policy(
    fleet: Fleet, db: Store, catch_up: str, expected: list[str]
) -> None:
    service = fleet.services[0]
    policy, _, back_at = catch_up.partition("@")
    await service.schedules.put(spec(catch_up=policy), actor="ops")
    # no appliance from 09:59 to 15:20 (or 15:00:10): the ticks 10:00 to 15:00 were not fired on time
    fleet.clocks[0].current = at(f"2026-03-02T{back_at or '15:20:00'}")
    await service.schedules.fire_due(worker_id="a")
    assert [o for _t, o in await runs_of(db, "nightly")] == expected
    assert len(await jobs_of(db)) == expected.count("enqueued")


async def test_catch_up_all_is_capped(fleet: Fleet, db: Store) -> None:
    service = fleet.services[0]
    await service.schedules.put(spec(catch_up="all", catch_up_max=3), actor="ops")
    fleet.clocks[0].advance(10 * 3600 + 61)
    await service.schedules.fire_due(worker_id="a")
    assert [o for _t, o in await runs_of(db, "nightly")] == ["missed"] * 7 + ["enqueued"] * 4


@pytest.mark.parametrize(
    ("overlap", "outcomes", "jobs"),
    [
        ("allow", ["enqueued", "enqueued"], 2),
        ("skip", ["enqueued", "skipped"], 1),
        ("queue", ["enqueued"], 1),  # the second tick waits for the first job
        ("cancel_previous", ["enqueued", "enqueued"], 1),  # the first, still waiting, was cleared
    ],
)
async def test_a_run_whose_previous_is_still_waiting_follows_the_overlap_policy(
    fleet: Fleet, db: Store, overlap: str, outcomes: list[str], jobs: int
) -> None:
    service = fleet.services[0]
    await service.schedules.put(spec(overlap=overlap), actor="ops")
    for _ in range(2):
        fleet.clocks[0].advance(3600)
        await service.schedules.fire_due(worker_id="a")
    assert [o for _t, o in await runs_of(db, "nightly")] == outcomes
    assert len(await jobs_of(db)) == jobs
    if overlap == "queue":
        # the first job finishes: the held tick runs now
        await db.pool.execute("DELETE FROM jobs")
        await service.schedules.fire_due(worker_id="a")
        assert [o for _t, o in await runs_of(db, "nightly")] == ["enqueued", "enqueued"]


async def test_paused_and_resumed_schedules_do_not_catch_up_the_pause(fleet: Fleet, db: Store) -> None:
    service = fleet.services[0]
    await service.schedules.put(spec(catch_up="all"), actor="ops")
    await service.schedules.set_enabled("nightly", False, actor="ops")
    fleet.clocks[0].advance(3 * 3600)
    await service.schedules.fire_due(worker_id="a")
    assert await runs_of(db, "nightly") == []
    await service.schedules.set_enabled("nightly", True, actor="ops")
    fleet.clocks[0].advance(3600)
    await service.schedules.fire_due(worker_id="a")
    assert [o for _t, o in await runs_of(db, "nightly")] == ["enqueued"]
    assert await service.schedules.run_now("nightly", actor="ops")  # fire now, outside its ticks
    assert len(await jobs_of(db)) == 2
    audit = await db.pool.fetch("SELECT action FROM audit_log WHERE target = 'schedule:nightly' ORDER BY id")
    assert [r["action"] for r in audit] == ["schedule.put", "schedule.pause", "schedule.resume", "schedule.run"]


async def test_a_schedule_is_checked_like_an_enqueue(fleet: Fleet, db: Store) -> None:
    schedules = fleet.services[0].schedules
    for bad, field in (
        (spec(cron="61 * * * *"), "cron"),
        (spec(timezone="Mars/Olympus"), "timezone"),
        (spec(queue="nope"), "queue"),
        (spec(priority=11), "priority"),
        (spec(data=[1]), "data"),  # type: ignore[arg-type]
        (spec(overlap="sometimes"), "overlap"),
        (spec(name="Bad Name"), "name"),
    ):
        with pytest.raises(InvalidInput) as err:
            await schedules.put(bad, actor="ops")
        assert err.value.field == field
    assert await schedules.all() == []


async def test_a_schedule_whose_jobs_do_not_succeed_raises_the_dead_man_alert(
    fleet: Fleet, db: Store, appliance_factory: AppFactory
) -> None:
    clock = fleet.clocks[0]
    app = await appliance_factory(clock=clock, monitor={"schedule": False})
    await app.service.schedules.put(spec(alert_after_seconds=2 * 3600), actor="ops")
    assert await app.crons.conditions() == []
    clock.advance(2 * 3600 + 120)  # its jobs wait: no handler for sync in this appliance
    [late] = await app.crons.conditions()
    assert (late.kind, late.subject) == ("schedule_late", "schedule:nightly")
    [alert] = await app.monitor.check_alerts(await app.crons.conditions())
    assert alert.kind == "schedule_late"


async def test_config_schedules_are_applied_at_start_and_on_reload(
    appliance_factory: AppFactory, make_settings: Callable[..., Any], db: Store
) -> None:
    nightly = {
        "name": "nightly",
        "cron": "0 3 * * *",
        "queue": "sync",
        "data": {"full": True},
        "timezone": "Europe/Berlin",
    }
    app = await appliance_factory(schedules=[nightly])
    [schedule] = await app.service.schedules.all()
    assert (schedule.name, schedule.source, schedule.timezone) == ("nightly", "config", "Europe/Berlin")
    await app.service.schedules.put(spec("made-by-api"), actor="ops")
    weekly = {**nightly, "name": "weekly", "cron": "0 4 * * 0"}
    await app.reload(make_settings(schedules=[weekly]))
    assert sorted(s.name for s in await app.service.schedules.all()) == ["made-by-api", "weekly"]
