"""Retention: keep every table that grows with traffic small.

Completed jobs (succeeded, or cleared by an operator) move from ``jobs_done`` to ``jobs_archive``
once they finished more than ``retention.archive_hours`` ago (QUEUE_ARCHIVE_HOURS), and leave the
archive, with their attempts, ``retention.delete_days`` after they were archived
(QUEUE_DELETE_DAYS), with what they created in Graph (``graph_effects``); received webhook
notifications go after ``delete_days`` too. Dead-lettered jobs are never archived or deleted here:
their ``jobs_done`` rows, attempts and dead letters stay until an operator acts. Statistics
snapshots and scheduler tick records older than ``monitor.stats_keep_days`` are deleted.

Every statement handles one batch (``retention.batch`` rows) in its own transaction, found
through a BRIN index on the time column, so a run costs what it moves, never a scan of the
whole table, and never holds long locks.
"""

from __future__ import annotations

import datetime as dt
import logging

from fleetbox import rules
from fleetbox.errors import InvalidInput
from fleetbox.store import Store
from fleetbox.store.retention import Prunable

log = logging.getLogger("fleetbox.retention")


def _check(older_than: dt.datetime, batch: int) -> None:
    if not isinstance(older_than, dt.datetime) or older_than.tzinfo is None:
        raise InvalidInput("must be a datetime with a time zone", field="older_than")
    if not rules.is_int(batch) or batch < 1:
        raise InvalidInput(f"must be a positive integer, got {batch!r}", field="batch")


class Retention:
    """The retention runs (the schedule calls them; so can an operator's script)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def archive_completed(self, *, older_than: dt.datetime, now: dt.datetime, batch: int = 10_000) -> int:
        """Move completed jobs that finished before ``older_than`` into ``jobs_archive``.

        Succeeded and cleared jobs only (dead-lettered ones stay). Batches of ``batch`` rows, each
        its own transaction; ``now`` is stored as their ``archived_at``, which
        :meth:`delete_archived` goes by. Returns the number of jobs moved.
        """
        _check(older_than, batch)
        total = 0
        while True:
            moved = await self._store.retention.archive_batch(older_than, batch, now)
            total += moved
            if moved < batch:
                break
        log.info(
            "completed jobs archived",
            extra={"event": "jobs_archived", "count": total, "finished_before": older_than.isoformat()},
        )
        return total

    async def delete_archived(self, *, older_than: dt.datetime, batch: int = 10_000) -> int:
        """Delete archived jobs archived before ``older_than``, with their attempts; how many jobs."""
        _check(older_than, batch)
        jobs = attempts = 0
        while True:
            deleted, their_attempts = await self._store.retention.delete_archived_batch(older_than, batch)
            jobs += deleted
            attempts += their_attempts
            if deleted < batch:
                break
        log.info(
            "archived jobs deleted",
            extra={
                "event": "archive_deleted",
                "count": jobs,
                "attempts": attempts,
                "archived_before": older_than.isoformat(),
            },
        )
        return jobs

    async def prune(self, table: Prunable, *, older_than: dt.datetime, batch: int = 10_000) -> int:
        """Delete the rows of ``table`` older than ``older_than`` in batches; how many."""
        _check(older_than, batch)
        total = 0
        while True:
            deleted = await self._store.retention.delete_batch(table, older_than, batch)
            total += deleted
            if deleted < batch:
                break
        log.info(
            "old rows deleted",
            extra={
                "event": "rows_pruned",
                "table": table.name.lower(),
                "count": total,
                "before": older_than.isoformat(),
            },
        )
        return total
