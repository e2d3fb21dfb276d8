"""Retention: keep the finished-job tables small.

Completed jobs (succeeded, or cleared by an operator) move from ``jobs_done`` to ``jobs_archive``
once they finished more than ``retention.archive_hours`` ago (QUEUE_ARCHIVE_HOURS), and leave the
archive, with their attempts, ``retention.delete_days`` after they were archived
(QUEUE_DELETE_DAYS), with what they created in Graph (``graph_effects``); received webhook
notifications go after ``delete_days`` too. Dead-lettered jobs are never archived or deleted here: their ``jobs_done``
rows, attempts and dead letters stay until an operator acts. Statistics snapshots and scheduler
tick records older than ``monitor.stats_keep_days`` are deleted.

Every statement handles one batch (``retention.batch`` rows) in its own transaction, found
through a BRIN index on the time column, so a run costs what it moves, never a scan of the
whole table, and never holds long locks.
"""

from __future__ import annotations

import datetime as dt
import logging

from fleetbox.db import Database
from fleetbox.errors import InvalidInput

log = logging.getLogger("fleetbox.retention")


def _check(older_than: dt.datetime, batch: int) -> None:
    if not isinstance(older_than, dt.datetime) or older_than.tzinfo is None:
        raise InvalidInput("must be a datetime with a time zone", field="older_than")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InvalidInput(f"must be a positive integer, got {batch!r}", field="batch")


async def archive_completed(
    db: Database, *, older_than: dt.datetime, batch: int = 10_000, now: dt.datetime | None = None
) -> int:
    """Move completed jobs that finished before ``older_than`` into ``jobs_archive``.

    Succeeded and cleared jobs only (dead-lettered ones stay). Batches of ``batch`` rows, each
    its own transaction; ``now`` is stored as their ``archived_at`` (default: the current UTC
    time), which :func:`delete_archived` goes by. Returns the number of jobs moved.
    """
    _check(older_than, batch)
    archived_at = now or dt.datetime.now(dt.UTC)
    total = 0
    while True:
        moved = len(await db.fetch("retention_archive_batch", older_than, batch, archived_at))
        total += moved
        if moved < batch:
            break
    log.info("completed jobs archived", extra={"event": "jobs_archived", "count": total,
                                               "finished_before": older_than.isoformat()})  # fmt: skip
    return total


async def delete_archived(db: Database, *, older_than: dt.datetime, batch: int = 10_000) -> int:
    """Delete archived jobs archived before ``older_than``, with their attempts.

    Returns the number of jobs deleted.
    """
    _check(older_than, batch)
    jobs = attempts = 0
    while True:
        row = await db.fetchrow("retention_delete_archived_batch", older_than, batch)
        assert row is not None  # an aggregate: always one row
        jobs += int(row["jobs"])
        attempts += int(row["attempts"])
        if row["jobs"] < batch:
            break
    log.info("archived jobs deleted", extra={"event": "archive_deleted", "count": jobs, "attempts": attempts,
                                             "archived_before": older_than.isoformat()})  # fmt: skip
    return jobs


async def _delete_batches(db: Database, query: str, older_than: dt.datetime, batch: int) -> int:
    total = 0
    while True:
        deleted = len(await db.fetch(query, older_than, batch))
        total += deleted
        if deleted < batch:
            return total


async def cleanup_webhook_events(db: Database, *, older_than: dt.datetime, batch: int = 10_000) -> int:
    """Delete received webhook notifications (processed or refused) older than ``older_than``."""
    _check(older_than, batch)
    total = await _delete_batches(db, "retention_webhook_events_batch", older_than, batch)
    log.info("webhook events deleted", extra={"event": "webhook_events_deleted", "count": total,
                                              "received_before": older_than.isoformat()})  # fmt: skip
    return total


async def cleanup_statistics(db: Database, *, older_than: dt.datetime, batch: int = 10_000) -> int:
    """Delete statistics snapshots taken before ``older_than``; returns the rows deleted."""
    _check(older_than, batch)
    total = await _delete_batches(db, "retention_statistics_batch", older_than, batch)
    log.info("old statistics deleted", extra={"event": "statistics_cleaned", "count": total,
                                              "before": older_than.isoformat()})  # fmt: skip
    return total


async def cleanup_scheduler_ticks(db: Database, *, older_than: dt.datetime, batch: int = 10_000) -> int:
    """Delete the records of scheduled runs whose tick is before ``older_than``; returns the rows deleted."""
    _check(older_than, batch)
    return await _delete_batches(db, "retention_ticks_batch", older_than, batch)
