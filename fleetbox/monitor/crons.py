"""The cron loop of an appliance: fires the due schedules (every appliance runs one; each tick
fires once across all of them) and turns late schedules into dead-man alerts."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from fleetbox.errors import DatabaseError
from fleetbox.models import Clock
from fleetbox.monitor.health import Condition
from fleetbox.service.schedules import Schedules

log = logging.getLogger("fleetbox.schedules")

#: The longest sleep between two looks at the schedules (a schedule added elsewhere, a reload).
LOOK_EVERY = 1.0


class CronRunner:
    """Fires due schedules until cancelled."""

    def __init__(self, schedules: Schedules, *, clock: Clock, worker_id: str) -> None:
        self._schedules = schedules
        self._clock = clock
        self._worker_id = worker_id

    async def loop(self) -> None:
        failing = False
        while True:
            try:
                next_due = await self._schedules.fire_due(worker_id=self._worker_id)
                failing = False
            except DatabaseError as exc:
                if not failing:  # once per outage
                    log.warning(
                        "schedules not fired; trying again", extra={"event": "schedules_failed", "error": str(exc)}
                    )
                failing = True
                next_due = None
            await asyncio.sleep(self._sleep(next_due))

    def _sleep(self, next_due: dt.datetime | None) -> float:
        if next_due is None:
            return LOOK_EVERY
        return max(0.01, min(LOOK_EVERY, (next_due - self._clock.now()).total_seconds()))

    async def conditions(self) -> list[Condition]:
        """A ``schedule_late`` alert for each schedule whose jobs have not succeeded within its window."""
        return [
            Condition(
                "schedule_late",
                None,
                late.seconds,
                late.threshold,
                f"schedule {late.name}: no job succeeded for {late.seconds:.0f} s "
                f"(alert_after_seconds {late.threshold:g})",
                subject=f"schedule:{late.name}",
            )
            for late in await self._schedules.late()
        ]
