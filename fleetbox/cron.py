"""Cron expressions in a time zone, with daylight-saving time handled on purpose.

A cron expression names wall-clock times: ``30 2 * * *`` is half past two local time. On the day
the clocks spring forward some wall-clock times do not exist, and on the day they fall back some
exist twice. fleetbox decides both explicitly, instead of leaving it to how a library walks UTC:

- a local time the spring-forward day skips runs once, at the first valid minute after the gap
  (``30 2 * * *`` in Europe/Berlin on the last Sunday of March runs at 03:00 local); several
  skipped times run once together;
- a local time the fall-back day repeats runs once, at its first occurrence (``dst = "once"``), or
  at both (``dst = "both"``).

Expressions: 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds FIRST
(``*/10 * * * * *``: every ten seconds), or an alias (``@hourly``, ``@daily``, ``@weekly``,
``@monthly``, ``@yearly``). Parsed by croniter over naive local wall-clock times, where there is no
DST to get wrong; the mapping to instants happens here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from fleetbox.errors import InvalidInput

#: Ticks computed at most per call (a cron of every second over a long downtime is cut here).
MAX_TICKS = 10_000


class DstPolicy(StrEnum):
    """What a wall-clock time repeated by the fall-back day does."""

    ONCE = "once"  #: runs at its first occurrence
    BOTH = "both"  #: runs at both


@dataclass(frozen=True, slots=True)
class Tick:
    """One run time: the instant, the wall-clock time the expression named, and what DST did."""

    at: dt.datetime
    #: the wall-clock time of the expression (naive, in the schedule's zone)
    local: dt.datetime
    #: None, "skipped-forward" (the named time did not exist: moved to the end of the gap),
    #: "repeated-first" or "repeated-second" (the named time existed twice)
    dst: str | None = None


def check(expression: object, field: str = "cron") -> str:
    """A cron expression croniter accepts (5 fields, 6 with seconds first, or an alias)."""
    if not isinstance(expression, str) or not 1 <= len(expression) <= 200:
        raise InvalidInput("must be a cron expression (a string)", field=field)
    text = " ".join(expression.split())
    if not croniter.is_valid(text, second_at_beginning=_has_seconds(text)):
        raise InvalidInput(
            f"not a cron expression: {text!r:.80} (minute hour day-of-month month day-of-week, "
            "seconds first for 6 fields, or @hourly, @daily, @weekly, @monthly, @yearly)",
            field=field,
        )
    return text


def zone(name: object, field: str = "timezone") -> ZoneInfo:
    """An IANA time zone by name."""
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        raise InvalidInput("must be an IANA time zone name such as UTC or Europe/Berlin", field=field)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(
            f"unknown time zone {name!r} (use an IANA name such as UTC or Europe/Berlin)", field=field
        ) from None


def _has_seconds(text: str) -> bool:
    return not text.startswith("@") and len(text.split()) == 6


def _exists(local: dt.datetime, tz: ZoneInfo) -> bool:
    """Whether a naive wall-clock time exists in ``tz`` (it does not inside a spring-forward gap)."""
    aware = local.replace(tzinfo=tz)
    return aware.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None) == local


def _repeated(local: dt.datetime, tz: ZoneInfo) -> bool:
    return local.replace(tzinfo=tz, fold=0).utcoffset() != local.replace(tzinfo=tz, fold=1).utcoffset()


def _instants(local: dt.datetime, tz: ZoneInfo, policy: DstPolicy) -> list[Tick]:
    if not _exists(local, tz):
        moved = local.replace(second=0, microsecond=0)
        while not _exists(moved, tz):  # a gap is at most a few hours: minutes until it ends
            moved += dt.timedelta(minutes=1)
        return [Tick(moved.replace(tzinfo=tz).astimezone(dt.UTC), local, "skipped-forward")]
    if _repeated(local, tz):
        first = Tick(local.replace(tzinfo=tz, fold=0).astimezone(dt.UTC), local, "repeated-first")
        if policy is DstPolicy.ONCE:
            return [first]
        return [first, Tick(local.replace(tzinfo=tz, fold=1).astimezone(dt.UTC), local, "repeated-second")]
    return [Tick(local.replace(tzinfo=tz).astimezone(dt.UTC), local)]


def ticks(
    expression: str,
    tz: ZoneInfo,
    *,
    after: dt.datetime,
    until: dt.datetime | None = None,
    count: int | None = None,
    dst: DstPolicy = DstPolicy.ONCE,
) -> list[Tick]:
    """The run times after the instant ``after``, up to ``until`` (inclusive) or ``count`` of them,
    in order, each instant once."""
    limit = min(count or MAX_TICKS, MAX_TICKS)
    # Start the wall-clock walk an hour or two early: a time near ``after`` may map to an instant
    # on either side of it around a DST change; instants at or before ``after`` are dropped below.
    start = after.astimezone(tz).replace(tzinfo=None) - dt.timedelta(hours=3)
    walk = croniter(expression, start, second_at_beginning=_has_seconds(expression))
    out: list[Tick] = []
    seen: set[dt.datetime] = set()
    while True:
        local: dt.datetime = walk.get_next(dt.datetime)
        earliest = local.replace(tzinfo=tz, fold=0).astimezone(dt.UTC)
        if until is not None and earliest > until + dt.timedelta(hours=3):
            break
        # Around a fall-back change instants come out of wall-clock order (a repeated time's
        # second occurrence is later than the next times' first): stop only once no later
        # wall-clock time can still give an instant among the first ``limit``.
        if len(out) >= limit and earliest - dt.timedelta(hours=3) > sorted(t.at for t in out)[limit - 1]:
            break
        for tick in _instants(local, tz, dst):
            if tick.at <= after or (until is not None and tick.at > until) or tick.at in seen:
                continue
            seen.add(tick.at)
            out.append(tick)
    out.sort(key=lambda t: t.at)
    return out[:limit]


def next_tick(expression: str, tz: ZoneInfo, after: dt.datetime, dst: DstPolicy = DstPolicy.ONCE) -> Tick:
    """The first run time after the instant ``after``."""
    return ticks(expression, tz, after=after, count=1, dst=dst)[0]
