"""The audit trail: the one place where operator actions are written to ``audit_log`` and logged.

Every operator action (enqueue through the API, retry, review, discard, pause, resume, clear,
thresholds, config reload, bulk actions) is recorded by :meth:`Audit.record` inside the
transaction that makes the change, so the row exists exactly when the change does; the log event
``audit.<action>`` is emitted once that transaction has committed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fleetbox.store import Store, Tx
from fleetbox.store.audit import AuditEntry

log = logging.getLogger("fleetbox.audit")


class Audit:
    """Writes and reads the audit trail."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(
        self, tx: Tx | Store, actor: str, action: str, target: str, details: Mapping[str, Any] | None = None
    ) -> None:
        """One action on one target (``<queue>``, ``job:<id>``, ``dead:<id>``, ``thresholds``, ``config``).

        Pass the transaction that makes the change (or the store, for an action that changes
        nothing else in the database).
        """
        details = dict(details or {})
        await tx.audit.write(actor, action, target, details)
        self._after_commit(tx, lambda: _log(actor, action, {"target": target, **details}))

    async def record_many(
        self,
        tx: Tx,
        actor: str,
        action: str,
        targets: Sequence[str],
        details: Sequence[Mapping[str, Any]],
        summary: Mapping[str, Any],
    ) -> None:
        """One row per target (a bulk action), logged as one event with ``summary``."""
        if targets:
            await tx.audit.write_many(actor, action, targets, details)
        self._after_commit(tx, lambda: _log(actor, f"{action}_bulk", {"count": len(targets), **summary}))

    @staticmethod
    def _after_commit(tx: Tx | Store, emit: Any) -> None:
        if isinstance(tx, Tx):
            tx.on_commit(emit)
        else:
            emit()

    async def trail(self, target: str) -> list[AuditEntry]:
        """Every action on one target, oldest first."""
        return await self._store.audit.for_target(target)


#: Attributes of a log record: a detail of the same name is logged as ``detail_<name>``.
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "event", "actor"}


def _log(actor: str, action: str, fields: Mapping[str, Any]) -> None:
    extra = {f"detail_{k}" if k in _RESERVED else k: v for k, v in fields.items()}
    log.info(f"operator action {action}", extra={"event": f"audit.{action}", "actor": actor, **extra})
