"""The shared schedule: periodic tasks that run once per tick across every appliance process.

A task runs on a cron expression (``0 2 * * *``, read in a configurable time zone) or every so
many seconds (ticks aligned to the Unix epoch, so every process computes the same ones). When a
tick comes due, each process tries ``INSERT INTO scheduler_ticks (task, tick) ... ON CONFLICT DO
NOTHING``; the one whose row goes in runs the task and records the outcome in that row, the others
skip the tick. A tick is therefore run at most once (a process that dies during the run leaves
the row unfinished, and that tick is not run again).

A cron tick missed while no appliance was running is caught up when one starts within
``catch_up_seconds`` of it (a restart at 00:10 still writes the midnight report; a first start on a
Tuesday does not run last Sunday's cleanup). An interval task runs at its current tick at start.
A failing task is logged (event ``scheduled_task_failed``) and recorded; the loop goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import math
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from fleetbox.errors import DatabaseError, InvalidInput
from fleetbox.models import Clock, iso
from fleetbox.store import Store

log = logging.getLogger("fleetbox.scheduler")

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def latest_cron_tick(schedule: str, now: dt.datetime, timezone: str = "UTC") -> dt.datetime:
    """The latest time at or before ``now`` that matches ``schedule`` (in UTC)."""
    local = now.astimezone(ZoneInfo(timezone))
    prev = croniter(schedule, local).get_prev(dt.datetime)
    # croniter's get_prev is strictly before its start: when now is itself a tick, that tick is
    # the one after prev.
    following = croniter(schedule, prev).get_next(dt.datetime)
    return (following if following <= local else prev).astimezone(dt.UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodicTask:
    """A task of the schedule: ``run`` is awaited once per tick, on one process.

    Give exactly one of ``schedule`` (a cron expression: minute hour day-of-month month
    day-of-week, read in ``timezone``) and ``every`` (seconds). What ``run`` returns is stored
    with the tick (as JSON where it can be).
    """

    name: str
    run: Callable[[], Awaitable[object]]
    schedule: str | None = None
    every: float | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not 1 <= len(self.name) <= 200:
            raise InvalidInput("must be a string of 1 to 200 characters", field="name")
        if (self.schedule is None) == (self.every is None):
            raise InvalidInput("give a cron schedule or every (seconds), not both or neither", field=self.name)
        if self.schedule is not None and not croniter.is_valid(self.schedule):
            raise InvalidInput(f"not a cron expression: {self.schedule!r}", field=f"{self.name}.schedule")
        if self.every is not None and (
            isinstance(self.every, bool)
            or not isinstance(self.every, int | float)
            or not math.isfinite(self.every)
            or self.every <= 0
        ):
            raise InvalidInput(f"must be a positive number of seconds, got {self.every!r}", field=f"{self.name}.every")
        try:
            ZoneInfo(self.timezone)
        except (ValueError, OSError, ZoneInfoNotFoundError):
            raise InvalidInput(f"unknown time zone {self.timezone!r}", field=f"{self.name}.timezone") from None

    def tick_at(self, now: dt.datetime) -> dt.datetime:
        """The latest tick at or before ``now`` (UTC)."""
        if self.schedule is not None:
            return latest_cron_tick(self.schedule, now, self.timezone)
        assert self.every is not None
        step = dt.timedelta(seconds=self.every)
        return _EPOCH + ((now - _EPOCH) // step) * step

    def next_tick(self, now: dt.datetime) -> dt.datetime:
        """The first tick after ``now`` (UTC)."""
        if self.schedule is not None:
            local = now.astimezone(ZoneInfo(self.timezone))
            return croniter(self.schedule, local).get_next(dt.datetime).astimezone(dt.UTC)
        assert self.every is not None
        return self.tick_at(now) + dt.timedelta(seconds=self.every)


def _json_safe(value: object) -> object:
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return repr(value)


class Scheduler:
    """Runs periodic tasks, each tick once across every process on the database.

    Args:
        store: the fleetbox database (holds ``scheduler_ticks``).
        clock: when ticks are due (tests drive a :class:`~fleetbox.models.ManualClock`).
        tasks: the tasks; names must be unique.
        worker_id: recorded with each run (default: host:pid:random).
        poll_seconds: the longest sleep between looks at the clock in :meth:`run`.
        catch_up_seconds: a cron tick is still run this long after its time.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock,
        tasks: Iterable[PeriodicTask],
        worker_id: str | None = None,
        poll_seconds: float = 1.0,
        catch_up_seconds: float = 3600.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.worker_id = worker_id or f"{os.uname().nodename}:{os.getpid()}:{secrets.token_hex(3)}"
        self.poll_seconds = poll_seconds
        self.catch_up_seconds = catch_up_seconds
        self.tasks: list[PeriodicTask] = []
        self.set_tasks(tasks)
        #: per task, the latest tick this process has dealt with (run, or seen claimed elsewhere)
        self._handled: dict[str, dt.datetime] = {}
        #: runs started by run(), by task name
        self._running: dict[str, asyncio.Task[None]] = {}
        #: tasks whose last claim failed (the database was unreachable)
        self._failing: set[str] = set()

    def set_tasks(self, tasks: Iterable[PeriodicTask]) -> None:
        """Replace the tasks (a configuration reload); a run in progress finishes."""
        tasks = list(tasks)
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise InvalidInput(f"task names must be unique, got {names}", field="tasks")
        self.tasks = tasks

    async def _claim_due(self, now: dt.datetime) -> list[tuple[PeriodicTask, dt.datetime]]:
        claimed = []
        for task in self.tasks:
            tick = task.tick_at(now)
            if self._handled.get(task.name) == tick or task.name in self._running:
                continue
            if task.schedule is not None and (now - tick).total_seconds() > self.catch_up_seconds:
                self._handled[task.name] = tick  # too long ago: wait for the next one
                continue
            try:
                won = await self.store.ticks.claim(task.name, tick, self.worker_id, now)
            except DatabaseError as exc:
                if task.name not in self._failing:  # once per outage, not once per poll
                    self._failing.add(task.name)
                    log.warning(
                        "could not claim a scheduled tick; trying again",
                        extra={
                            "event": "scheduler_claim_failed",
                            "task": task.name,
                            "tick": iso(tick),
                            "error": str(exc),
                        },
                    )
                continue
            if task.name in self._failing:
                self._failing.discard(task.name)
                log.info(
                    "scheduled ticks can be claimed again",
                    extra={"event": "scheduler_claim_recovered", "task": task.name},
                )
            self._handled[task.name] = tick
            if won:
                claimed.append((task, tick))
        return claimed

    async def _execute(self, task: PeriodicTask, tick: dt.datetime) -> None:
        started = time.monotonic()
        try:
            result = await task.run()
        except asyncio.CancelledError:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with asyncio.timeout(2):
                    await self._finish(task, tick, False, "cancelled: the appliance stopped during the run", None)
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.error(
                "scheduled task failed",
                exc_info=exc,
                extra={"event": "scheduled_task_failed", "task": task.name, "tick": iso(tick), "error": error},
            )
            await self._finish(task, tick, False, error, None)
            return
        ms = round((time.monotonic() - started) * 1000, 1)
        log.info(
            "scheduled task ran",
            extra={"event": "scheduled_task_ran", "task": task.name, "tick": iso(tick), "duration_ms": ms},
        )
        await self._finish(task, tick, True, None, _json_safe(result))

    async def _finish(self, task: PeriodicTask, tick: dt.datetime, ok: bool, error: str | None, result: object) -> None:
        try:
            await self.store.ticks.finish(task.name, tick, self.clock.now(), ok, error, result)
        except DatabaseError as exc:
            log.warning(
                "could not record a scheduled run",
                extra={"event": "scheduler_record_failed", "task": task.name, "tick": iso(tick), "error": str(exc)},
            )

    async def run_due(self, now: dt.datetime) -> list[str]:
        """Run every task whose tick at ``now`` is due and not yet claimed by any process.

        Waits for the runs; returns the names of the tasks this process ran (failed runs too:
        they are logged and recorded, never raised).
        """
        claimed = await self._claim_due(now)
        await asyncio.gather(*(self._execute(task, tick) for task, tick in claimed))
        return [task.name for task, _tick in claimed]

    def _sleep_for(self, now: dt.datetime) -> float:
        if not self.tasks:
            return self.poll_seconds
        soonest = min(task.next_tick(now) for task in self.tasks)
        return max(0.01, min(self.poll_seconds, (soonest - now).total_seconds()))

    async def run(self) -> None:
        """Run the schedule until cancelled; each run is a task of its own (``fleetbox.scheduler.<name>``),
        so a long cleanup does not hold up the health checks. Cancelling stops the runs in progress."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                now = self.clock.now()
                try:
                    claimed = await self._claim_due(now)
                except Exception as exc:  # never let the loop die: the schedule is the monitor
                    log.error(
                        "scheduler iteration failed",
                        exc_info=exc,
                        extra={"event": "scheduler_error", "error": f"{type(exc).__name__}: {exc}"},
                    )
                    claimed = []
                for task, tick in claimed:
                    child = loop.create_task(self._execute(task, tick), name=f"fleetbox.scheduler.{task.name}")
                    self._running[task.name] = child
                    child.add_done_callback(functools.partial(self._run_done, task.name))
                await asyncio.sleep(self._sleep_for(self.clock.now()))
        finally:
            children = list(self._running.values())
            for child in children:
                child.cancel()
            if children:
                await asyncio.gather(*children, return_exceptions=True)
            self._running.clear()

    def _run_done(self, name: str, task: asyncio.Task[None]) -> None:
        if self._running.get(name) is task:
            del self._running[name]
        if not task.cancelled() and task.exception() is not None:  # _execute catches; this is a bug
            log.error(
                "scheduled run died", exc_info=task.exception(), extra={"event": "scheduled_task_failed", "task": name}
            )
