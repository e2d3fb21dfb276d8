"""Appliances on this database: presence, the queues each can run, the tasks failing in each."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fleetbox.store.pool import Runner


@dataclass(frozen=True, slots=True)
class Presence:
    """An appliance's last word: who, since when, what it can run and what is failing in it."""

    worker_id: str
    name: str
    version: str
    started_at: dt.datetime
    seen_at: dt.datetime
    queues: tuple[str, ...]
    #: task name -> {"since": epoch seconds, "error": text}
    failing: Mapping[str, Any]


class ApplianceStore:
    """The ``appliances`` table."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def beat(
        self,
        worker_id: str,
        name: str,
        version: str,
        started: dt.datetime,
        now: dt.datetime,
        queues: Sequence[str],
        failing: Mapping[str, Any],
    ) -> None:
        """This appliance is alive, runs ``queues``, and these tasks are failing in it."""
        await self._run.execute("appliance_beat", worker_id, name, version, started, now, list(queues), dict(failing))

    async def gone(self, worker_id: str, now: dt.datetime) -> None:
        """This appliance stopped (its queues lose a consumer at once, not after it ages out)."""
        await self._run.execute("appliance_gone", worker_id, now)

    async def live(self, now: dt.datetime, seen_within: dt.timedelta) -> list[Presence]:
        """The appliances seen within ``seen_within`` that have not stopped."""
        rows = await self._run.fetch("appliances_live", now - seen_within)
        return [
            Presence(
                worker_id=r["worker_id"],
                name=r["name"],
                version=r["version"],
                started_at=r["started_at"],
                seen_at=r["seen_at"],
                queues=tuple(r["queues"]),
                failing=r["failing"] or {},
            )
            for r in rows
        ]

    async def prune(self, before: dt.datetime) -> int:
        """Forget appliances not seen since ``before`` (stopped or dead long ago); how many."""
        return len(await self._run.fetch("appliances_prune", before))
