"""What the TUI knows of the appliance: the latest tick, per-queue series for the charts, and
whether the stream is live. Plain data, filled by the app's stream worker, read by every screen."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import accumulate

from fleetbox.protocol import HISTORY_SECONDS, ApplianceInfo, Hello, QueueHistory, QueueRow, Tick

#: the window of ``donePerMinute`` (and of the failure rate rebuilt from history)
_MINUTE = 60


class Link(StrEnum):
    """How fresh the data on screen is."""

    #: not connected yet
    CONNECTING = "connecting"
    #: ticks arrive on time
    LIVE = "live"
    #: connected, but no tick for a while (or the appliance's figures are old)
    STALE = "stale"
    #: the appliance went away; the data shown is the last received
    DISCONNECTED = "disconnected"


@dataclass
class QueueSeries:
    """One queue's recent figures, oldest first, one point per second of history or per tick."""

    done_per_minute: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_SECONDS))
    failure_rate: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_SECONDS))
    avg_ms: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_SECONDS))
    p95_ms: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_SECONDS))

    def seed(self, history: QueueHistory) -> None:
        """Rebuild the series from the per-second history sent with hello."""
        done, failed = history["done"], history["failed"]
        n = min(len(done), len(failed))
        # running sums over the last minute, from cumulative sums (no per-second Python loop)
        done_cum = list(accumulate(done[:n], initial=0))
        failed_cum = list(accumulate(failed[:n], initial=0))
        done_min = [done_cum[i + 1] - done_cum[max(0, i + 1 - _MINUTE)] for i in range(n)]
        failed_min = [failed_cum[i + 1] - failed_cum[max(0, i + 1 - _MINUTE)] for i in range(n)]
        for series in (self.done_per_minute, self.failure_rate, self.avg_ms, self.p95_ms):
            series.clear()
        self.done_per_minute.extend(map(float, done_min))
        pairs = zip(done_min, failed_min, strict=True)
        self.failure_rate.extend(100.0 * f / (d + f) if d + f else 0.0 for d, f in pairs)
        self.avg_ms.extend(a or 0.0 for a in history["avgMs"])

    def add(self, row: QueueRow) -> None:
        """Append one tick's figures."""
        self.done_per_minute.append(row["donePerMinute"])
        self.failure_rate.append(row["failureRate"])
        self.avg_ms.append(row["avgMs"] or 0.0)
        self.p95_ms.append(row["p95Ms"] or 0.0)


def seed_series(history: dict[str, QueueHistory]) -> dict[str, QueueSeries]:
    """Every queue's chart series from a hello's history (pure: may run in a thread)."""
    out: dict[str, QueueSeries] = {}
    for name, queue_history in history.items():
        out[name] = QueueSeries()
        out[name].seed(queue_history)
    return out


@dataclass
class LiveState:
    """The appliance as the TUI last saw it."""

    appliance: ApplianceInfo | None = None
    tick: Tick | None = None
    #: queue name -> its row of the latest tick
    rows: dict[str, QueueRow] = field(default_factory=dict)
    series: dict[str, QueueSeries] = field(default_factory=dict)
    connected: bool = False
    #: local clock time of the latest hello or tick (None: none yet)
    received_at: float | None = None
    #: why the stream is down, and when the next attempt is due (local clock)
    down_reason: str | None = None
    retry_at: float | None = None
    #: dead letters added since the operator last loaded the list
    new_dead: int = 0
    #: dead letters reviewed, retried or discarded by someone else since the list was loaded
    changed_dead: int = 0

    def apply_hello(self, hello: Hello, now: float, *, series: dict[str, QueueSeries] | None = None) -> None:
        """A (re)connection: the appliance, a full snapshot and the history (``series``: the
        history already seeded by :func:`seed_series`, e.g. in a thread)."""
        self.appliance = hello["appliance"]
        self.series = seed_series(hello["history"]) if series is None else series
        self._take(hello["snapshot"], now)
        self.connected = True
        self.down_reason = None
        self.retry_at = None

    def apply_tick(self, tick: Tick, now: float) -> None:
        """A periodic update."""
        self._take(tick, now)
        for row in tick["queues"]:
            self.series.setdefault(row["name"], QueueSeries()).add(row)

    def _take(self, tick: Tick, now: float) -> None:
        self.tick = tick
        self.rows = {row["name"]: row for row in tick["queues"]}
        self.received_at = now

    def disconnected(self, reason: str, retry_at: float) -> None:
        """The stream went down; the data stays, marked old."""
        self.connected = False
        self.down_reason = reason
        self.retry_at = retry_at

    def age(self, now: float) -> float | None:
        """Seconds since the latest data arrived."""
        return None if self.received_at is None else max(0.0, now - self.received_at)

    def link(self, now: float, interval_s: float) -> Link:
        """Live, stale, disconnected or still connecting."""
        if self.received_at is None:
            return Link.CONNECTING if self.down_reason is None else Link.DISCONNECTED
        if not self.connected:
            return Link.DISCONNECTED
        age = now - self.received_at
        stats_age = (self.tick["statsAgeMs"] / 1000.0) if self.tick is not None else 0.0
        if age > 3 * interval_s + 1 or stats_age > 3 * interval_s + 5:
            return Link.STALE
        return Link.LIVE

    def queue_names(self) -> Iterable[str]:
        """The queues of the latest tick."""
        return self.rows.keys()
