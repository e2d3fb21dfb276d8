"""What the monitor reads and writes: window figures, statistics snapshots, the daily report,
thresholds changed at runtime, and alerts.

None of these counts over a whole finished-job table: window figures read the
``(queue, finished_at)`` index of ``job_attempts`` for the window only, and time series the
``(at)`` index of ``queue_statistics`` (see ``sql/queries/monitor.sql``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fleetbox.models import Alert
from fleetbox.store.pool import Runner


@dataclass(frozen=True, slots=True)
class Window:
    """A queue's attempts that finished in the window."""

    attempts: int = 0
    succeeded: int = 0
    failed: int = 0
    avg_ms: float | None = None
    p95_ms: float | None = None
    #: when the oldest attempt read finished (None: none)
    oldest: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Totals:
    """A queue's attempts summed over a range of snapshots."""

    succeeded: int = 0
    failed: int = 0
    dead: int = 0
    attempts: int = 0
    avg_ms: float | None = None
    p95_ms: float | None = None
    peak_backlog: int = 0


@dataclass(frozen=True, slots=True)
class Bucket:
    """A queue's snapshots in one time bucket."""

    queue: str
    at: dt.datetime
    totals: Totals
    #: the backlog and open dead letters at the bucket's last snapshot
    backlog: int
    dead_letters: int


@dataclass(frozen=True, slots=True)
class StoredThresholds:
    """Thresholds changed at runtime (None: not changed, the configured value holds)."""

    max_backlog: int | None
    max_failure_rate: float | None
    max_processing_time: float | None
    max_dead_letter_jobs: int | None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _totals(r: Any) -> Totals:
    return Totals(
        succeeded=int(r["succeeded"]),
        failed=int(r["failed"]),
        dead=int(r["dead"]),
        attempts=int(r["attempts"]),
        avg_ms=_float(r["avg_ms"]),
        p95_ms=_float(r["p95_ms"]),
        peak_backlog=int(r["peak_backlog"] or 0),
    )


def _thresholds(r: Any) -> StoredThresholds | None:
    if r is None:
        return None
    return StoredThresholds(
        r["max_backlog"], r["max_failure_rate"], r["max_processing_time"], r["max_dead_letter_jobs"]
    )


class MonitorStore:
    """Figures, snapshots, reports, thresholds and alerts."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def window(self, since: dt.datetime, most: int) -> dict[str, Window]:
        """Per queue, the latest attempts (at most ``most``) that finished after ``since``."""
        return {
            r["queue"]: Window(
                int(r["attempts"]),
                int(r["succeeded"]),
                int(r["failed"]),
                _float(r["avg_ms"]),
                _float(r["p95_ms"]),
                r["oldest"],
            )
            for r in await self._run.fetch("monitor_window", since, most)
        }

    async def totals(self, start: dt.datetime, end: dt.datetime) -> dict[str, Totals]:
        """Per queue, the attempts of the snapshots in (start, end]."""
        return {r["queue"]: _totals(r) for r in await self._run.fetch("monitor_totals", start, end)}

    async def series(self, start: dt.datetime, end: dt.datetime, width: dt.timedelta) -> list[Bucket]:
        """Snapshots in (start, end] per queue, in buckets of ``width`` aligned to the epoch."""
        rows = await self._run.fetch("monitor_series", start, end, width)
        return [
            Bucket(
                queue=r["queue"],
                at=r["bucket"],
                totals=_totals(r),
                backlog=int(r["backlog"] or 0),
                dead_letters=int(r["dead_letters"] or 0),
            )
            for r in rows
        ]

    # -- snapshots and reports --------------------------------------------------------------

    async def lock_snapshots(self) -> None:
        """Serialise snapshots across processes until the transaction ends (run in one)."""
        await self._run.fetchval("monitor_snapshot_lock")

    async def last_snapshot(self) -> dt.datetime | None:
        value: dt.datetime | None = await self._run.fetchval("monitor_last_snapshot")
        return value

    async def write_snapshot(self, start: dt.datetime, end: dt.datetime, now: dt.datetime) -> int:
        """One ``queue_statistics`` row per queue covering (start, end]; how many were written."""
        return len(await self._run.fetch("monitor_snapshot_write", start, end, now))

    async def store_report(
        self, start: dt.datetime, end: dt.datetime, created: dt.datetime, report: dict[str, Any]
    ) -> dict[str, Any]:
        """Store the report of (start, end] once; a second call returns the one stored first."""
        if await self._run.fetchval("monitor_report_store", start, end, created, report) is not None:
            return report
        row = await self._run.fetchrow("monitor_report_get", start, end)
        assert row is not None
        stored: dict[str, Any] = row["report"]
        return stored

    # -- thresholds -------------------------------------------------------------------------

    async def thresholds(self) -> StoredThresholds | None:
        return _thresholds(await self._run.fetchrow("monitor_thresholds_get"))

    async def set_thresholds(self, changes: StoredThresholds, at: dt.datetime, by: str) -> StoredThresholds:
        """Change the given thresholds (None keeps the stored value); the thresholds stored now."""
        row = await self._run.fetchrow(
            "monitor_thresholds_set",
            changes.max_backlog,
            changes.max_failure_rate,
            changes.max_processing_time,
            changes.max_dead_letter_jobs,
            at,
            by,
        )
        stored = _thresholds(row)
        assert stored is not None
        return stored

    # -- alerts -----------------------------------------------------------------------------

    async def lock_alerts(self) -> None:
        """Serialise alert checks across processes until the transaction ends (run in one)."""
        await self._run.fetchval("alert_check_lock")

    async def open_alerts(self) -> list[Alert]:
        return [Alert.from_row(r) for r in await self._run.fetch("alert_list_open")]

    async def open_alert(
        self,
        queue: str | None,
        kind: str,
        message: str,
        value: float,
        threshold: float,
        at: dt.datetime,
        subject: str | None = None,
    ) -> Alert | None:
        """Open an alert unless one is open for (kind, queue, subject); None when another process did first."""
        row = await self._run.fetchrow("alert_open", queue, kind, message, value, threshold, at, subject)
        return None if row is None else Alert.from_row(row)

    async def resolve_alerts(self, ids: Sequence[int], at: dt.datetime) -> list[Alert]:
        """Resolve open alerts; one another process resolved first is not returned."""
        return [Alert.from_row(r) for r in await self._run.fetch("alert_resolve", list(ids), at)]

    async def alerts(self, status: str | None, limit: int) -> list[Alert]:
        """Newest first; ``status`` open, resolved or None (both)."""
        return [Alert.from_row(r) for r in await self._run.fetch("alert_list", status, limit)]

    async def count_open_alerts(self) -> int:
        return int(await self._run.fetchval("stream_alerts_open"))
