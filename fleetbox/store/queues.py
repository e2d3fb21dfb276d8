"""Queues: the registry in the database, pause flags, and how many jobs each holds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from fleetbox.models import QueueInfo, RowLike, Tier
from fleetbox.store.pool import Runner


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """Unfinished jobs of one queue by state (the hot table holds only those)."""

    waiting: int = 0
    scheduled: int = 0
    retrying: int = 0
    running: int = 0
    #: run_at of the oldest due waiting job (only :meth:`QueueStore.counts` with ``oldest``)
    oldest_due: dt.datetime | None = None


def _info(row: RowLike) -> QueueInfo:
    return QueueInfo(
        name=row["name"],
        tier=Tier(row["tier"]),
        paused=row["paused"],
        paused_at=row["paused_at"],
        paused_by=row["paused_by"],
    )


class QueueStore:
    """The ``queues`` table and per-queue counts."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def register(self, queues: Iterable[tuple[str, Tier]]) -> None:
        """Record queues (new ones, changed tiers; pause flags are kept) and move the jobs of a
        re-tiered queue along. Run it in a transaction so the registry changes at once."""
        for name, tier in queues:
            await self._run.execute("queue_upsert", name, int(tier))
        await self._run.execute("queue_retier_jobs")

    async def all(self) -> list[QueueInfo]:
        """Every queue, by tier then name."""
        return [_info(r) for r in await self._run.fetch("queue_list")]

    async def get(self, name: str) -> QueueInfo | None:
        row = await self._run.fetchrow("admin_queue_get", name)
        return None if row is None else _info(row)

    async def set_paused(self, name: str, paused: bool, actor: str) -> QueueInfo | None:
        row = await self._run.fetchrow("queue_set_paused", name, paused, actor)
        return None if row is None else _info(row)

    async def counts(self, now: dt.datetime, *, oldest: bool = False) -> dict[str, QueueCounts]:
        """Unfinished jobs per queue by state (one scan of the hot table); ``oldest`` adds the
        run_at of each queue's oldest due job, in the same scan."""
        if oldest:
            return {
                r["queue"]: QueueCounts(
                    int(r["waiting"]), int(r["scheduled"]), int(r["retrying"]), int(r["running"]), r["oldest_due"]
                )
                for r in await self._run.fetch("stream_depth", now)
            }
        return {
            r["queue"]: QueueCounts(int(r["waiting"]), int(r["scheduled"]), int(r["retrying"]), int(r["running"]))
            for r in await self._run.fetch("queue_depth", now)
        }

    async def open_dead_letters(self, *, unreviewed_only: bool = False) -> dict[str, int]:
        """Open dead letters per original queue (only those nobody reviewed yet, if asked)."""
        query = "stream_dead_unreviewed" if unreviewed_only else "dead_letter_depth"
        return {r["queue"]: int(r["dead"]) for r in await self._run.fetch(query)}
