"""What the live stream's sampler reads, once a second at most while someone is subscribed.

Every read is an index range bounded by what happened since the previous sample (or in the last
minute); the depth counts the hot jobs table (``QueueStore.counts``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from fleetbox.store.pool import Runner


@dataclass(frozen=True, slots=True)
class Second:
    """A queue's attempts that finished in one second."""

    queue: str
    #: seconds since the epoch
    sec: int
    done: int
    failed: int
    avg_ms: float | None


@dataclass(frozen=True, slots=True)
class NewDeadLetter:
    id: int
    queue: str


class StreamStore:
    """The stream's per-second figures and new dead letters."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def seconds(self, since: dt.datetime) -> list[Second]:
        """Attempts per queue and second that finished at or after ``since``."""
        return [
            Second(
                r["queue"],
                int(r["sec"]),
                int(r["done"]),
                int(r["failed"]),
                None if r["avg_ms"] is None else float(r["avg_ms"]),
            )
            for r in await self._run.fetch("stream_seconds", since)
        ]

    async def p95(self, since: dt.datetime, most: int) -> dict[str, float | None]:
        """Per queue, the 95th percentile duration of its latest (at most ``most``) attempts since ``since``."""
        return {
            r["queue"]: None if r["p95_ms"] is None else float(r["p95_ms"])
            for r in await self._run.fetch("stream_p95", since, most)
        }

    async def last_dead_letter_id(self) -> int:
        return int(await self._run.fetchval("stream_dead_last_id"))

    async def dead_letters_after(self, after_id: int, limit: int) -> list[NewDeadLetter]:
        return [
            NewDeadLetter(int(r["id"]), r["queue"]) for r in await self._run.fetch("stream_dead_after", after_id, limit)
        ]
