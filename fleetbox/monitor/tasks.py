"""The spec's monitoring schedule: what runs when, every interval from the settings.

- ``health-check`` every ``monitor.interval_seconds`` (QUEUE_MONITOR_INTERVAL, 60 s): the health
  report (logged as ``health_check``) and the alerts (:meth:`Monitor.check_alerts`);
- ``statistics-snapshot`` every ``monitor.snapshot_seconds`` (5 minutes);
- ``performance-report`` at ``monitor.report_cron`` (midnight): the previous 24 hours;
- ``statistics-cleanup`` at ``monitor.stats_cleanup_cron`` (2 AM): snapshots and tick records
  older than ``monitor.stats_keep_days``;
- ``job-archive`` at ``retention.archive_cron`` (hourly): completed jobs older than
  ``retention.archive_hours`` (QUEUE_ARCHIVE_HOURS) into the archive;
- ``job-cleanup`` at ``retention.cleanup_cron`` (Sunday midnight): the archiving, then archived
  jobs older than ``retention.delete_days`` (QUEUE_DELETE_DAYS) deleted, and received webhook
  notifications as old;
- ``table-cleanup`` at ``retention.prune_cron`` (daily 03:15): every other table that grows with
  traffic, each by its own age (``retention.*_days``): rate-limit events, resolved alerts, the
  audit log, resolved dead letters, sync history, fetched messages, reports, appliances gone, and
  Graph subscriptions and upload sessions no longer needed. Nothing grows for ever.

Cron expressions are read in ``monitor.timezone``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from fleetbox.config import Settings
from fleetbox.models import Clock
from fleetbox.monitor.health import Condition, Monitor
from fleetbox.monitor.schedule import PeriodicTask, latest_cron_tick
from fleetbox.service.retention import Retention
from fleetbox.store.retention import Prunable

log = logging.getLogger("fleetbox.monitor")

#: Conditions found outside the queue figures (appliances, tasks), checked with the thresholds.
ConditionSource = Callable[[], Awaitable[list[Condition]]]


def default_tasks(
    settings: Settings,
    monitor: Monitor,
    retention: Retention,
    clock: Clock,
    conditions: ConditionSource | None = None,
) -> list[PeriodicTask]:
    """The schedule of the module docstring, from ``settings``."""
    m, r = settings.monitor, settings.retention
    tz = m.timezone

    async def health_check() -> object:
        report = await monitor.health()
        level = logging.INFO if report.healthy else logging.WARNING
        log.log(
            level,
            "health checked",
            extra={
                "event": "health_check",
                "healthy": report.healthy,
                "reasons": list(report.reasons),
                "dead_letter_count": report.dead_letter_count,
            },
        )
        changed = []
        if report.database == "ok":
            extra = await conditions() if conditions is not None else []
            changed = await monitor.check_alerts(extra)
        return {
            "healthy": report.healthy,
            "reasons": list(report.reasons),
            "alertsChanged": [a.to_json() for a in changed],
        }

    async def snapshot() -> object:
        return {"rows": await monitor.snapshot()}

    async def performance_report() -> object:
        # The period ends at the tick (midnight), not at the moment the run started.
        end = latest_cron_tick(m.report_cron, clock.now(), tz)
        return await monitor.performance_report(end=end)

    async def statistics_cleanup() -> object:
        before = clock.now() - dt.timedelta(days=m.stats_keep_days)
        return {
            "statistics": await retention.prune(Prunable.STATISTICS, older_than=before, batch=r.batch),
            "ticks": await retention.prune(Prunable.TICKS, older_than=before, batch=r.batch),
        }

    async def archive() -> object:
        now = clock.now()
        older = now - dt.timedelta(hours=r.archive_hours)
        return {"archived": await retention.archive_completed(older_than=older, now=now, batch=r.batch)}

    async def job_cleanup() -> object:
        now = clock.now()
        older = now - dt.timedelta(hours=r.archive_hours)
        archived = await retention.archive_completed(older_than=older, now=now, batch=r.batch)
        before = now - dt.timedelta(days=r.delete_days)
        deleted = await retention.delete_archived(older_than=before, batch=r.batch)
        webhooks = await retention.prune(Prunable.WEBHOOK_EVENTS, older_than=before, batch=r.batch)
        return {"archived": archived, "deleted": deleted, "webhookEvents": webhooks}

    async def table_cleanup() -> object:
        now = clock.now()
        ages = {
            Prunable.RATE_EVENTS: r.rate_events_days,
            Prunable.RESOLVED_ALERTS: r.resolved_alerts_days,
            Prunable.AUDIT: r.audit_days,
            Prunable.RESOLVED_DEAD_LETTERS: r.resolved_dead_letters_days,
            Prunable.SYNC_HISTORY: r.sync_history_days,
            Prunable.INBOUND_MESSAGES: r.inbound_days,
            Prunable.REPORTS: r.reports_days,
            Prunable.APPLIANCES: r.appliances_days,
            Prunable.REMOVED_SUBSCRIPTIONS: r.graph_days,
            Prunable.STALE_UPLOADS: r.graph_days,
            Prunable.SCHEDULE_RUNS: r.schedule_runs_days,
            Prunable.ALERT_NOTIFICATIONS: r.alert_notifications_days,
        }
        return {
            table.name.lower(): await retention.prune(table, older_than=now - dt.timedelta(days=days), batch=r.batch)
            for table, days in ages.items()
        }

    return [
        PeriodicTask(name="health-check", every=m.interval_seconds, run=health_check),
        PeriodicTask(name="statistics-snapshot", every=m.snapshot_seconds, run=snapshot),
        PeriodicTask(name="performance-report", schedule=m.report_cron, timezone=tz, run=performance_report),
        PeriodicTask(name="statistics-cleanup", schedule=m.stats_cleanup_cron, timezone=tz, run=statistics_cleanup),
        PeriodicTask(name="job-archive", schedule=r.archive_cron, timezone=tz, run=archive),
        PeriodicTask(name="job-cleanup", schedule=r.cleanup_cron, timezone=tz, run=job_cleanup),
        PeriodicTask(name="table-cleanup", schedule=r.prune_cron, timezone=tz, run=table_cleanup),
    ]
