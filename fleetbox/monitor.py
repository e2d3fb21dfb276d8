"""Health, statistics, metrics and alerts: the spec's queue monitor.

Where each figure comes from, and what it costs (none of them counts over a finished-job table):

- **backlog, ready, scheduled, retrying, running**: counted in the hot ``jobs`` table, which holds
  only unfinished jobs (one scan of it, grouped by queue). Counted at most once per
  ``depth_cache_seconds`` per process; a health or stats request in between reuses the figures.
- **failure rate, average and p95 processing time, throughput**: the attempts in ``job_attempts``
  that finished in the last ``window_seconds``, read through the ``(queue, finished_at)`` index,
  one range scan per queue. The cost is proportional to the attempts in the window, not to the
  table. Failure rate = attempts that did not succeed (retried, dead-lettered or lease lost) /
  all attempts in the window, in percent. Cached together with the depth.
- **dead letters**: open dead letters counted through the partial index that holds only open ones
  (``dead_letters_open_queue``): proportional to the open dead letters, which operators keep short.
- **is running**: the queue's pause flag (the ``queues`` table, a handful of rows; read fresh).
- **thresholds**: one primary-key read of ``monitor_thresholds`` (runtime changes, shared by
  every process); a field nobody changed at runtime comes from the configuration.
- **statistics snapshots and metrics**: ``queue_statistics`` rows, one per queue per snapshot,
  read by time range through its ``(at)`` index; a snapshot covers the attempts that finished
  since the previous one (again through the ``(queue, finished_at)`` index).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from fleetbox.db import Conn, Database, Row
from fleetbox.errors import DatabaseError, InvalidInput
from fleetbox.models import Clock, Tier

log = logging.getLogger("fleetbox.monitor")

#: timeRange values of GET /api/queue/metrics: (length of the range, bucket width)
TIME_RANGES: dict[str, tuple[dt.timedelta, dt.timedelta]] = {
    "1h": (dt.timedelta(hours=1), dt.timedelta(minutes=5)),
    "24h": (dt.timedelta(hours=24), dt.timedelta(hours=1)),
    "7d": (dt.timedelta(days=7), dt.timedelta(hours=6)),
}

#: A snapshot after a longer gap (the appliances were down) covers only this much, so one
#: snapshot never reads an unbounded range of attempts; the gap is logged.
MAX_SNAPSHOT_SPAN = dt.timedelta(hours=1)

ALERT_KINDS = ("backlog", "failure_rate", "processing_time", "dead_letters")


def iso(value: dt.datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, to the millisecond (``2025-11-16T00:00:00.000Z``)."""
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_or_none(value: dt.datetime | None) -> str | None:
    return None if value is None else iso(value)


# -- thresholds ---------------------------------------------------------------------------------

#: field -> (camelCase key, integer?, lowest, highest, lowest allowed itself?)
_THRESHOLD_FIELDS: dict[str, tuple[str, bool, float, float, bool]] = {
    "max_backlog": ("maxBacklog", True, 0, 10**12, True),
    "max_failure_rate": ("maxFailureRate", False, 0, 100, True),
    "max_processing_time": ("maxProcessingTime", False, 0, 10**12, False),
    "max_dead_letter_jobs": ("maxDeadLetterJobs", True, 0, 10**12, True),
}
_BY_KEY = {camel: name for name, (camel, *_rest) in _THRESHOLD_FIELDS.items()} | {
    name: name for name in _THRESHOLD_FIELDS
}


