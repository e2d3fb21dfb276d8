"""The audit log: who did what to which queue, job or dead letter, and when."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fleetbox.store.pool import Runner


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One operator action."""

    id: int
    at: dt.datetime
    actor: str
    action: str
    #: ``<queue>``, ``job:<id>``, ``dead:<id>``, ``thresholds`` or ``config``
    target: str
    details: Mapping[str, Any]
    #: what the target concerns, where it can be found (the live stream's events)
    queue: str | None = None
    job_id: int | None = None
    dead_letter_id: int | None = None


class AuditStore:
    """The ``audit_log`` table (written only by fleetbox.service.audit)."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def write(self, actor: str, action: str, target: str, details: Mapping[str, Any]) -> None:
        await self._run.execute("audit", actor, action, target, dict(details))

    async def write_many(
        self, actor: str, action: str, targets: Sequence[str], details: Sequence[Mapping[str, Any]]
    ) -> None:
        await self._run.execute("admin_audit_many", actor, action, list(targets), [dict(d) for d in details])

    async def for_target(self, target: str) -> list[AuditEntry]:
        """Every action on one target, oldest first."""
        rows = await self._run.fetch("audit_for_target", target)
        return [_entry(r) for r in rows]

    async def last_id(self) -> int:
        return int(await self._run.fetchval("stream_audit_last_id"))

    async def after(self, after_id: int, limit: int) -> list[AuditEntry]:
        """Actions after ``after_id`` in id order, with the queue, job and dead letter they concern."""
        rows = await self._run.fetch("stream_audit_after", after_id, limit)
        return [_entry(r, queue=r["queue"], job_id=r["job_id"], dead_letter_id=r["dead_id"]) for r in rows]


def _entry(row: Any, **extra: Any) -> AuditEntry:
    details = row["details"]
    return AuditEntry(
        id=row["id"],
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        target=row["target"],
        details=details if isinstance(details, dict) else {},
        **extra,
    )
