"""Health, statistics, metrics and alerts: the spec's queue monitor.

Where each figure comes from, and what it costs (none of them counts over a finished-job table):

- **backlog, waiting, scheduled, retrying, running**: counted in the hot ``jobs`` table, which holds
  only unfinished jobs (one scan of it, grouped by queue). Counted at most once per
  ``depth_cache_seconds`` per process; a health or stats request in between reuses the figures.
- **failure rate, average and p95 processing time, throughput**: the attempts in ``job_attempts``
  that finished in the last ``window_seconds``, read through the ``(queue, finished_at)`` index,
  one range scan per queue, the latest ``sample`` (50,000) of them at most: the cost is bounded
  at any throughput, never proportional to the table. Failure rate = attempts that did not
  succeed (retried, dead-lettered or lease lost) / all attempts read, in percent. When a queue
  finished more attempts in the window than the sample holds, its rates and times come from the
  latest ones and its completed and failed counts are the sample's scaled to the whole window
  (throughput = the sample's successes over the time it spans). Cached together with the depth.
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
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from fleetbox.errors import DatabaseError, InvalidInput
from fleetbox.models import Alert, Clock, QueueInfo, Thresholds, Tier, iso
from fleetbox.monitor.notify import AlertNotifier
from fleetbox.service.thresholds import ThresholdSettings, merged
from fleetbox.store import Store, Stores
from fleetbox.store.monitor import Bucket, Totals, Window
from fleetbox.store.queues import QueueCounts

log = logging.getLogger("fleetbox.monitor")

#: The most attempts per queue a health check reads from its window (the latest ones). Measured at
#: rest with 2M attempts in the window: 440 ms to read them all, 11-15 ms for the latest 50,000;
#: during a soak at 27k jobs/s (every core busy) reading them all missed the check's 5 s timeout
#: every minute, and health said the database was unreachable (docs/performance.md).
WINDOW_SAMPLE = 50_000

#: timeRange values of GET /api/queue/metrics: (length of the range, bucket width)
TIME_RANGES: dict[str, tuple[dt.timedelta, dt.timedelta]] = {
    "1h": (dt.timedelta(hours=1), dt.timedelta(minutes=5)),
    "24h": (dt.timedelta(hours=24), dt.timedelta(hours=1)),
    "7d": (dt.timedelta(days=7), dt.timedelta(hours=6)),
}

#: A snapshot after a longer gap (the appliances were down) covers only this much, so one
#: snapshot never reads an unbounded range of attempts; the gap is logged.
MAX_SNAPSHOT_SPAN = dt.timedelta(hours=1)


# -- reports ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueHealth:
    """One queue's current figures (see the module docstring for where each comes from)."""

    name: str
    tier: Tier
    #: False while the queue is paused
    is_running: bool
    #: jobs not yet started: waiting + scheduled + retrying
    backlog: int
    #: due jobs waiting for a worker
    waiting: int
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
    #: live appliances that can run this queue (None: not known here)
    consumers: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The spec's per-queue shape plus the extra figures (camelCase)."""
        return {
            "isRunning": self.is_running,
            "backlog": self.backlog,
            "failureRate": round(self.failure_rate, 2),
            "avgProcessingTime": round(self.avg_processing_time, 1),
            "tier": self.tier.name.lower(),
            "waiting": self.waiting,
            "scheduled": self.scheduled,
            "retrying": self.retrying,
            "running": self.running,
            "p95ProcessingTime": round(self.p95_processing_time, 1),
            "completed": self.completed,
            "failed": self.failed,
            "throughputPerMinute": round(self.throughput, 2),
            "deadLetters": self.dead_letters,
            "consumers": self.consumers,
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
    thresholds: Thresholds = field(default_factory=Thresholds)
    window_seconds: float = 300.0
    #: the driver's message when the database is unreachable: for logs and keyed readers only
    #: (it can name hosts, ports and stored values)
    database_error: str | None = None

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


@dataclass(frozen=True, slots=True)
class Condition:
    """A crossed threshold (or another alerting condition): one alert per (kind, queue) while it lasts."""

    kind: str
    queue: str | None
    value: float
    threshold: float
    message: str
    #: what else it concerns (an appliance's task)
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class _Figures:
    queues: dict[str, QueueHealth]
    dead_letters: int


def _conditions(figures: _Figures, t: Thresholds) -> list[Condition]:
    out = []
    for name, q in figures.queues.items():
        if q.backlog > t.max_backlog:
            out.append(
                Condition(
                    "backlog",
                    name,
                    q.backlog,
                    t.max_backlog,
                    f"{name}: backlog {q.backlog} exceeds maxBacklog {t.max_backlog}",
                )
            )
        if q.failure_rate > t.max_failure_rate:
            out.append(
                Condition(
                    "failure_rate",
                    name,
                    q.failure_rate,
                    t.max_failure_rate,
                    f"{name}: failure rate {q.failure_rate:.1f}% exceeds maxFailureRate {t.max_failure_rate:g}%",
                )
            )
        if q.avg_processing_time > t.max_processing_time:
            out.append(
                Condition(
                    "processing_time",
                    name,
                    q.avg_processing_time,
                    t.max_processing_time,
                    f"{name}: average processing time {q.avg_processing_time:.0f} ms exceeds "
                    f"maxProcessingTime {t.max_processing_time:g} ms",
                )
            )
    if figures.dead_letters > t.max_dead_letter_jobs:
        out.append(
            Condition(
                "dead_letters",
                None,
                figures.dead_letters,
                t.max_dead_letter_jobs,
                f"dead letters: {figures.dead_letters} open exceed maxDeadLetterJobs {t.max_dead_letter_jobs}",
            )
        )
    return out


def _rate(failed: int, attempts: int) -> float:
    return 100.0 * failed / attempts if attempts else 0.0


# -- the monitor --------------------------------------------------------------------------------


class Monitor:
    """Health, statistics, metrics and alerts of every queue on one database.

    Args:
        store: the fleetbox database.
        thresholds: the thresholds in force (configured, with runtime changes stored in the
            database taking precedence field by field).
        clock: the time of figures, snapshots and alerts.
        window_seconds: failure rate, processing time and throughput cover the attempts that
            finished in this many last seconds.
        depth_cache_seconds: the queue depth and window figures are read at most this often per
            process; requests in between reuse them (0: every request reads).
        settle_seconds: a snapshot ends this long before now, so attempts still on their way to
            the database (the completer writes within milliseconds, process clocks differ a little)
            fall into the next snapshot instead of none.
        timeout_seconds: :meth:`health` reports the database unreachable after this long.
        sample: the window's figures of a queue come from at most this many of its latest
            attempts (a health check must answer within ``timeout_seconds`` at any throughput).
        consumers: the live appliances that can run each queue (presence), shown per queue.
        notifier: records the alert changes each configured webhook is sent, in the check's
            transaction.
    """

    def __init__(
        self,
        store: Store,
        thresholds: ThresholdSettings,
        *,
        clock: Clock,
        window_seconds: float = 300,
        depth_cache_seconds: float = 2.0,
        settle_seconds: float = 5.0,
        timeout_seconds: float = 5.0,
        sample: int = WINDOW_SAMPLE,
        consumers: Callable[[], Awaitable[dict[str, int]]] | None = None,
        notifier: AlertNotifier | None = None,
    ) -> None:
        self.store = store
        self._consumers = consumers
        self.thresholds = thresholds
        self.clock = clock
        self.window_seconds = window_seconds
        self.depth_cache_seconds = depth_cache_seconds
        self.settle_seconds = settle_seconds
        self.timeout_seconds = timeout_seconds
        self.sample = sample
        self.notifier = notifier
        self._cache: tuple[float, _Figures] | None = None
        self._cache_lock = asyncio.Lock()

    def configure(self, *, window_seconds: float, depth_cache_seconds: float) -> None:
        """A configuration reload: the new window and cache age apply to the next figures."""
        self.window_seconds = window_seconds
        self.depth_cache_seconds = depth_cache_seconds
        self._cache = None

    # -- figures --------------------------------------------------------------------------

    async def _figures(self, *, fresh: bool = False, where: Stores | None = None) -> _Figures:
        """Per-queue figures; depth and window figures come from the cache when recent enough.

        ``fresh`` reads them now (the alert check, in its own transaction, without waiting for
        the cache lock: a health request holding it may be waiting for a pool connection).
        """
        figures = await self._figures_of_queues(fresh=fresh, where=where)
        if self._consumers is None:
            return figures
        consumers = await self._consumers()
        queues = {name: replace(q, consumers=consumers.get(name, 0)) for name, q in figures.queues.items()}
        return _Figures(queues, figures.dead_letters)

    async def _figures_of_queues(self, *, fresh: bool, where: Stores | None) -> _Figures:
        db = where or self.store
        queues = await db.queues.all()
        dead = await db.queues.open_dead_letters()
        if fresh:
            return await self._count(db, queues, dead)
        async with self._cache_lock:  # one recount at a time; the requests waiting for it reuse it
            cached = self._cache
            if cached is None or time.monotonic() - cached[0] >= self.depth_cache_seconds:
                return await self._count(db, queues, dead)
        # The cached counts with the pause flags and dead letters read now.
        out = {}
        for q in queues:
            figures = cached[1].queues.get(q.name)
            if figures is not None:
                out[q.name] = replace(figures, is_running=not q.paused, dead_letters=dead.get(q.name, 0))
        return _Figures(out, sum(dead.values()))

    async def _count(self, db: Stores, queues: list[QueueInfo], dead: dict[str, int]) -> _Figures:
        now = self.clock.now()
        depth = await db.queues.counts(now)
        window = await db.monitor.window(now - dt.timedelta(seconds=self.window_seconds), self.sample)
        built = self._build(queues, depth, window, dead, now)
        self._cache = (time.monotonic(), built)
        return built

    def _build(
        self,
        queues: list[QueueInfo],
        depth: dict[str, QueueCounts],
        window: dict[str, Window],
        dead: dict[str, int],
        now: dt.datetime,
    ) -> _Figures:
        out: dict[str, QueueHealth] = {}
        minutes = self.window_seconds / 60
        for q in queues:
            if q.tier is Tier.DEAD:
                continue  # holds dead letters, runs nothing: reported as deadLetterCount
            d = depth.get(q.name) or QueueCounts()
            w = window.get(q.name) or Window()
            # The minutes the attempts read span: the whole window, or less when the sample
            # filled up before reaching its start (their counts then stand for the window's).
            spanned = minutes
            if w.attempts >= self.sample and w.oldest is not None:
                spanned = min(minutes, max((now - w.oldest).total_seconds(), 1.0) / 60)
            scale = minutes / spanned if spanned else 1.0
            out[q.name] = QueueHealth(
                name=q.name,
                tier=q.tier,
                is_running=not q.paused,
                backlog=d.waiting + d.scheduled + d.retrying,
                waiting=d.waiting,
                scheduled=d.scheduled,
                retrying=d.retrying,
                running=d.running,
                failure_rate=_rate(w.failed, w.attempts),
                avg_processing_time=w.avg_ms or 0.0,
                p95_processing_time=w.p95_ms or 0.0,
                completed=round(w.succeeded * scale),
                failed=round(w.failed * scale),
                throughput=w.succeeded / spanned if spanned else 0.0,
                dead_letters=dead.get(q.name, 0),
            )
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
                thresholds = await self.thresholds.current()
                figures = await self._figures()
        except (DatabaseError, TimeoutError, OSError) as exc:
            # The driver's message (host, port, stored values) goes to the log only.
            error = str(exc) or type(exc).__name__  # a timeout's message is empty
            log.warning("health: database unreachable", extra={"event": "health_database_error", "error": error})
            if isinstance(exc, TimeoutError):
                reason = f"database unreachable: no answer within {self.timeout_seconds:g} s"
            else:
                reason = "database unreachable"
            return HealthReport(
                healthy=False,
                reasons=(reason,),
                queues={},
                dead_letter_count=0,
                last_checked=checked,
                database="unreachable",
                thresholds=self.thresholds.configured,
                window_seconds=self.window_seconds,
                database_error=error,
            )
        reasons = tuple(c.message for c in _conditions(figures, thresholds))
        return HealthReport(
            healthy=not reasons,
            reasons=reasons,
            queues=figures.queues,
            dead_letter_count=figures.dead_letters,
            last_checked=checked,
            database="ok",
            thresholds=thresholds,
            window_seconds=self.window_seconds,
        )

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
        day = {
            name: _totals(t) for name, t in (await self.store.monitor.totals(now - dt.timedelta(hours=24), now)).items()
        }
        queues: dict[str, Any] = {}
        totals = dict.fromkeys(
            ("backlog", "waiting", "scheduled", "retrying", "running", "deadLetters", "completed", "failed"), 0
        )
        weighted_ms = 0.0
        for name, q in figures.queues.items():
            last24 = day.get(name) or _totals(None)
            queues[name] = {**q.to_json(), "last24h": last24}
            for key in ("backlog", "waiting", "scheduled", "retrying", "running"):
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
        rows = await self.store.monitor.series(start, end, width)
        names = [q.name for q in await self.store.queues.all() if q.tier is not Tier.DEAD]
        buckets = _buckets(start, end, width)
        by_queue: dict[str, dict[dt.datetime, Bucket]] = {}
        for r in rows:
            by_queue.setdefault(r.queue, {})[r.at] = r
            if r.queue not in names:
                names.append(r.queue)
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
        async with self.store.transaction() as tx:
            await tx.monitor.lock_snapshots()
            previous = await tx.monitor.last_snapshot()
            if previous is not None and previous >= end:
                return 0
            start = previous if previous is not None else end - dt.timedelta(seconds=self.window_seconds)
            if end - start > MAX_SNAPSHOT_SPAN:
                log.warning(
                    "statistics gap: the attempts before the snapshot span are not in any snapshot",
                    extra={
                        "event": "statistics_gap",
                        "uncovered_from": iso(start),
                        "uncovered_to": iso(end - MAX_SNAPSHOT_SPAN),
                    },
                )
                start = end - MAX_SNAPSHOT_SPAN
            written = await tx.monitor.write_snapshot(start, end, now)
        log.info(
            "statistics snapshot",
            extra={
                "event": "statistics_snapshot",
                "queues": written,
                "period_start": iso(start),
                "period_end": iso(end),
            },
        )
        return written

    async def performance_report(self, *, end: dt.datetime | None = None) -> dict[str, Any]:
        """The performance report of the 24 hours before ``end`` (default: now), from the snapshots.

        Stored in ``performance_reports`` (once per period: a second call returns the stored one)
        and logged as the event ``performance_report``. Per queue and in total: completed, failed,
        deadLettered, attempts, failureRate, avgProcessingTime, p95ProcessingTime (the highest
        snapshot p95); per queue also peakBacklog. Cost: the period's snapshots (``(at)`` index).
        """
        end = end or self.clock.now()
        start = end - dt.timedelta(hours=24)
        queues = {name: _totals(t) for name, t in (await self.store.monitor.totals(start, end)).items()}
        total = _sum_totals(list(queues.values()))
        report = {"periodStart": iso(start), "periodEnd": iso(end), "queues": queues, "totals": total}
        stored = await self.store.monitor.store_report(start, end, self.clock.now(), report)
        if stored is report:
            log.info("daily performance report", extra={"event": "performance_report", "report": report})
        return stored

    # -- alerts ---------------------------------------------------------------------------

    async def check_alerts(self, extra: list[Condition] | None = None) -> list[Alert]:
        """Evaluate the thresholds on fresh figures; returns the alerts this call opened or resolved.

        ``extra`` are conditions found elsewhere (queues without a consumer, failing tasks), held
        to the same rules. A crossed threshold opens one alert per (kind, queue) and leaves it open
        while the condition lasts: the database's unique index on open alerts keeps it to one even
        when several processes check at once, and the checks of all processes are serialised (an
        advisory lock held for the check), so none acts on figures older than another's result.
        An open alert whose condition cleared is resolved. Each opening and resolution is logged
        (events ``alert_opened``, ``alert_resolved``) by the one process that made it. Raises
        DatabaseError when the database cannot be reached.
        """
        changed: list[Alert] = []
        async with self.store.transaction() as tx:
            await tx.monitor.lock_alerts()
            now = self.clock.now()
            thresholds = merged(self.thresholds.configured, await tx.monitor.thresholds())
            figures = await self._figures(fresh=True, where=tx)
            found = _conditions(figures, thresholds) + list(extra or [])
            conditions = {(c.kind, c.queue, c.subject): c for c in found}
            open_now = {(a.kind, a.queue, a.subject): a for a in await tx.monitor.open_alerts()}
            for key, c in conditions.items():
                if key in open_now:
                    continue
                opened = await tx.monitor.open_alert(c.queue, c.kind, c.message, c.value, c.threshold, now, c.subject)
                if opened is not None:  # None: another process opened it first
                    changed.append(opened)
            cleared = [a.id for key, a in open_now.items() if key not in conditions]
            if cleared:
                changed.extend(await tx.monitor.resolve_alerts(cleared, now))
            if self.notifier is not None:
                still_open = [a for key, a in open_now.items() if key in conditions]
                await self.notifier.record(tx, changed, still_open, now)
        for alert in changed:  # committed: now say so
            if alert.resolved_at is None:
                log.warning(
                    "alert opened",
                    extra={
                        "event": "alert_opened",
                        "alert_id": alert.id,
                        "kind": alert.kind,
                        "queue": alert.queue,
                        "subject": alert.subject,
                        "value": alert.value,
                        "threshold": alert.threshold,
                        "alert_message": alert.message,
                    },
                )
            else:
                log.info(
                    "alert resolved",
                    extra={
                        "event": "alert_resolved",
                        "alert_id": alert.id,
                        "kind": alert.kind,
                        "queue": alert.queue,
                        "opened_at": iso(alert.opened_at),
                    },
                )
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
        return await self.store.monitor.alerts(status, limit)


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


def _point(at: dt.datetime, b: Bucket | None) -> dict[str, Any]:
    t = b.totals if b is not None else Totals()
    return {
        "at": iso(at),
        "completed": t.succeeded,
        "failed": t.failed,
        "deadLettered": t.dead,
        "attempts": t.attempts,
        "failureRate": round(_rate(t.failed, t.attempts), 2),
        "avgProcessingTime": round(t.avg_ms, 1) if t.avg_ms is not None else 0.0,
        "p95ProcessingTime": round(t.p95_ms, 1) if t.p95_ms is not None else 0.0,
        "backlog": b.backlog if b is not None else 0,
        "peakBacklog": t.peak_backlog,
        "deadLetters": b.dead_letters if b is not None else 0,
    }


def _totals(t: Totals | None) -> dict[str, Any]:
    """Figures summed over a range of snapshots."""
    t = t or Totals()
    return {
        "completed": t.succeeded,
        "failed": t.failed,
        "deadLettered": t.dead,
        "attempts": t.attempts,
        "failureRate": round(_rate(t.failed, t.attempts), 2),
        "avgProcessingTime": round(t.avg_ms, 1) if t.avg_ms is not None else 0.0,
        "p95ProcessingTime": round(t.p95_ms, 1) if t.p95_ms is not None else 0.0,
        "peakBacklog": t.peak_backlog,
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
