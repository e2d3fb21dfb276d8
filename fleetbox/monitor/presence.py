"""Presence: every appliance says, every few seconds, that it is alive, which queues it can run and
which of its background tasks are failing. Everything shared lives in the database, so any
appliance can tell how many live consumers a queue has and raise the alerts for all of them:

- ``no_consumer``: a queue has had due jobs waiting for longer than
  ``monitor.no_consumer_seconds`` (5 minutes) and no live appliance can run it;
- ``task_failing``: a background task of some appliance has been failing (and restarting) for
  longer than ``monitor.task_failing_seconds`` (a minute).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence

from fleetbox.errors import DatabaseError
from fleetbox.models import Clock
from fleetbox.monitor.health import Condition
from fleetbox.store import Store

log = logging.getLogger("fleetbox.presence")

#: An appliance is live while its last beat is younger than this many beat intervals.
LIVE_BEATS = 3


class Presence:
    """This appliance's presence row, and what every appliance's rows say."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock,
        worker_id: str,
        name: str,
        version: str,
        queues: Callable[[], Sequence[str]],
        failing: Callable[[], Mapping[str, str | None]],
        interval_seconds: float,
        no_consumer_seconds: float,
        task_failing_seconds: float,
    ) -> None:
        self._store = store
        self._clock = clock
        self.worker_id = worker_id
        self._name = name
        self._version = version
        self._queues = queues
        self._failing = failing
        self.interval_seconds = interval_seconds
        self.no_consumer_seconds = no_consumer_seconds
        self.task_failing_seconds = task_failing_seconds
        self.started_at = clock.now()
        #: when (by this appliance's clock) each task failing now was first seen failing
        self._failing_since: dict[str, float] = {}

    def configure(self, *, no_consumer_seconds: float, task_failing_seconds: float) -> None:
        """A configuration reload: new alert delays apply to the next check."""
        self.no_consumer_seconds = no_consumer_seconds
        self.task_failing_seconds = task_failing_seconds

    @property
    def _live(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.interval_seconds * LIVE_BEATS)

    async def loop(self) -> None:
        """Beat until cancelled (a failed beat is logged; the next one tries again)."""
        while True:
            try:
                await self.beat()
            except DatabaseError as exc:
                log.warning("presence not recorded", extra={"event": "presence_failed", "error": str(exc)})
            await asyncio.sleep(self.interval_seconds)

    async def beat(self) -> None:
        now = self._clock.now()
        errors = self._failing()
        self._failing_since = {name: self._failing_since.get(name, now.timestamp()) for name in errors}
        failing = {name: {"since": self._failing_since[name], "error": error} for name, error in errors.items()}
        await self._store.appliances.beat(
            self.worker_id, self._name, self._version, self.started_at, now, list(self._queues()), failing
        )

    async def leave(self) -> None:
        """This appliance stops: its queues lose a consumer now, not when its row ages out."""
        try:
            await self._store.appliances.gone(self.worker_id, self._clock.now())
        except DatabaseError as exc:
            log.warning("presence not cleared", extra={"event": "presence_failed", "error": str(exc)})

    async def consumers(self) -> dict[str, int]:
        """Per queue, the live appliances that can run it."""
        counts: dict[str, int] = {}
        for appliance in await self._store.appliances.live(self._clock.now(), self._live):
            for queue in appliance.queues:
                counts[queue] = counts.get(queue, 0) + 1
        return counts

    async def conditions(self) -> list[Condition]:
        """Queues with waiting jobs and no consumer, and tasks failing too long, in any appliance."""
        now = self._clock.now()
        live = await self._store.appliances.live(now, self._live)
        consumed = {q for a in live for q in a.queues}
        out: list[Condition] = []
        counts = await self._store.queues.counts(now, oldest=True)
        for queue, c in counts.items():
            if queue in consumed or c.oldest_due is None:
                continue
            waited = (now - c.oldest_due).total_seconds()
            if waited > self.no_consumer_seconds:
                out.append(
                    Condition(
                        "no_consumer",
                        queue,
                        waited,
                        self.no_consumer_seconds,
                        f"{queue}: {c.waiting + c.retrying} jobs due and no appliance that can run them for "
                        f"{waited:.0f} s (configure a handler for the queue, or start an appliance that has one)",
                    )
                )
        for appliance in live:
            for task, info in appliance.failing.items():
                since = info.get("since") if isinstance(info, dict) else None
                if not isinstance(since, int | float):
                    continue
                failing_for = now.timestamp() - since
                if failing_for > self.task_failing_seconds:
                    error = info.get("error") if isinstance(info, dict) else None
                    out.append(
                        Condition(
                            "task_failing",
                            None,
                            failing_for,
                            self.task_failing_seconds,
                            f"appliance {appliance.name}: task {task} failing for {failing_for:.0f} s: {error}",
                            subject=f"{appliance.name}/{task}",
                        )
                    )
        return out
