"""Numbers, durations, times, trends and queue figures as short text for tables (pure functions).

Everything here takes what the appliance sent as it came: a value of the wrong type (None where
text is expected, a string where a number is, NaN, a huge number, a deep JSON value) is shown as
a dash or as its text, never raised on, and text is plain (never Textual markup) with control
characters shown as escapes, so nothing the appliance stores can move the terminal's cursor or
change its colours.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text

from fleetbox.protocol import QueueRow

_BLOCKS = "▁▂▃▄▅▆▇█"
#: what a table shows for "no data" (an en dash)
DASH = "\u2013"
#: before the name of a queue with jobs that no live appliance can run
NO_CONSUMER = "⚠ "
#: what the terminal would act on rather than show: C0 controls but newline and tab, DEL, C1
#: controls, and lone surrogates (which no terminal encoding can carry)
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
#: the longest integer shown digit by digit (Python refuses to print longer ones)
_MAX_DIGITS_BITS = 4000 * 3


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(value: object, empty: str = DASH) -> str:
    """A value from the appliance as text to show: a string as it is, None as ``empty``, anything
    else as its JSON text; control characters and lone surrogates as ``\\x1b``-style escapes."""
    if value is None:
        return empty
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float):
        text = number(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (ValueError, RecursionError):  # too deep, or an integer too long to print
            text = f"({type(value).__name__} too large to show)"
    return UNSAFE.sub(_escape, text)


def finite(value: object) -> float | None:
    """A JSON number as a float; None for anything else (text, NaN, infinity, too large)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        result = float(value)
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


def number(value: object, grouped: bool = False) -> str:
    """A JSON number as it is (``true``/``false`` for booleans; ``grouped``: ``1,204``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value.bit_length() > _MAX_DIGITS_BITS:
            return f"({value.bit_length()}-bit number)"
        return f"{value:,}" if grouped else str(value)
    if isinstance(value, float):
        return format(value, ",.15g" if grouped else ".15g") if math.isfinite(value) else str(value)
    return plain(value)


def fixed(value: object, spec: str) -> str:
    """A number in a format (``fixed(12.34, ".1f")`` is ``12.3``); a dash for anything else."""
    f = finite(value)
    return DASH if f is None else format(f, spec)


def field(row: object, key: str) -> Any:
    """``row[key]``, or None when the row is not an object or lacks the key."""
    return row.get(key) if isinstance(row, Mapping) else None


def count(value: object) -> str:
    """``1,204`` for an integer; the value's text for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return number(value, grouped=True)
    f = finite(value)
    return f"{f:,.0f}" if f is not None else plain(value)


def counted(value: object, noun: str) -> str:
    """``1 attempt``, ``3 attempts``: :func:`count` with its noun, singular for exactly one."""
    one = isinstance(value, int) and not isinstance(value, bool) and value == 1
    return f"{count(value)} {noun}{'' if one else 's'}"


def ms(value: object) -> str:
    """``180ms``, ``3.2s``; a dash without data."""
    f = finite(value)
    if f is None:
        return DASH
    return f"{f:.0f}ms" if f < 1000 else f"{f / 1000:.1f}s"


def duration(seconds: object) -> str:
    """``42s``, ``9m12s``, ``3h04m``, ``3d4h``; a dash without data."""
    f = finite(seconds)
    if f is None:
        return DASH
    seconds = f
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def epoch(iso: object) -> float | None:
    """An ISO 8601 time of the admin API as seconds since the epoch; None for anything else."""
    if not isinstance(iso, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(iso)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    except (ValueError, OverflowError):
        return None


def ago(iso: object, now: float) -> str:
    """``7m ago`` for an ISO time; a dash without one."""
    t = epoch(iso)
    if t is None:
        return DASH
    return f"{duration(max(0.0, now - t))} ago"


def clock(iso: object) -> str:
    """``2026-01-05 14:02:11`` (UTC) for an ISO time; a dash for anything else."""
    t = epoch(iso)
    if t is None:
        return DASH
    try:
        return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (ValueError, OverflowError, OSError):  # a time zone offset past year 1 or 9999
        return DASH


def trend(values: Sequence[object], width: int) -> str:
    """A sparkline of block characters, ``width`` wide: the maximum of each bucket, scaled to the
    largest value (a per-row trend in a table cell, where a Sparkline widget cannot go)."""
    if width <= 0:
        return ""
    if not values:
        return " " * width
    numbers = [max(0.0, finite(v) or 0.0) for v in values]
    size = len(numbers)
    buckets = []
    for i in range(width):
        start, end = i * size // width, max((i + 1) * size // width, i * size // width + 1)
        chunk = numbers[start : min(end, size)]
        buckets.append(max(chunk) if chunk else 0.0)
    top = max(buckets)
    if top <= 0:
        return _BLOCKS[0] * width
    return "".join(_BLOCKS[min(len(_BLOCKS) - 1, int(b / top * (len(_BLOCKS) - 1) + 0.5))] for b in buckets)


def held_for(limiter: object, now: float) -> float | None:
    """Seconds the limiter still holds its requests back (a 429's Retry-After), if it does."""
    until = finite(field(limiter, "pausedUntil"))
    return until - now if until is not None and until > now else None


def limiter_text(limiter: object, now: float) -> Text:
    """``10/s 3.5`` (rate and tokens left), ``paused 12s`` or a dash."""
    if not isinstance(limiter, Mapping):
        return Text(DASH)
    held = held_for(limiter, now)
    if held is not None:
        return Text(f"hold {duration(held)}", style="bold yellow")
    return Text(limit_text(limiter), style="yellow" if field(limiter, "throttled") else "")


def limit_text(limiter: object) -> str:
    """``50/s 1`` (rate and tokens left), ``16.7/s 4 per mailbox 4 at once`` (Outlook: per mailbox
    and across all mailboxes), ``5 at once``, ``3 busy`` when requests hold slots, or a dash."""
    parts = []
    rate = finite(field(limiter, "ratePerSecond"))
    if rate is not None:
        parts.append(f"{rate:.3g}/s")
        available = finite(field(limiter, "available"))
        if available is not None:
            parts.append(f"{available:.0f}")
    concurrency = field(limiter, "concurrency")
    if concurrency is not None:
        per = plain(field(limiter, "per"), "appliance")
        shown = count(concurrency)
        parts.append(f"{shown} per {per}" if per != "appliance" else f"{shown} at once")
    app = field(limiter, "appConcurrency")
    if app is not None:
        parts.append(f"{count(app)} at once")
    in_use = field(limiter, "inUse")
    if in_use:
        parts.append(f"{count(in_use)} busy")
    return " ".join(parts) or DASH


def whole(value: object) -> int:
    """A count the appliance sent, as an int (0 for anything that is not one)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def backlog(row: QueueRow) -> int:
    """Jobs of the queue not yet started: waiting (due), scheduled and retrying."""
    return sum(whole(field(row, key)) for key in ("waiting", "scheduled", "retrying"))


def unconsumed(row: QueueRow) -> bool:
    """The queue has jobs but no live appliance can run it (none has its handler)."""
    return field(row, "consumers") == 0 and backlog(row) > 0
