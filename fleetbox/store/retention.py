"""Retention's batches: each statement moves or deletes at most one batch, found through a BRIN
index on the time column, so a run costs what it moves, never a scan of the whole table."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from fleetbox.store.pool import Runner


class Prunable(StrEnum):
    """Tables whose old rows are deleted by age, and the query that deletes one batch."""

    STATISTICS = "retention_statistics_batch"
    TICKS = "retention_ticks_batch"
    WEBHOOK_EVENTS = "retention_webhook_events_batch"
    RATE_EVENTS = "retention_rate_events_batch"
    RESOLVED_ALERTS = "retention_alerts_batch"
    AUDIT = "retention_audit_batch"
    SYNC_HISTORY = "retention_sync_history_batch"
    INBOUND_MESSAGES = "retention_inbound_batch"
    REPORTS = "retention_reports_batch"
    APPLIANCES = "retention_appliances_batch"
    REMOVED_SUBSCRIPTIONS = "retention_subscriptions_batch"
    STALE_UPLOADS = "retention_uploads_batch"
    RESOLVED_DEAD_LETTERS = "retention_dead_letters_batch"
    SCHEDULE_RUNS = "retention_schedule_runs_batch"
    ALERT_NOTIFICATIONS = "retention_alert_notifications_batch"


class RetentionStore:
    """Batches of archiving and deleting."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def archive_batch(self, finished_before: dt.datetime, batch: int, archived_at: dt.datetime) -> int:
        """Move up to ``batch`` completed jobs (succeeded or cleared) into the archive; how many."""
        return len(await self._run.fetch("retention_archive_batch", finished_before, batch, archived_at))

    async def delete_archived_batch(self, archived_before: dt.datetime, batch: int) -> tuple[int, int]:
        """Delete up to ``batch`` archived jobs with their attempts: (jobs, attempts) deleted."""
        row = await self._run.fetchrow("retention_delete_archived_batch", archived_before, batch)
        assert row is not None  # an aggregate: always one row
        return int(row["jobs"]), int(row["attempts"])

    async def delete_batch(self, table: Prunable, before: dt.datetime, batch: int) -> int:
        """Delete up to ``batch`` rows of ``table`` older than ``before``; how many."""
        return len(await self._run.fetch(table.value, before, batch))