def _check_threshold(name: str, key: str, value: object) -> int | float:
    _camel, integer, low, high, low_ok = _THRESHOLD_FIELDS[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "an integer" if integer else "a number"
        raise InvalidInput(f"must be {kind}, got {type(value).__name__}", field=key)
    if integer and not isinstance(value, int):
        if not (math.isfinite(value) and value == int(value)):
            raise InvalidInput(f"must be an integer, got {value!r}", field=key)
        value = int(value)
    if not math.isfinite(value):
        raise InvalidInput(f"must be a finite number, got {value!r}", field=key)
    if value > high or value < low or (value == low and not low_ok):
        bound = f"at least {low:g}" if low_ok else f"greater than {low:g}"
        raise InvalidInput(f"must be {bound} and at most {high:g}, got {value!r}", field=key)
    return int(value) if integer else float(value)


def _parse_changes(mapping: Mapping[str, object]) -> dict[str, int | float]:
    """Validated threshold values by field name, from camelCase or snake_case keys."""
    if not isinstance(mapping, Mapping):
        raise InvalidInput(f"must be an object, got {type(mapping).__name__}", field="thresholds")
    out: dict[str, int | float] = {}
    seen: dict[str, str] = {}
    for key, value in mapping.items():
        name = _BY_KEY.get(key) if isinstance(key, str) else None
        if name is None:
            known = ", ".join(camel for camel, *_ in _THRESHOLD_FIELDS.values())
            raise InvalidInput(f"unknown threshold (known: {known})", field=str(key))
        if name in seen:
            raise InvalidInput(f"given twice (also as {seen[name]})", field=key)
        seen[name] = key
        out[name] = _check_threshold(name, key, value)
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    """Alert thresholds (the spec's defaults). A figure above its threshold makes health false."""

    #: waiting jobs (ready, scheduled and retrying) in one queue
    max_backlog: int = 1000
    #: percent of a queue's attempts in the window that failed
    max_failure_rate: float = 10.0
    #: average processing time of a queue's attempts in the window, in milliseconds
    max_processing_time: float = 60000.0
    #: open dead letters, all queues together
    max_dead_letter_jobs: int = 50

    @classmethod
    def parse(cls, mapping: Mapping[str, object]) -> Thresholds:
        """Thresholds from a mapping with the spec's camelCase keys (``maxBacklog``) or snake_case.

        Missing keys keep their defaults. Raises:
            InvalidInput: an unknown key or a bad value, naming the key as given.
        """
        return cls(**_parse_changes(mapping))  # type: ignore[arg-type]

    def to_json(self) -> dict[str, int | float]:
        """The spec's shape: ``{"maxBacklog", "maxFailureRate", "maxProcessingTime", "maxDeadLetterJobs"}``."""
        return {camel: getattr(self, name) for name, (camel, *_rest) in _THRESHOLD_FIELDS.items()}


# -- reports ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueHealth:
    """One queue's current figures (see the module docstring for where each comes from)."""

    name: str
    tier: Tier
    #: False while the queue is paused
    is_running: bool
    #: waiting jobs: ready + scheduled + retrying
    backlog: int
    ready: int
    scheduled: int
    retrying: int
    running: int
    #: attempts in the window that did not succeed, percent of all attempts in it (0 without any)
    failure_rate: float
    #: mean duration of the attempts in the window, ms (0 without any)
    avg_processing_time: float
    #: 95th percentile of those durations, ms (0 without any)
    p95_processing_time: float
    #: attempts that succeeded in the window
    completed: int
    #: attempts that failed in the window
    failed: int
    #: succeeded attempts per minute, averaged over the window
    throughput: float
    #: open dead letters that came from this queue
    dead_letters: int

    def to_json(self) -> dict[str, Any]:
        """The spec's per-queue shape plus the extra figures (camelCase)."""
        return {
            "isRunning": self.is_running,
            "backlog": self.backlog,
            "failureRate": round(self.failure_rate, 2),
            "avgProcessingTime": round(self.avg_processing_time, 1),
            "tier": self.tier.name.lower(),
            "ready": self.ready,
            "scheduled": self.scheduled,
            "retrying": self.retrying,
            "running": self.running,
            "p95ProcessingTime": round(self.p95_processing_time, 1),
            "completed": self.completed,
            "failed": self.failed,
            "throughputPerMinute": round(self.throughput, 2),
            "deadLetters": self.dead_letters,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthReport:
    """The answer of GET /api/queue/health."""

    healthy: bool
    #: why healthy is False, one line per crossed threshold (and the database, when unreachable)
    reasons: tuple[str, ...]
    queues: dict[str, QueueHealth]
    #: open dead letters, all queues
    dead_letter_count: int
    last_checked: dt.datetime
    #: "ok" or "unreachable"
    database: str
    thresholds: Thresholds = Thresholds()
    window_seconds: float = 300.0

    def to_json(self) -> dict[str, Any]:
        """The spec's JSON: healthy, queues {name: {isRunning, backlog, failureRate,
        avgProcessingTime, ...}}, deadLetterCount, lastChecked (ISO 8601 UTC), plus reasons."""
        return {
            "healthy": self.healthy,
            "queues": {name: q.to_json() for name, q in self.queues.items()},
            "deadLetterCount": self.dead_letter_count,
            "lastChecked": iso(self.last_checked),
            "reasons": list(self.reasons),
            "database": self.database,
            "thresholds": self.thresholds.to_json(),
            "windowSeconds": self.window_seconds,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """A threshold alert: open while its condition lasts, then resolved (one open per kind and queue)."""

    id: int
    #: None for the alert on all dead letters together
    queue: str | None
    #: backlog, failure_rate, processing_time or dead_letters
    kind: str
    message: str
    #: the figure when the alert opened
    value: float | None
    threshold: float | None
    opened_at: dt.datetime
    resolved_at: dt.datetime | None

    @property
    def status(self) -> str:
        return "open" if self.resolved_at is None else "resolved"

    @classmethod
    def from_row(cls, row: Row) -> Alert:
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "queue": self.queue,
            "kind": self.kind,
            "status": self.status,
            "message": self.message,
            "value": self.value,
            "threshold": self.threshold,
            "openedAt": iso(self.opened_at),
            "resolvedAt": _iso_or_none(self.resolved_at),
        }


@dataclass(frozen=True, slots=True)
class _Condition:
    kind: str
    queue: str | None
    value: float
    threshold: float
    message: str


@dataclass(frozen=True, slots=True)
class _Figures:
    queues: dict[str, QueueHealth]
    dead_letters: int


def _conditions(figures: _Figures, t: Thresholds) -> list[_Condition]:
    out = []
    for name, q in figures.queues.items():
        if q.backlog > t.max_backlog:
            out.append(_Condition("backlog", name, q.backlog, t.max_backlog,
                                  f"{name}: backlog {q.backlog} exceeds maxBacklog {t.max_backlog}"))  # fmt: skip
        if q.failure_rate > t.max_failure_rate:
            out.append(_Condition(
                "failure_rate", name, q.failure_rate, t.max_failure_rate,
                f"{name}: failure rate {q.failure_rate:.1f}% exceeds maxFailureRate {t.max_failure_rate:g}%",
            ))  # fmt: skip
        if q.avg_processing_time > t.max_processing_time:
            out.append(_Condition(
                "processing_time", name, q.avg_processing_time, t.max_processing_time,
                f"{name}: average processing time {q.avg_processing_time:.0f} ms exceeds "
                f"maxProcessingTime {t.max_processing_time:g} ms",
            ))  # fmt: skip
    if figures.dead_letters > t.max_dead_letter_jobs:
        out.append(_Condition(
            "dead_letters", None, figures.dead_letters, t.max_dead_letter_jobs,
            f"dead letters: {figures.dead_letters} open exceed maxDeadLetterJobs {t.max_dead_letter_jobs}",
        ))  # fmt: skip
    return out


def _rate(failed: int, attempts: int) -> float:
    return 100.0 * failed / attempts if attempts else 0.0


# -- the monitor --------------------------------------------------------------------------------


class Monitor:
    """Health, statistics, metrics and alerts of every queue on one database.

    Args:
        db: the fleetbox database.
        clock: the time of figures, snapshots and alerts.
        thresholds: the configured thresholds, kept as :attr:`defaults` (a configuration reload
            replaces them); runtime changes (:meth:`update_thresholds`) stored in the database
            take precedence, field by field.
        window_seconds: failure rate, processing time and throughput cover the attempts that
            finished in this many last seconds.
        depth_cache_seconds: the queue depth and window figures are read at most this often per
            process; requests in between reuse them (0: every request reads).
        settle_seconds: a snapshot ends this long before now, so attempts still on their way to
            the database (the completer writes within milliseconds, process clocks differ a little)
            fall into the next snapshot instead of none.
        timeout_seconds: :meth:`health` reports the database unreachable after this long.
    """

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock,
        thresholds: Thresholds,
        window_seconds: float = 300,
        depth_cache_seconds: float = 2.0,
        settle_seconds: float = 5.0,
        timeout_seconds: float = 5.0,
    ) -> None:
        self.db = db
        self.clock = clock
        #: the configured thresholds (the fallback for fields not changed at runtime)
        self.defaults = thresholds
        self.window_seconds = window_seconds
        self.depth_cache_seconds = depth_cache_seconds
        self.settle_seconds = settle_seconds
        self.timeout_seconds = timeout_seconds
        self._cache: tuple[float, _Figures] | None = None
        self._cache_lock = asyncio.Lock()

    # -- figures --------------------------------------------------------------------------

    async def _figures(self, *, fresh: bool = False, conn: Conn | None = None) -> _Figures:
        """Per-queue figures; depth and window figures come from the cache when recent enough.

        ``fresh`` reads them now (the alert check, on its own connection, without waiting for the
        cache lock: a health request holding it may be waiting for a pool connection).
        """
        db: Database | Conn = conn or self.db
        queues = await db.fetch("queue_list")
        dead = {r["queue"]: int(r["dead"]) for r in await db.fetch("dead_letter_depth")}
        if fresh:
            return await self._count(db, queues, dead)
        async with self._cache_lock:  # one recount at a time; the requests waiting for it reuse it
            cached = self._cache
            if cached is None or time.monotonic() - cached[0] >= self.depth_cache_seconds:
                return await self._count(db, queues, dead)
        # The cached counts with the pause flags and dead letters read now.
        out = {}
        for r in queues:
            q = cached[1].queues.get(r["name"])
            if q is not None:
                out[r["name"]] = replace(q, is_running=not r["paused"], dead_letters=dead.get(r["name"], 0))
        return _Figures(out, sum(dead.values()))

    async def _count(self, db: Database | Conn, queues: list[Row], dead: dict[str, int]) -> _Figures:
        now = self.clock.now()
        depth = {r["queue"]: r for r in await db.fetch("queue_depth", now)}
        since = now - dt.timedelta(seconds=self.window_seconds)
        window = {r["queue"]: r for r in await db.fetch("monitor_window", since)}
        built = self._build(queues, depth, window, dead)
        self._cache = (time.monotonic(), built)
        return built

    def _build(
        self, queues: list[Row], depth: dict[str, Row], window: dict[str, Row], dead: dict[str, int]
    ) -> _Figures:
        out: dict[str, QueueHealth] = {}
        minutes = self.window_seconds / 60
        for r in queues:
            tier = Tier(r["tier"])
            if tier is Tier.DEAD:
                continue  # holds dead letters, runs nothing: reported as deadLetterCount
            name = r["name"]
            d = depth.get(name)
            w = window.get(name)
            ready, scheduled, retrying, running = (
                (int(d["ready"]), int(d["scheduled"]), int(d["retrying"]), int(d["running"])) if d else (0, 0, 0, 0)
            )
            attempts = int(w["attempts"]) if w else 0
            succeeded = int(w["succeeded"]) if w else 0
            failed = int(w["failed"]) if w else 0
            out[name] = QueueHealth(
                name=name, tier=tier, is_running=not r["paused"],
                backlog=ready + scheduled + retrying, ready=ready, scheduled=scheduled, retrying=retrying,
                running=running, failure_rate=_rate(failed, attempts),
                avg_processing_time=float(w["avg_ms"]) if w and w["avg_ms"] is not None else 0.0,
                p95_processing_time=float(w["p95_ms"]) if w and w["p95_ms"] is not None else 0.0,
                completed=succeeded, failed=failed, throughput=succeeded / minutes if minutes else 0.0,
                dead_letters=dead.get(name, 0),
            )  # fmt: skip
        return _Figures(out, sum(dead.values()))

    # -- health ---------------------------------------------------------------------------

    async def health(self) -> HealthReport:
        """The health report (GET /api/queue/health). Never raises.

        ``healthy`` is False with a reason for each queue over ``maxBacklog``, ``maxFailureRate``
        or ``maxProcessingTime``, for open dead letters over ``maxDeadLetterJobs``, and when the
        database cannot be reached (within ``timeout_seconds``), with ``database="unreachable"``.
        Cost: see the module docstring (queue list, open dead letters, the thresholds row, and the
        depth and window figures at most once per ``depth_cache_seconds``).
        """
        checked = self.clock.now()
        try:
            async with asyncio.timeout(self.timeout_seconds):
                thresholds = await self.thresholds()
                figures = await self._figures()
        except (DatabaseError, TimeoutError, OSError) as exc:
            if isinstance(exc, TimeoutError):
                reason = f"database unreachable: no answer within {self.timeout_seconds:g} s"
            else:
                reason = str(exc) if str(exc).startswith("database unreachable") else f"database unreachable: {exc}"
            return HealthReport(
                healthy=False, reasons=(reason,), queues={}, dead_letter_count=0, last_checked=checked,
                database="unreachable", thresholds=self.defaults, window_seconds=self.window_seconds,
            )  # fmt: skip
        reasons = tuple(c.message for c in _conditions(figures, thresholds))
        return HealthReport(
            healthy=not reasons, reasons=reasons, queues=figures.queues, dead_letter_count=figures.dead_letters,
            last_checked=checked, database="ok", thresholds=thresholds, window_seconds=self.window_seconds,
        )  # fmt: skip

    # -- stats and metrics ----------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """Current figures per queue plus totals (GET /api/queue/stats), ready for JSON.

        Per queue: the depth by state, open dead letters, the window figures (as in health), and
        ``last24h``: attempts summed from the statistics snapshots of the last 24 hours
        (``queue_statistics`` by its ``(at)`` index; the interval since the latest snapshot is not
        in it yet). Raises DatabaseError when the database cannot be reached.
        """
        now = self.clock.now()
        figures = await self._figures()
        day = {r["queue"]: _totals(r) for r in await self.db.fetch("monitor_totals", now - dt.timedelta(hours=24), now)}
        queues: dict[str, Any] = {}
        totals = dict.fromkeys(
            ("backlog", "ready", "scheduled", "retrying", "running", "deadLetters", "completed", "failed"), 0
        )
        weighted_ms = 0.0
        for name, q in figures.queues.items():
            last24 = day.get(name) or _totals(None)
            queues[name] = {**q.to_json(), "last24h": last24}
            for key in ("backlog", "ready", "scheduled", "retrying", "running"):
                totals[key] += getattr(q, key)
            totals["deadLetters"] += q.dead_letters
            totals["completed"] += q.completed
            totals["failed"] += q.failed
            weighted_ms += q.avg_processing_time * (q.completed + q.failed)
        attempts = totals["completed"] + totals["failed"]
        return {
            "generatedAt": iso(now),
            "windowSeconds": self.window_seconds,
            "queues": queues,
            "totals": {
                **totals,
                "deadLetterCount": figures.dead_letters,
                "failureRate": round(_rate(totals["failed"], attempts), 2),
                "avgProcessingTime": round(weighted_ms / attempts, 1) if attempts else 0.0,
                "throughputPerMinute": round(totals["completed"] / (self.window_seconds / 60), 2),
                "last24h": _sum_totals([queues[name]["last24h"] for name in queues]),
            },
        }

    async def metrics(self, time_range: str) -> dict[str, Any]:
        """Time series from the statistics snapshots (GET /api/queue/metrics?timeRange=).

        ``time_range`` is ``1h`` (5-minute buckets), ``24h`` (hourly) or ``7d`` (6-hourly); buckets
        are aligned to the Unix epoch in UTC and every bucket is present (zeros where no snapshot
        fell). Each point: completed, failed, deadLettered, attempts, failureRate,
        avgProcessingTime (weighted by attempts), p95ProcessingTime (the highest snapshot p95 in
        the bucket), backlog (at the bucket's last snapshot), peakBacklog and deadLetters.
        Cost: the snapshots in the range, through the ``(at)`` index of ``queue_statistics``.

        Raises:
            InvalidInput: ``timeRange`` is not one of the three.
        """
        if not isinstance(time_range, str) or time_range not in TIME_RANGES:
            shown = repr(time_range[:40]) if isinstance(time_range, str) else type(time_range).__name__
            raise InvalidInput(f"must be one of {', '.join(TIME_RANGES)}, got {shown}", field="timeRange")
        length, width = TIME_RANGES[time_range]
        end = self.clock.now()
        start = end - length
        rows = await self.db.fetch("monitor_series", start, end, width)
        names = [r["name"] for r in await self.db.fetch("queue_list") if r["tier"] != Tier.DEAD]
        buckets = _buckets(start, end, width)
        by_queue: dict[str, dict[dt.datetime, Row]] = {}
        for r in rows:
            by_queue.setdefault(r["queue"], {})[r["bucket"]] = r
            if r["queue"] not in names:
                names.append(r["queue"])
        series = {name: [_point(b, by_queue.get(name, {}).get(b)) for b in buckets] for name in names}
        totals = [_sum_points(b, [series[name][i] for name in names]) for i, b in enumerate(buckets)]
        return {
            "timeRange": time_range,
            "from": iso(start),
            "to": iso(end),
            "bucketSeconds": int(width.total_seconds()),
            "series": series,
            "totals": totals,
        }

    # -- snapshots and the daily report ---------------------------------------------------

    async def snapshot(self) -> int:
        """Write one ``queue_statistics`` row per queue; returns the number of rows written.

        A snapshot covers the attempts that finished after the previous snapshot's end, up to now
        less ``settle_seconds``; the first one covers ``window_seconds``, and one after a gap covers
        at most an hour (the uncovered span is logged). Snapshots from several processes are
        serialised by an advisory lock, so no interval is counted twice. Cost: the attempts in the
        interval, by the ``(queue, finished_at)`` index; the hot table for the depth.
        """
        now = self.clock.now()
        end = now - dt.timedelta(seconds=self.settle_seconds)
        async with self.db.transaction() as conn:
            await conn.fetchval("monitor_snapshot_lock")
            previous: dt.datetime | None = await conn.fetchval("monitor_last_snapshot")
            if previous is not None and previous >= end:
                return 0
            start = previous if previous is not None else end - dt.timedelta(seconds=self.window_seconds)
            if end - start > MAX_SNAPSHOT_SPAN:
                log.warning("statistics gap: the attempts before the snapshot span are not in any snapshot",
                            extra={"event": "statistics_gap", "uncovered_from": iso(start),
                                   "uncovered_to": iso(end - MAX_SNAPSHOT_SPAN)})  # fmt: skip
                start = end - MAX_SNAPSHOT_SPAN
            rows = await conn.fetch("monitor_snapshot_write", start, end, now)
        log.info("statistics snapshot", extra={"event": "statistics_snapshot", "queues": len(rows),
                                               "period_start": iso(start), "period_end": iso(end)})  # fmt: skip
        return len(rows)

    async def performance_report(self, *, end: dt.datetime | None = None) -> dict[str, Any]:
        """The performance report of the 24 hours before ``end`` (default: now), from the snapshots.

        Stored in ``performance_reports`` (once per period: a second call returns the stored one)
        and logged as the event ``performance_report``. Per queue and in total: completed, failed,
        deadLettered, attempts, failureRate, avgProcessingTime, p95ProcessingTime (the highest
        snapshot p95); per queue also peakBacklog. Cost: the period's snapshots (``(at)`` index).
        """
        end = end or self.clock.now()
        start = end - dt.timedelta(hours=24)
        rows = await self.db.fetch("monitor_totals", start, end)
        queues = {r["queue"]: _totals(r) for r in rows}
        total = _sum_totals(list(queues.values()))
        report = {"periodStart": iso(start), "periodEnd": iso(end), "queues": queues, "totals": total}
        stored = await self.db.fetchval("monitor_report_store", start, end, self.clock.now(), report)
        if stored is None:
            row = await self.db.fetchrow("monitor_report_get", start, end)
            assert row is not None
            existing: dict[str, Any] = row["report"]
            return existing
        log.info("daily performance report", extra={"event": "performance_report", "report": report})
        return report

    # -- thresholds -----------------------------------------------------------------------

    async def thresholds(self) -> Thresholds:
        """The thresholds in force: those changed at runtime (shared by every process), the
        configured ones for the rest. Raises DatabaseError when the database cannot be reached."""
        row = await self.db.fetchrow("monitor_thresholds_get")
        return self._merge(row)

    def _merge(self, row: Row | None) -> Thresholds:
        if row is None:
            return self.defaults
        changes = {name: row[name] for name in _THRESHOLD_FIELDS if row[name] is not None}
        return replace(self.defaults, **changes)

    async def update_thresholds(self, changes: Mapping[str, object], *, actor: str) -> Thresholds:
        """Change thresholds for every process on the database; returns the thresholds in force.

        ``changes`` uses the spec's keys (``maxBacklog``, ``maxFailureRate``, ``maxProcessingTime``,
        ``maxDeadLetterJobs``) or snake_case; keys not given keep their values. Audit-logged.

        Raises:
            InvalidInput: no key, an unknown key or a bad value (named); nothing was changed.
        """
        parsed = _parse_changes(changes)
        if not parsed:
            keys = ", ".join(camel for camel, *_ in _THRESHOLD_FIELDS.values())
            raise InvalidInput(f"give at least one of {keys}", field="thresholds")
        if not isinstance(actor, str) or not actor:
            raise InvalidInput("must be a non-empty string", field="actor")
        args = [parsed.get(name) for name in _THRESHOLD_FIELDS]
        async with self.db.transaction() as conn:
            row = await conn.fetchrow("monitor_thresholds_set", *args, self.clock.now(), actor)
            result = self._merge(row)
            changed = {_THRESHOLD_FIELDS[name][0]: value for name, value in parsed.items()}
            await conn.execute("audit", actor, "monitor.thresholds", "thresholds",
                               {"changes": changed, "thresholds": result.to_json()})  # fmt: skip
        log.info("alert thresholds changed", extra={"event": "audit.thresholds.update", "actor": actor,
                                                    "changes": changed, "thresholds": result.to_json()})  # fmt: skip
        return result

    # -- alerts ---------------------------------------------------------------------------

    async def check_alerts(self) -> list[Alert]:
        """Evaluate the thresholds on fresh figures; returns the alerts this call opened or resolved.

        A crossed threshold opens one alert per (kind, queue) and leaves it open while the
        condition lasts: the database's unique index on open alerts keeps it to one even when
        several processes check at once, and the checks of all processes are serialised (an
        advisory lock held for the check), so none acts on figures older than another's result.
        An open alert whose condition cleared is resolved. Each opening and resolution is logged
        (events ``alert_opened``, ``alert_resolved``) by the one process that made it. Raises
        DatabaseError when the database cannot be reached.
        """
        changed: list[Alert] = []
        async with self.db.transaction() as conn:
            await conn.fetchval("alert_check_lock")
            now = self.clock.now()
            thresholds = self._merge(await conn.fetchrow("monitor_thresholds_get"))
            figures = await self._figures(fresh=True, conn=conn)
            conditions = {(c.kind, c.queue): c for c in _conditions(figures, thresholds)}
            open_now = {(r["kind"], r["queue"]): Alert.from_row(r) for r in await conn.fetch("alert_list_open")}
            for key, c in conditions.items():
                if key in open_now:
                    continue
                row = await conn.fetchrow("alert_open", c.queue, c.kind, c.message, c.value, c.threshold, now)
                if row is not None:  # None: another process opened it first
                    changed.append(Alert.from_row(row))
            cleared = [a.id for key, a in open_now.items() if key not in conditions]
            if cleared:
                changed.extend(Alert.from_row(row) for row in await conn.fetch("alert_resolve", cleared, now))
        for alert in changed:  # committed: now say so
            if alert.resolved_at is None:
                log.warning("alert opened", extra={
                    "event": "alert_opened", "alert_id": alert.id, "kind": alert.kind, "queue": alert.queue,
                    "value": alert.value, "threshold": alert.threshold, "alert_message": alert.message,
                })  # fmt: skip
            else:
                log.info("alert resolved", extra={
                    "event": "alert_resolved", "alert_id": alert.id, "kind": alert.kind, "queue": alert.queue,
                    "opened_at": iso(alert.opened_at),
                })  # fmt: skip
        return changed

    async def alerts(self, *, status: str | None = None, limit: int = 100) -> list[Alert]:
        """Alerts newest first; ``status`` is ``"open"``, ``"resolved"`` or None (both).

        Raises:
            InvalidInput: a bad status or a limit outside 1..1000 (named).
        """
        if status is not None and status not in ("open", "resolved"):
            raise InvalidInput(f"must be open or resolved, got {status!r}", field="status")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidInput(f"must be an integer from 1 to 1000, got {limit!r}", field="limit")
        return [Alert.from_row(r) for r in await self.db.fetch("alert_list", status, limit)]


# -- time series helpers ------------------------------------------------------------------------

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _buckets(start: dt.datetime, end: dt.datetime, width: dt.timedelta) -> list[dt.datetime]:
    """Bucket starts covering (start, end], aligned to the epoch (as date_bin does)."""
    first = _EPOCH + ((start - _EPOCH) // width) * width
    out = []
    b = first
    while b <= end:
        out.append(b)
        b += width
    return out


def _point(at: dt.datetime, r: Row | None) -> dict[str, Any]:
    if r is None:
        return {
            "at": iso(at), "completed": 0, "failed": 0, "deadLettered": 0, "attempts": 0, "failureRate": 0.0,
            "avgProcessingTime": 0.0, "p95ProcessingTime": 0.0, "backlog": 0, "peakBacklog": 0, "deadLetters": 0,
        }  # fmt: skip
    attempts = int(r["attempts"])
    return {
        "at": iso(at),
        "completed": int(r["succeeded"]),
        "failed": int(r["failed"]),
        "deadLettered": int(r["dead"]),
        "attempts": attempts,
        "failureRate": round(_rate(int(r["failed"]), attempts), 2),
        "avgProcessingTime": round(float(r["avg_ms"]), 1) if r["avg_ms"] is not None else 0.0,
        "p95ProcessingTime": round(float(r["p95_ms"]), 1) if r["p95_ms"] is not None else 0.0,
        "backlog": int(r["backlog"] or 0),
        "peakBacklog": int(r["peak_backlog"] or 0),
        "deadLetters": int(r["dead_letters"] or 0),
    }


def _totals(r: Row | None) -> dict[str, Any]:
    """Figures summed over a range of snapshots (a monitor_totals row)."""
    attempts = int(r["attempts"]) if r else 0
    failed = int(r["failed"]) if r else 0
    return {
        "completed": int(r["succeeded"]) if r else 0,
        "failed": failed,
        "deadLettered": int(r["dead"]) if r else 0,
        "attempts": attempts,
        "failureRate": round(_rate(failed, attempts), 2),
        "avgProcessingTime": round(float(r["avg_ms"]), 1) if r and r["avg_ms"] is not None else 0.0,
        "p95ProcessingTime": round(float(r["p95_ms"]), 1) if r and r["p95_ms"] is not None else 0.0,
        "peakBacklog": int(r["peak_backlog"] or 0) if r else 0,
    }


def _sum_totals(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over queues: sums, the failure rate and average of the sums, the highest p95."""
    out: dict[str, Any] = {
        key: sum(int(p[key]) for p in parts) for key in ("completed", "failed", "deadLettered", "attempts")
    }
    out["failureRate"] = round(_rate(out["failed"], out["attempts"]), 2)
    weighted = sum(float(p["avgProcessingTime"]) * int(p["attempts"]) for p in parts)
    out["avgProcessingTime"] = round(weighted / out["attempts"], 1) if out["attempts"] else 0.0
    out["p95ProcessingTime"] = max((float(p["p95ProcessingTime"]) for p in parts), default=0.0)
    return out


def _sum_points(at: dt.datetime, points: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"at": iso(at)}
    for key in ("completed", "failed", "deadLettered", "attempts", "backlog", "peakBacklog", "deadLetters"):
        out[key] = sum(int(p.get(key, 0)) for p in points)
    attempts = out["attempts"]
    out["failureRate"] = round(_rate(out["failed"], attempts), 2)
    weighted = sum(float(p["avgProcessingTime"]) * int(p["attempts"]) for p in points)
    out["avgProcessingTime"] = round(weighted / attempts, 1) if attempts else 0.0
    out["p95ProcessingTime"] = max((float(p["p95ProcessingTime"]) for p in points), default=0.0)
    return out
