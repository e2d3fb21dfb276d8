"""Cron schedules: the spec's scheduled_jobs table and the history of their ticks."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from fleetbox.models import JsonText, Schedule, ScheduleRun
from fleetbox.store.pool import Runner


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleRow:
    """What a schedule is to be (checked by the service): written by :meth:`ScheduleStore.put`."""

    name: str
    queue: str
    cron: str
    data: JsonText
    priority: int
    enabled: bool
    timezone: str
    dst: str
    catch_up: str
    catch_up_max: int
    overlap: str
    alert_after_seconds: float | None
    source: str


class ScheduleStore:
    """The ``scheduled_jobs`` and ``schedule_runs`` tables."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def put(self, row: ScheduleRow, next_run_at: dt.datetime | None, now: dt.datetime, by: str) -> Schedule:
        """Create or change a schedule (its history is kept)."""
        record = await self._run.fetchrow(
            "schedule_upsert",
            row.name,
            row.queue,
            row.cron,
            row.data,
            row.priority,
            row.enabled,
            row.timezone,
            row.dst,
            row.catch_up,
            row.catch_up_max,
            row.overlap,
            row.alert_after_seconds,
            row.source,
            next_run_at,
            now,
            by,
        )
        assert record is not None
        return Schedule.from_row(record)

    async def get(self, name: str, *, lock: bool = False) -> Schedule | None:
        """One schedule (``lock``: until the transaction ends)."""
        record = await self._run.fetchrow("schedule_lock" if lock else "schedule_get", name)
        return None if record is None else Schedule.from_row(record)

    async def all(self) -> list[Schedule]:
        return [Schedule.from_row(r) for r in await self._run.fetch("schedule_list")]

    async def delete(self, name: str) -> bool:
        return await self._run.fetchval("schedule_delete", name) is not None

    async def set_enabled(
        self, name: str, enabled: bool, next_run_at: dt.datetime | None, now: dt.datetime, by: str
    ) -> Schedule | None:
        record = await self._run.fetchrow("schedule_set_enabled", name, enabled, next_run_at, now, by)
        return None if record is None else Schedule.from_row(record)

    async def lock_due(self, now: dt.datetime, limit: int) -> list[Schedule]:
        """Due schedules, locked until the transaction ends (other appliances skip them)."""
        return [Schedule.from_row(r) for r in await self._run.fetch("schedule_lock_due", now, limit)]

    async def next_due(self) -> dt.datetime | None:
        value: dt.datetime | None = await self._run.fetchval("schedule_next_due")
        return value

    async def advance(
        self,
        name: str,
        last_tick: dt.datetime,
        next_run_at: dt.datetime | None,
        last_job_id: int | None,
        now: dt.datetime,
    ) -> None:
        await self._run.execute("schedule_advance", name, last_tick, next_run_at, last_job_id, now)

    async def record_run(
        self, name: str, tick: dt.datetime, fired_at: dt.datetime, outcome: str, job_id: int | None, worker_id: str
    ) -> bool:
        """Record one tick; False when that tick was recorded already (it is not fired again)."""
        return (
            await self._run.fetchval("schedule_run_record", name, tick, fired_at, outcome, job_id, worker_id)
            is not None
        )

    async def runs(self, name: str, limit: int) -> list[ScheduleRun]:
        return [ScheduleRun.from_row(r) for r in await self._run.fetch("schedule_runs_recent", name, limit)]

    async def last_success(self, name: str) -> dt.datetime | None:
        value: dt.datetime | None = await self._run.fetchval("schedule_last_success", name)
        return value

    async def job_state(self, job_id: int) -> str | None:
        """'waiting' or 'running' while the job is in the hot table; None once it finished."""
        value: Any = await self._run.fetchval("job_live_state", job_id)
        return None if value is None else str(value)

    async def clear_waiting(self, job_id: int, now: dt.datetime) -> bool:
        """Clear a waiting job (a running one stays); whether it was cleared."""
        return await self._run.fetchval("job_clear_waiting", job_id, now) is not None
