"""Job dependencies and workflows: blocked jobs, their edges, results, and cancellations.

The release of a blocked job happens in the completion statements (``complete.sql``) through the
SQL function ``settle_parents``; this store offers the other ways in and out: enqueue after
parents, a workflow's jobs in bulk, an operator's skip or cancellation, and the reads that show a
job's parents and children.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fleetbox.models import JsonText, Tier
from fleetbox.store.pool import Runner


@dataclass(frozen=True, slots=True)
class Link:
    """One dependency seen from one side: the other job, where it is, and the edge's state."""

    job_id: int
    #: where the other job is now: blocked, waiting, scheduled, retrying, running, succeeded, dead,
    #: cleared or cancelled (None: deleted by retention)
    state: str | None
    #: None while the parent is unresolved; succeeded, skipped, ignored or failed after
    edge: str | None
    #: the other job's step name, when it is a workflow step
    step: str | None


@dataclass(frozen=True, slots=True)
class WorkflowRow:
    id: int
    name: str
    created_at: dt.datetime
    cancelled_at: dt.datetime | None
    cancelled_by: str | None


@dataclass(frozen=True, slots=True)
class StepRow:
    step: str
    job_id: int
    state: str | None


@dataclass(frozen=True, slots=True)
class Cancellation:
    """Why a job was cancelled before it ran."""

    job_id: int
    cancelled_at: dt.datetime
    reason: str
    #: the failed parent that caused it (None: an operator cancelled it)
    parent_id: int | None
    actor: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewStep:
    """A checked workflow step ready to be written."""

    id: int
    queue: str
    tier: Tier
    data: JsonText
    priority: int
    run_at: dt.datetime
    max_attempts: int | None
    #: parents in the workflow (0: ready at once)
    pending: int
    on_failure: str
    #: whether a later step depends on it
    has_dependents: bool


