"""Numbers, durations, times, trends and queue figures as short text for tables (pure functions)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from rich.text import Text

from fleetbox.protocol import LimiterState, QueueRow

_BLOCKS = "▁▂▃▄▅▆▇█"
#: what a table shows for "no data" (an en dash)
DASH = "\u2013"
#: before the name of a queue with jobs that no live appliance can run
NO_CONSUMER = "⚠ "


def count(value: int) -> str:
    """``1,204``."""
    return f"{value:,}"


def ms(value: float | None) -> str:
    """``180ms``, ``3.2s``; a dash without data."""
    if value is None:
        return DASH
    return f"{value:.0f}ms" if value < 1000 else f"{value / 1000:.1f}s"


def duration(seconds: float | None) -> str:
    """``42s``, ``9m12s``, ``3h04m``, ``3d4h``; a dash without data."""
    if seconds is None:
        return DASH
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def epoch(iso: str | None) -> float | None:
    """An ISO 8601 time of the admin API as seconds since the epoch."""
    if iso is None:
        return None
    parsed = dt.datetime.fromisoformat(iso)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def ago(iso: str | None, now: float) -> str:
    """``7m ago`` for an ISO time; a dash without one."""
    t = epoch(iso)
    if t is None:
        return DASH
    return f"{duration(max(0.0, now - t))} ago"


def clock(iso: str | None) -> str:
    """``2026-01-05 14:02:11`` (UTC) for an ISO time."""
    t = epoch(iso)
    return DASH if t is None else dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def trend(values: Sequence[float], width: int) -> str:
    """A sparkline of block characters, ``width`` wide: the maximum of each bucket, scaled to the
    largest value (a per-row trend in a table cell, where a Sparkline widget cannot go)."""
    if width <= 0:
        return ""
    if not values:
        return " " * width
    size = len(values)
    buckets = []
    for i in range(width):
        start, end = i * size // width, max((i + 1) * size // width, i * size // width + 1)
        chunk = values[start : min(end, size)]
        buckets.append(max(chunk) if chunk else 0.0)
    top = max(buckets)
    if top <= 0:
        return _BLOCKS[0] * width
    return "".join(_BLOCKS[min(len(_BLOCKS) - 1, int(b / top * (len(_BLOCKS) - 1) + 0.5))] for b in buckets)


def limiter_text(limiter: LimiterState | None, now: float) -> Text:
    """``10/s 3.5`` (rate and tokens left), ``paused 12s`` or a dash."""
    if limiter is None:
        return Text(DASH)
    if limiter["pausedUntil"] is not None and limiter["pausedUntil"] > now:
        return Text(f"hold {duration(limiter['pausedUntil'] - now)}", style="bold yellow")
    return Text(limit_text(limiter), style="yellow" if limiter["throttled"] else "")


def limit_text(limiter: LimiterState) -> str:
    """``50/s 1`` (rate and tokens left), ``16.7/s 4 per mailbox``, ``5 at once``, or a dash."""
    parts = []
    if limiter["ratePerSecond"] is not None:
        parts.append(f"{limiter['ratePerSecond']:.3g}/s")
        if limiter["available"] is not None:
            parts.append(f"{limiter['available']:.0f}")
    concurrency = limiter.get("concurrency")
    if concurrency is not None:
        per = limiter.get("per", "appliance")
        parts.append(f"{concurrency} per {per}" if per != "appliance" else f"{concurrency} at once")
    return " ".join(parts) or DASH


def backlog(row: QueueRow) -> int:
    """Jobs of the queue not yet started: waiting (due), scheduled and retrying."""
    return row["waiting"] + row["scheduled"] + row["retrying"]


def unconsumed(row: QueueRow) -> bool:
    """The queue has jobs but no live appliance can run it (none has its handler)."""
    return row.get("consumers") == 0 and backlog(row) > 0
