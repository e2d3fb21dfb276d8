"""Cron schedules: managed from the config file, the CLI, the API, the TUI; fired exactly once per
tick whatever the number of appliances.

Firing (:meth:`Schedules.fire_due`, called by every appliance's cron loop): each due schedule is
taken under its row lock (other appliances skip it), its ticks since the last one are worked out
by :mod:`fleetbox.cron` (time zone and DST rules), each tick is recorded once in schedule_runs and,
by the schedule's policies, enqueued, skipped or dropped, and the schedule moves on, all in one
transaction. A tick is an instant of the schedule, not of anyone's clock: two appliances whose
clocks disagree still fire it once.

- ``catch_up``: ticks older than ``MISSED_AFTER`` when they are seen (no appliance ran) are
  ``none``: dropped, ``latest``: the latest of them runs, ``all``: each runs (up to
  ``catch_up_max``). Every dropped tick is recorded as ``missed``.
- ``overlap``, when the schedule's previous job is still waiting or running: ``allow`` enqueues
  anyway, ``skip`` records the tick as skipped, ``queue`` holds the tick until the previous job has
  finished, ``cancel_previous`` clears the previous job if it is still waiting (a running one is
  never interrupted: the new run is enqueued beside it).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fleetbox import cron, rules
from fleetbox.errors import InvalidInput, NotFound
from fleetbox.models import CatchUp, Clock, JsonText, Overlap, Schedule, ScheduleRun
from fleetbox.redaction import Redaction
from fleetbox.service.audit import Audit
from fleetbox.service.enqueue import Enqueuer
from fleetbox.store import Store, Tx
from fleetbox.store.schedules import ScheduleRow

log = logging.getLogger("fleetbox.schedules")

#: A tick seen later than this (no appliance was running at its time) is a missed one.
MISSED_AFTER = dt.timedelta(seconds=60)
#: Schedules fired per pass of the loop (the rest on the next pass).
FIRE_BATCH = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleSpec:
    """A schedule as an operator writes it (config file, CLI, API): checked by :meth:`Schedules.check`."""

    name: str
    cron: str
    queue: str
    data: Mapping[str, Any]
    timezone: str = "UTC"
    priority: int = 5
    enabled: bool = True
    dst: str = "once"
    catch_up: str = CatchUp.LATEST.value
    catch_up_max: int = 100
    overlap: str = Overlap.ALLOW.value
    alert_after_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Late:
    """A schedule whose jobs have not succeeded within its alert window."""

    name: str
    seconds: float
    threshold: float


class Schedules:
    """Cron schedules over one store."""

    def __init__(
        self, store: Store, audit: Audit, enqueuer: Enqueuer, *, clock: Clock, redaction: Redaction | None = None
    ) -> None:
        self._store = store
        self._audit = audit
        self._enqueue = enqueuer
        self._clock = clock
        self._failing: set[str] = set()
        #: a schedule's payload is its queue's: what is read here leaves masked the same way
        self.redaction = redaction or Redaction.of()

    def _masked(self, schedule: Schedule) -> Schedule:
        data = self.redaction.mask(schedule.queue, schedule.data)
        return schedule if data is schedule.data else replace(schedule, data=data)

    # -- checking ----------------------------------------------------------------------------

    async def check(self, spec: ScheduleSpec, *, source: str) -> ScheduleRow:
        """Every value of a schedule, named when wrong (the queue must take jobs, the payload
        pass the same rules as any enqueue)."""
        if not rules.valid_queue_name(spec.name):
            raise InvalidInput(f"must be 1-63 of a-z, 0-9, '-', '_', '.', got {spec.name!r:.80}", field="name")
        expression = cron.check(spec.cron)
        cron.zone(spec.timezone)
        tier = await self._enqueue.tier(spec.queue)
        row = self._enqueue.check(spec.queue, tier, spec.data, spec.priority, None, None, None, None)
        try:
            dst = cron.DstPolicy(spec.dst).value
            catch_up = CatchUp(spec.catch_up).value
            overlap = Overlap(spec.overlap).value
        except ValueError as exc:
            field = "dst" if "DstPolicy" in str(exc) else "catch_up" if "CatchUp" in str(exc) else "overlap"
            raise InvalidInput(f"not a choice: {exc}", field=field) from None
        if not rules.is_int(spec.catch_up_max) or not 1 <= spec.catch_up_max <= 10_000:
            raise InvalidInput("must be an integer from 1 to 10000", field="catch_up_max")
        if spec.alert_after_seconds is not None and not (
            isinstance(spec.alert_after_seconds, int | float) and 0 < spec.alert_after_seconds <= 366 * 86400
        ):
            raise InvalidInput("must be a number of seconds from 1 to a year", field="alert_after_seconds")
        if not isinstance(spec.enabled, bool):
            raise InvalidInput("must be true or false", field="enabled")
        return ScheduleRow(
            name=spec.name,
            queue=spec.queue,
            cron=expression,
            data=row.data,
            priority=row.priority,
            enabled=spec.enabled,
            timezone=spec.timezone,
            dst=dst,
            catch_up=catch_up,
            catch_up_max=spec.catch_up_max,
            overlap=overlap,
            alert_after_seconds=spec.alert_after_seconds,
            source=source,
        )

    # -- managing ------------------------------------------------------------------------------

    async def put(self, spec: ScheduleSpec, *, actor: str, source: str = "api") -> Schedule:
        """Create or change a schedule; it runs from its next tick after now."""
        row = await self.check(spec, source=source)
        now = self._clock.now()
        first = self._next(row.cron, row.timezone, row.dst, now) if row.enabled else None
        async with self._store.transaction() as tx:
            schedule = await tx.schedules.put(row, first, now, actor)
            await self._audit.record(
                tx,
                actor,
                "schedule.put",
                f"schedule:{row.name}",
                {"cron": row.cron, "queue": row.queue, "timezone": row.timezone},
            )
        return self._masked(schedule)

    async def get(self, name: str) -> Schedule:
        """A schedule (its payload masked by its queue's redaction policy)."""
        schedule = await self._store.schedules.get(name)
        if schedule is None:
            raise NotFound(f"no schedule {name!r:.80}")
        return self._masked(schedule)

    async def all(self) -> list[Schedule]:
        """Every schedule (payloads masked by their queues' redaction policies)."""
        return [self._masked(s) for s in await self._store.schedules.all()]

    async def remove(self, name: str, *, actor: str) -> None:
        async with self._store.transaction() as tx:
            if not await tx.schedules.delete(name):
                raise NotFound(f"no schedule {name!r:.80}")
            await self._audit.record(tx, actor, "schedule.remove", f"schedule:{name}")

    async def set_enabled(self, name: str, enabled: bool, *, actor: str) -> Schedule:
        """Pause (``enabled`` false) or resume a schedule; resumed, it runs from its next tick."""
        current = await self.get(name)
        now = self._clock.now()
        first = self._next(current.cron, current.timezone, current.dst, now) if enabled else None
        async with self._store.transaction() as tx:
            schedule = await tx.schedules.set_enabled(name, enabled, first, now, actor)
            if schedule is None:
                raise NotFound(f"no schedule {name!r:.80}")
            await self._audit.record(tx, actor, "schedule.resume" if enabled else "schedule.pause", f"schedule:{name}")
        return self._masked(schedule)

    async def run_now(self, name: str, *, actor: str) -> int:
        """Enqueue the schedule's job now, outside its ticks; returns the job's id."""
        now = self._clock.now()
        async with self._store.transaction() as tx:
            schedule = await tx.schedules.get(name, lock=True)
            if schedule is None:
                raise NotFound(f"no schedule {name!r:.80}")
            job_id = await self._enqueue_job(tx, schedule, now)
            await tx.schedules.record_run(name, now, now, "enqueued", job_id, f"run-now:{actor}")
            await self._audit.record(tx, actor, "schedule.run", f"schedule:{name}", {"job_id": job_id})
        return job_id

    async def upcoming(self, name: str, count: int) -> list[cron.Tick]:
        """The next ``count`` ticks of a schedule, with what DST did to each."""
        if not rules.is_int(count) or not 1 <= count <= 1000:
            raise InvalidInput("must be an integer from 1 to 1000", field="next")
        schedule = await self.get(name)
        return cron.ticks(
            schedule.cron,
            cron.zone(schedule.timezone),
            after=self._clock.now(),
            count=count,
            dst=cron.DstPolicy(schedule.dst),
        )

    async def runs(self, name: str, limit: int = 20) -> list[ScheduleRun]:
        """The latest ticks of a schedule and what happened at each."""
        await self.get(name)
        return await self._store.schedules.runs(name, limit)

    async def apply_config(self, specs: Sequence[ScheduleSpec]) -> None:
        """The [[schedules]] of the config file (at start and on reload): each one is created or
        changed; a schedule that came from the config and is gone from it is removed. Schedules
        made through the CLI or the API are left alone."""
        names = {s.name for s in specs}
        for spec in specs:
            current = await self._store.schedules.get(spec.name)
            row = await self.check(spec, source="config")
            if current is not None and _same(current, row):
                continue  # unchanged: keep its place in time
            await self.put(spec, actor="config", source="config")
        for schedule in await self._store.schedules.all():
            if schedule.source == "config" and schedule.name not in names:
                await self.remove(schedule.name, actor="config")

    # -- firing --------------------------------------------------------------------------------

    async def fire_due(self, *, worker_id: str) -> dt.datetime | None:
        """Fire every due schedule (each in its own transaction); returns when the next is due."""
        now = self._clock.now()
        for _ in range(FIRE_BATCH):
            failed: tuple[str, InvalidInput] | None = None
            try:
                async with self._store.transaction() as tx:
                    due = await tx.schedules.lock_due(now, 1)
                    if not due:
                        break
                    name = due[0].name
                    await self._fire(tx, due[0], now, worker_id)
            except InvalidInput as exc:
                failed = (name, exc)
            if failed is not None:
                # The queue went away or its payload no longer passes: the schedule cannot fire.
                # It is paused, so it does not fail every second, and the operator is told.
                await self._store.schedules.set_enabled(failed[0], False, None, now, "fleetbox")
                log.error(
                    "schedule paused: its job cannot be enqueued",
                    extra={"event": "schedule_paused_failing", "schedule": failed[0], "error": str(failed[1])},
                )
        return await self._store.schedules.next_due()

    async def _fire(self, tx: Tx, schedule: Schedule, now: dt.datetime, worker_id: str) -> None:
        tz = cron.zone(schedule.timezone)
        policy = cron.DstPolicy(schedule.dst)
        # The last tick dealt with; a schedule never fired starts from when it was made.
        after = schedule.last_tick or schedule.created_at
        due = cron.ticks(schedule.cron, tz, after=after, until=now, dst=policy)
        missed = [t.at for t in due if now - t.at > MISSED_AFTER]
        current = [t.at for t in due if now - t.at <= MISSED_AFTER]
        if schedule.catch_up is CatchUp.ALL:
            run, dropped = missed[-schedule.catch_up_max :] + current, missed[: -schedule.catch_up_max]
        elif schedule.catch_up is CatchUp.LATEST and missed and not current:
            run, dropped = missed[-1:], missed[:-1]
        else:
            run, dropped = current, missed
        for tick in dropped:
            await tx.schedules.record_run(schedule.name, tick, now, "missed", None, worker_id)
        if dropped:
            log.warning(
                "schedule ticks missed while no appliance ran",
                extra={
                    "event": "schedule_missed",
                    "schedule": schedule.name,
                    "count": len(dropped),
                    "catch_up": schedule.catch_up.value,
                },
            )
        last_tick = dropped[-1] if dropped else schedule.last_tick
        last_job = schedule.last_job_id
        for tick in run:
            state = await tx.schedules.job_state(last_job) if last_job is not None else None
            if state is not None and schedule.overlap is Overlap.QUEUE:
                break  # held: this tick waits until the previous run has finished
            outcome, job_id = "enqueued", None
            if state is not None and schedule.overlap is Overlap.SKIP:
                outcome = "skipped"
            else:
                if state == "waiting" and schedule.overlap is Overlap.CANCEL_PREVIOUS:
                    assert last_job is not None
                    await tx.schedules.clear_waiting(last_job, now)
                job_id = await self._enqueue_job(tx, schedule, now)
                last_job = job_id
            if await tx.schedules.record_run(schedule.name, tick, now, outcome, job_id, worker_id):
                fields = {"schedule": schedule.name, "tick": tick.isoformat(), "outcome": outcome, "job_id": job_id}
                log.info("schedule fired", extra={"event": "schedule_fired", **fields})
            last_tick = tick
        if last_tick is None:
            return  # held at its first tick
        upcoming = cron.ticks(schedule.cron, tz, after=last_tick, count=1, dst=policy)
        await tx.schedules.advance(schedule.name, last_tick, upcoming[0].at if upcoming else None, last_job, now)

    async def _enqueue_job(self, tx: Tx, schedule: Schedule, now: dt.datetime) -> int:
        data = JsonText(rules.encode_payload(schedule.data, self._enqueue.limits))
        result = await tx.jobs.enqueue(schedule.queue, data, schedule.priority, now, None, None)
        return result.id

    # -- the dead-man alert --------------------------------------------------------------------

    async def late(self) -> list[Late]:
        """Enabled schedules with an alert window whose jobs have not succeeded within it."""
        now = self._clock.now()
        out = []
        for schedule in await self._store.schedules.all():
            if not schedule.enabled or schedule.alert_after_seconds is None:
                continue
            since = await self._store.schedules.last_success(schedule.name) or schedule.created_at
            waited = (now - since).total_seconds()
            if waited > schedule.alert_after_seconds:
                out.append(Late(schedule.name, waited, schedule.alert_after_seconds))
        return out

    @staticmethod
    def _next(expression: str, timezone: str, dst: str, now: dt.datetime) -> dt.datetime:
        return cron.next_tick(expression, cron.zone(timezone), now, cron.DstPolicy(dst)).at


def _same(current: Schedule, row: ScheduleRow) -> bool:
    return (
        current.queue,
        current.cron,
        current.timezone,
        current.priority,
        current.enabled,
        current.dst,
        current.catch_up.value,
        current.catch_up_max,
        current.overlap.value,
        current.alert_after_seconds,
        current.data,
    ) == (
        row.queue,
        row.cron,
        row.timezone,
        row.priority,
        row.enabled,
        row.dst,
        row.catch_up,
        row.catch_up_max,
        row.overlap,
        row.alert_after_seconds,
        json.loads(row.data),
    )
