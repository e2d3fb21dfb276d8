"""The shared schedule: each (task, tick) is claimed by one process across every appliance."""

from __future__ import annotations

import datetime as dt

from fleetbox.store.pool import Runner


class TickStore:
    """The ``scheduler_ticks`` table."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def claim(self, task: str, tick: dt.datetime, worker_id: str, started: dt.datetime) -> bool:
        """Claim a tick; True only for the one process whose claim went in."""
        return await self._run.fetchval("scheduler_claim", task, tick, worker_id, started) is not None

    async def finish(
        self, task: str, tick: dt.datetime, finished: dt.datetime, ok: bool, error: str | None, result: object
    ) -> None:
        """Record how a claimed run went (``result`` is stored as JSON)."""
        await self._run.execute("scheduler_finish", task, tick, finished, ok, error, result)
