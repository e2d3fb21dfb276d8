"""Retry experiments: the weights of each queue's retry variants over time (``retry_experiments``),
and the finished jobs a report counts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleetbox.store.pool import Runner


@dataclass(frozen=True, slots=True)
class Epoch:
    """The weights of a queue's variants from ``started_at`` on (empty: no experiment)."""

    queue: str
    started_at: dt.datetime
    weights: dict[str, float]
    source: str
    reason: str | None
    actor: str | None


@dataclass(frozen=True, slots=True)
class FinishedJob:
    """What a report needs of one finished job."""

    id: int
    data: dict[str, Any]
    state: str
    attempts: int
    created_at: dt.datetime
    finished_at: dt.datetime


class ExperimentStore:
    """The ``retry_experiments`` table, and finished jobs by queue."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def epochs(self) -> list[Epoch]:
        """Every epoch of every queue, oldest first (a handful of rows per queue)."""
        rows = await self._run.fetch("experiment_epochs")
        return [
            Epoch(r["queue"], r["started_at"], dict(r["weights"]), r["source"], r["reason"], r["actor"]) for r in rows
        ]

    async def add(
        self,
        queue: str,
        started_at: dt.datetime,
        weights: Mapping[str, float],
        *,
        source: str,
        reason: str | None,
        actor: str | None,
    ) -> None:
        await self._run.execute("experiment_add", queue, started_at, dict(weights), source, reason, actor)

    async def finished_jobs(self, queue: str, since: dt.datetime, limit: int) -> list[FinishedJob]:
        """Jobs of ``queue`` created since ``since`` that succeeded or were dead-lettered, newest
        first, at most ``limit``."""
        rows = await self._run.fetch("experiment_finished_jobs", queue, since, limit)
        return [
            FinishedJob(r["id"], r["data"], r["state"], r["attempts"], r["created_at"], r["finished_at"]) for r in rows
        ]