class DependencyStore:
    """The tables of 0016_dependencies.sql."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def enqueue_after(
        self,
        queue: str,
        data: JsonText,
        parents: Sequence[int],
        on_failure: str,
        priority: int,
        run_at: dt.datetime,
        max_attempts: int | None,
    ) -> int:
        """One job that waits for ``parents`` (the SQL function finds and locks each one; an
        unknown or already failed parent raises InvalidInput naming it). Its id."""
        value = await self._run.fetchval(
            "deps_enqueue_after", queue, data, list(parents), on_failure, priority, run_at, max_attempts, None
        )
        return int(value)

    async def reserve_ids(self, count: int) -> list[int]:
        ids: list[int] = await self._run.fetchval("deps_reserve_ids", count)
        return ids

    async def create_workflow(self, name: str, now: dt.datetime) -> int:
        return int(await self._run.fetchval("deps_workflow_create", name, now))

    async def insert_workflow(
        self, workflow_id: int, steps: Sequence[tuple[str, NewStep]], edges: Sequence[tuple[int, int]]
    ) -> None:
        """A workflow's jobs (ready or blocked), its edges (parent, child) and its step names."""
        ready = [s for _n, s in steps if s.pending == 0]
        blocked = [s for _n, s in steps if s.pending > 0]
        if ready:
            await self._run.execute(
                "deps_insert_ready",
                [s.id for s in ready],
                [s.queue for s in ready],
                [s.priority for s in ready],
                [s.run_at for s in ready],
                [s.data for s in ready],
                [s.max_attempts for s in ready],
                [s.has_dependents for s in ready],
            )
        if blocked:
            await self._run.execute(
                "deps_insert_blocked",
                [s.id for s in blocked],
                [s.queue for s in blocked],
                [s.priority for s in blocked],
                [s.run_at for s in blocked],
                [s.data for s in blocked],
                [s.max_attempts for s in blocked],
                [s.has_dependents for s in blocked],
                [s.pending for s in blocked],
                [s.on_failure for s in blocked],
                workflow_id,
            )
        if edges:
            await self._run.execute("deps_insert_edges", [p for p, _c in edges], [c for _p, c in edges])
        await self._run.execute("deps_workflow_steps", workflow_id, [n for n, _s in steps], [s.id for _n, s in steps])

    async def workflow(self, workflow_id: int, *, lock: bool = False) -> WorkflowRow | None:
        row = await self._run.fetchrow("deps_workflow_lock" if lock else "deps_workflow_get", workflow_id)
        return None if row is None else WorkflowRow(*row)

    async def mark_workflow_cancelled(self, workflow_id: int, actor: str, now: dt.datetime) -> None:
        await self._run.execute("deps_workflow_mark_cancelled", workflow_id, now, actor)

    async def workflow_steps(self, workflow_id: int, now: dt.datetime) -> list[StepRow]:
        return [StepRow(*r) for r in await self._run.fetch("deps_workflow_step_states", workflow_id, now)]

    async def cancel_waiting(self, ids: Sequence[int], reason: str, actor: str, now: dt.datetime) -> list[int]:
        """Cancel jobs waiting in the hot table (running ones are left to finish); the ids cancelled."""
        return [r[0] for r in await self._run.fetch("deps_cancel_waiting", list(ids), reason, actor, now)]

    async def cancel_blocked(self, ids: Sequence[int], reason: str, actor: str, now: dt.datetime) -> list[int]:
        """Cancel blocked jobs; the ids cancelled (ones no longer blocked are left alone)."""
        return list(await self._run.fetchval("deps_cancel_blocked", list(ids), reason, actor, now))

    async def settle(
        self,
        parents: Sequence[int],
        outcome: str,
        now: dt.datetime,
        result_ids: Sequence[int] = (),
        results: Sequence[JsonText] = (),
    ) -> int:
        """Settle the dependents of finished parents (``succeeded``, ``skipped`` or ``failed``);
        how many were released (now waiting)."""
        return int(
            await self._run.fetchval("deps_settle", list(parents), outcome, list(result_ids), list(results), now)
        )

    async def follow_retries(self, dead_letter_ids: Sequence[int]) -> int:
        """Held dependents of retried dead letters now wait on the new jobs; how many edges moved."""
        return int(await self._run.fetchval("deps_follow_retries", list(dead_letter_ids)))

    async def store_result(self, job_id: int, result: JsonText, actor: str, now: dt.datetime) -> None:
        await self._run.execute("deps_store_result", job_id, result, actor, now)

    async def result(self, job_id: int) -> tuple[bool, Any]:
        """(whether the job has a result, the result)."""
        row = await self._run.fetchrow("deps_result", job_id)
        return (False, None) if row is None else (True, row[0])

    async def parents(self, job_id: int, now: dt.datetime) -> list[Link]:
        rows = await self._run.fetch("deps_parents", job_id, now)
        return [Link(r["job_id"], r["state"], r["edge"], r["step"]) for r in rows]

    async def children(self, job_id: int, now: dt.datetime) -> list[Link]:
        rows = await self._run.fetch("deps_children", job_id, now)
        return [Link(r["job_id"], r["state"], r["edge"], r["step"]) for r in rows]

    async def held_by(self, job_id: int) -> list[int]:
        """The blocked jobs still waiting on ``job_id``."""
        return [r[0] for r in await self._run.fetch("deps_held_by", job_id)]

    async def blocked_below(self, job_ids: Sequence[int]) -> list[int]:
        """Every blocked job below these in the graph."""
        return [r[0] for r in await self._run.fetch("deps_descendants_blocked", list(job_ids))]

    async def cancellation(self, job_id: int) -> Cancellation | None:
        row = await self._run.fetchrow("deps_cancellation", job_id)
        return None if row is None else Cancellation(*row)

    async def blocked_count(self) -> int:
        return int(await self._run.fetchval("deps_blocked_count"))
