"""The live stream behind ``GET /api/queue/stream``: one sampler, history rings, and fan-out.

One :class:`Stream` per admin application. Its sampler task reads the database at most once per
``period`` (1 s), and only while someone is subscribed, with the queries of
``sql/queries/stream.sql``:

- per-second attempts per queue (done, failed, mean duration) from the ``(queue, finished_at)``
  index, for the seconds since the previous sample (the last few again, for late writes): they
  feed the history rings (15 minutes per queue, in memory) and the one-minute figures of a tick;
- the queue depth (a count of the hot jobs table, as health does), recounted at most every
  ``DEPTH_COST_FACTOR`` times its last duration, so a large backlog cannot make the sampler a
  load: ``statsAgeMs`` says how old the depth is;
- p95 duration over the latest attempts of the last minute (bounded by ``P95_ATTEMPTS``), open
  unreviewed dead letters (partial index), open alerts (partial index), pause flags;
- new ``audit_log`` rows and new dead letters (primary-key ranges), which become events.

Each subscriber has a one-slot mailbox for ticks (a newer tick replaces one not yet sent) and a
short bounded list of events; the sampler only puts into mailboxes and never awaits a client, so a
slow or suspended client costs at most one tick and ``MAX_EVENTS`` events of memory and delays
nobody. Each WebSocket has its own writer task that takes from its mailbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web

from fleetbox.admin.errors import UPGRADED, compact_json
from fleetbox.errors import DatabaseError, FleetboxError
from fleetbox.models import Clock, QueueInfo, Tier
from fleetbox.protocol import (
    HISTORY_SECONDS,
    INTERVALS_MS,
    MAX_EVENT_IDS,
    PROTOCOL_VERSION,
    ApplianceInfo,
    ErrorFrame,
    Event,
    Hello,
    LimiterState,
    QueueHistory,
    QueueRow,
    Tick,
    TierName,
)
from fleetbox.store import Store
from fleetbox.store.audit import AuditEntry
from fleetbox.store.queues import QueueCounts
from fleetbox.store.stream import NewDeadLetter
from fleetbox.worker.pools import TierPool

log = logging.getLogger("fleetbox.admin.stream")

#: Returns the rate limiter state of the queues that have one (by queue name).
LimiterSource = Callable[[], Mapping[str, LimiterState]]

#: Seconds covered by a tick's donePerMinute, failureRate, avgMs and p95Ms.
WINDOW_SECONDS = 60
#: Seconds of attempts read again on every sample: the completer writes an attempt a few
#: milliseconds (under load, a little more) after it finished, so its second may still grow.
REREAD_SECONDS = 5
#: The queue depth is recounted no sooner than this many times its last duration after it.
DEPTH_COST_FACTOR = 20
#: The most attempts per queue the p95 is taken over (the latest of the window).
P95_ATTEMPTS = 5000
#: Audit rows and dead letters read per sample (the rest on the next ones).
BATCH = 1000
#: Ids read again on every sample: an id is taken at insert, so a row can become visible after a
#: higher one was read; the ids seen already are skipped.
REREAD_IDS = 100
#: Events kept per subscriber that has not read them; older ones are dropped and counted.
MAX_EVENTS = 256
#: The longest a sample may wait for the database before the tick says it is unreachable.
DB_TIMEOUT_SECONDS = 5.0
#: WebSocket ping interval; a client that does not answer within half of it is dropped.
HEARTBEAT_SECONDS = 10.0
#: How long closing a stream socket at shutdown may wait for the client.
CLOSE_SECONDS = 1.0
#: The largest message a client may send (a subscribe is a few dozen bytes).
MAX_CLIENT_MESSAGE = 4096
#: The close reason for a message nested deeper than the decoder's stack (close code 1007).
TOO_DEEP = b"message nested too deeply: send one flat JSON object per text frame"


class _HasId(Protocol):
    @property
    def id(self) -> int: ...


T = TypeVar("T", bound=_HasId)

TIER_NAMES: dict[Tier, TierName] = {Tier.HIGH: "high", Tier.MEDIUM: "medium", Tier.LOW: "low"}

#: audit_log action -> event kind
KINDS = {
    "queue.pause": "queue_paused",
    "queue.resume": "queue_resumed",
    "queue.clear": "queue_cleared",
    "job.enqueue": "job_enqueued",
    "job.retry": "job_retried",
    "dead.review": "dead_reviewed",
    "dead.discard": "dead_discarded",
    "dead.retry": "dead_retried",
    "monitor.thresholds": "thresholds_changed",
    "config.reload": "config_reloaded",
}


def check_interval(value: object) -> int:
    """A subscriber's tick interval in milliseconds, or ValueError naming the allowed ones."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in INTERVALS_MS:
        allowed = ", ".join(str(i) for i in INTERVALS_MS)
        raise ValueError(f"must be one of {allowed} (milliseconds), got {str(value)[:40]!r}")
    return value


class _Ring:
    """One queue's per-second figures of the last ``size`` seconds, indexed by epoch second."""

    __slots__ = ("avg", "done", "failed", "secs", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.secs = [-1] * size
        self.done = [0] * size
        self.failed = [0] * size
        self.avg: list[float | None] = [None] * size

    def put(self, sec: int, done: int, failed: int, avg: float | None) -> None:
        i = sec % self.size
        self.secs[i], self.done[i], self.failed[i], self.avg[i] = sec, done, failed, avg

    def _at(self, sec: int) -> tuple[int, int, float | None]:
        i = sec % self.size
        if self.secs[i] != sec:
            return 0, 0, None
        return self.done[i], self.failed[i], self.avg[i]

    def history(self, last: int) -> QueueHistory:
        first = last - self.size + 1
        points = [self._at(sec) for sec in range(first, last + 1)]
        return QueueHistory(
            t0=float(first),
            stepSeconds=1,
            done=[p[0] for p in points],
            failed=[p[1] for p in points],
            avgMs=[p[2] for p in points],
        )

    def window(self, last: int, seconds: int) -> tuple[int, int, float | None]:
        """Done, failed and the mean duration over the ``seconds`` ending with second ``last``."""
        done = failed = 0
        weighted = 0.0
        for sec in range(last - seconds + 1, last + 1):
            d, f, avg = self._at(sec)
            done += d
            failed += f
            if avg is not None:
                weighted += avg * (d + f)
        attempts = done + failed
        return done, failed, (weighted / attempts if attempts else None)


class _Cursor(Generic[T]):
    """Reads rows by increasing id without losing one that commits after a higher id was read:
    the last ``REREAD_IDS`` ids are read again and those already seen are skipped."""

    def __init__(self) -> None:
        self.floor: int | None = None
        self._seen: set[int] = set()

    def reset(self, last_id: int) -> None:
        self.floor = last_id
        self._seen.clear()

    def fresh(self, rows: Iterable[T]) -> list[T]:
        assert self.floor is not None
        out = [r for r in rows if r.id not in self._seen]
        if out:
            top = max(r.id for r in out)
            self._seen.update(r.id for r in out)
            self.floor = max(self.floor, top - REREAD_IDS)
            self._seen = {i for i in self._seen if i > self.floor}
        return out


class Subscriber:
    """One stream client's mailbox: the latest tick (one slot) and a bounded list of events."""

    def __init__(self, interval_ms: int, due: float) -> None:
        self.interval_ms = interval_ms
        #: when (the stream's monotonic time) the next tick is due
        self.due = due
        self.missed = 0
        self._tick: Tick | None = None
        self._events: deque[Event | ErrorFrame] = deque()
        self._ready = asyncio.Event()
        self._closed = False

    @property
    def pending(self) -> int:
        """Frames waiting to be sent (at most one tick and ``MAX_EVENTS`` events)."""
        return len(self._events) + (self._tick is not None)

    def offer_tick(self, tick: Tick) -> None:
        self._tick = tick  # a tick not yet sent is replaced: a slow client gets the latest only
        self._ready.set()

    def offer(self, frame: Event | ErrorFrame) -> None:
        if len(self._events) >= MAX_EVENTS:
            self._events.popleft()
            self.missed += 1
        self._events.append(frame)
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    async def take(self, now: Callable[[], float]) -> list[Any] | None:
        """The frames to send now, in order (None: the subscription is closed)."""
        await self._ready.wait()
        self._ready.clear()
        if self._closed:
            return None
        frames: list[Any] = []
        if self.missed:
            frames.append(Event(type="event", kind="events_missed", queue=None, t=now(), count=self.missed))
            self.missed = 0
        frames.extend(self._events)
        self._events.clear()
        if self._tick is not None:
            frames.append(self._tick)
            self._tick = None
        return frames


@dataclass(slots=True)
class _Depth:
    rows: dict[str, QueueCounts]
    #: the stream's monotonic time of the count
    at: float


class Stream:
    """The sampler, its history rings and the subscribers of one admin application.

    Args:
        store: the appliance's database.
        clock: the time of ticks and of the figures (the appliance's clock).
        info: who answers (sent in hello).
        pools: the appliance's tier pools (workers busy and pool sizes); empty when the admin
            application runs without an appliance.
        limiter: the rate limiter state per queue, or None where there is none.
        draining: whether the appliance is stopping (finishing its jobs), for every tick.
        period: seconds between samples while anyone is subscribed (None: only :meth:`step`
            samples, which tests call themselves).
        monotonic: the time subscribers' intervals are measured in (tests pass their own).
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock,
        info: ApplianceInfo,
        pools: Mapping[Tier, TierPool] | None = None,
        limiter: LimiterSource | None = None,
        consumers: Callable[[], Awaitable[Mapping[str, int]]] | None = None,
        draining: Callable[[], bool] | None = None,
        period: float | None = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.clock = clock
        self.info = info
        self.pools = pools or {}
        self.limiter = limiter
        self.consumers = consumers
        self.draining = draining
        self._consumers: Mapping[str, int] | None = None
        self.period = period
        self.monotonic = monotonic
        self.seq = 0
        self.subscribers: set[Subscriber] = set()
        self._rings: dict[str, _Ring] = {}
        self._filled: int | None = None
        self._depth: _Depth | None = None
        self._depth_next = -math.inf
        self._p95: dict[str, float] = {}
        self._queues: list[QueueInfo] = []
        self._dead: dict[str, int] = {}
        self._alerts = 0
        self._events_from_now = False
        self._audit: _Cursor[AuditEntry] = _Cursor()
        self._dead_cursor: _Cursor[NewDeadLetter] = _Cursor()
        self._db_error: str | None = None
        self._latest: Tick | None = None
        self._latest_at = -math.inf
        self._lock = asyncio.Lock()
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the sampler task (it samples only while anyone is subscribed)."""
        if self.period is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="fleetbox.admin.stream")

    async def stop(self) -> None:
        """Stop the sampler and close every subscription."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sub in list(self.subscribers):
            sub.close()
        self.subscribers.clear()

    async def _run(self) -> None:
        assert self.period is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self.subscribers:
                self._wanted.clear()
                await self._wanted.wait()
            started = loop.time()
            try:
                await self.step()
            except Exception:  # a bug here must not end the stream for everyone: log and go on
                log.exception("stream sample failed", extra={"event": "stream_sample_failed"})
            await asyncio.sleep(max(0.0, self.period - (loop.time() - started)))

    # -- subscribers -------------------------------------------------------------------------

    def subscribe(self, interval_ms: int = INTERVALS_MS[0]) -> Subscriber:
        """A new subscriber; its first tick is due one interval from now (hello carries the current one)."""
        sub = Subscriber(check_interval(interval_ms), self.monotonic() + interval_ms / 1000)
        if not self.subscribers:
            # Nobody watched: what happened meanwhile is not news. Events start from now: the
            # next sample moves the cursors (a sample in progress keeps them as they are).
            self._events_from_now = True
        self.subscribers.add(sub)
        self._wanted.set()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        sub.close()

    def set_interval(self, sub: Subscriber, interval_ms: object) -> None:
        """Change a subscriber's interval (ValueError naming the allowed ones)."""
        sub.interval_ms = check_interval(interval_ms)
        sub.due = min(sub.due, self.monotonic() + sub.interval_ms / 1000)

    async def hello(self) -> Hello:
        """The first message of a subscription: who answers, a current tick and the history."""
        fresh = self.period if self.period is not None else 0.0
        if self._latest is None or self.monotonic() - self._latest_at > fresh:
            await self.step()
        tick = self._latest
        assert tick is not None
        last = math.floor(tick["t"])
        return Hello(
            type="hello",
            protocol=PROTOCOL_VERSION,
            appliance=self.info,
            snapshot=tick,
            history={q.name: self._ring(q.name).history(last) for q in self._queues if q.tier is not Tier.DEAD},
        )

    # -- sampling ----------------------------------------------------------------------------

    async def step(self) -> Tick:
        """Sample the database once, then hand the tick to every subscriber whose interval is due
        and the new events to all. Never waits for a client."""
        async with self._lock:
            now = self.clock.now()
            mono = self.monotonic()
            events: list[Event] = []
            try:
                async with asyncio.timeout(DB_TIMEOUT_SECONDS):
                    events = await self._sample(now, mono)
                if self._db_error is not None:
                    log.info("stream: database reachable again", extra={"event": "stream_database_ok"})
                self._db_error = None
            except (DatabaseError, TimeoutError, OSError) as exc:
                if self._db_error is None:
                    log.warning(
                        "stream: database unreachable, ticks carry the last figures",
                        extra={"event": "stream_database_error", "error": str(exc)},
                    )
                # The driver's message may quote stored values: it is logged, the client gets the gist.
                self._db_error = (
                    f"no answer within {DB_TIMEOUT_SECONDS:g} s"
                    if isinstance(exc, TimeoutError)
                    else "the database is unreachable or failed; the appliance log has the details"
                )
            tick = self._tick(now, mono)
            self._latest, self._latest_at = tick, mono
            for sub in list(self.subscribers):
                for event in events:
                    sub.offer(event)
                # Half a period of slack: samples drift a little, and a 1 s subscriber must get every one.
                if sub.due <= mono + (self.period or 0.0) / 2:
                    sub.offer_tick(tick)
                    sub.due = max(sub.due + sub.interval_ms / 1000, mono + sub.interval_ms / 2000)
            return tick

    def _ring(self, queue: str) -> _Ring:
        ring = self._rings.get(queue)
        if ring is None:
            ring = self._rings[queue] = _Ring(HISTORY_SECONDS)
        return ring

    async def _sample(self, now: dt.datetime, mono: float) -> list[Event]:
        sec = math.floor(now.timestamp())
        if self._events_from_now:
            self._events_from_now = False
            self._audit.floor = None
            self._dead_cursor.floor = None
        if self.consumers is not None:
            self._consumers = await self.consumers()
        async with self.store.transaction() as tx:
            self._queues = await tx.queues.all()
            self._dead = await tx.queues.open_dead_letters(unreviewed_only=True)
            self._alerts = await tx.monitor.count_open_alerts()
            if mono >= self._depth_next:
                began = time.perf_counter()
                self._depth = _Depth(await tx.queues.counts(now, oldest=True), mono)
                self._depth_next = mono + DEPTH_COST_FACTOR * (time.perf_counter() - began)
            start = sec - HISTORY_SECONDS + 1
            if self._filled is not None:
                start = max(start, self._filled - REREAD_SECONDS)
            for second in await tx.stream.seconds(dt.datetime.fromtimestamp(start, dt.UTC)):
                self._ring(second.queue).put(second.sec, second.done, second.failed, second.avg_ms)
            self._filled = sec
            since = now - dt.timedelta(seconds=WINDOW_SECONDS)
            self._p95 = {q: p for q, p in (await tx.stream.p95(since, P95_ATTEMPTS)).items() if p is not None}
            events: list[Event] = []
            if self._audit.floor is None:
                self._audit.reset(await tx.audit.last_id())
            else:
                events += _audit_events(self._audit.fresh(await tx.audit.after(self._audit.floor, BATCH)))
            if self._dead_cursor.floor is None:
                self._dead_cursor.reset(await tx.stream.last_dead_letter_id())
            else:
                added = self._dead_cursor.fresh(await tx.stream.dead_letters_after(self._dead_cursor.floor, BATCH))
                t = now.timestamp()
                events += [
                    Event(type="event", kind="dead_added", queue=queue, count=n, t=t)
                    for queue, n in Counter(d.queue for d in added).items()
                ]
        return events

    def _tick(self, now: dt.datetime, mono: float) -> Tick:
        self.seq += 1
        sec = math.floor(now.timestamp())
        busy = Counter(e.job.queue for p in self.pools.values() for e in p.running.values())
        limits = self.limiter() if self.limiter is not None else {}
        depth = self._depth.rows if self._depth is not None else {}
        queues: list[QueueRow] = []
        for q in self._queues:
            tier = q.tier
            if tier is Tier.DEAD:
                continue  # holds dead letters and runs nothing: its letters count on their own queues
            name = q.name
            d = depth.get(name) or QueueCounts()
            done, failed, avg = self._ring(name).window(sec, WINDOW_SECONDS)
            oldest = d.oldest_due
            pool = self.pools.get(tier)
            row = QueueRow(
                name=name,
                tier=TIER_NAMES[tier],
                paused=q.paused,
                waiting=d.waiting,
                scheduled=d.scheduled,
                running=d.running,
                retrying=d.retrying,
                deadUnreviewed=self._dead.get(name, 0),
                donePerMinute=float(done * 60 / WINDOW_SECONDS),
                failureRate=round(100.0 * failed / (done + failed), 2) if done + failed else 0.0,
                avgMs=round(avg, 1) if avg is not None else None,
                p95Ms=round(self._p95[name], 1) if name in self._p95 else None,
                oldestWaitingSeconds=max(0.0, (now - oldest).total_seconds()) if oldest is not None else None,
                workers={"busy": busy.get(name, 0), "size": pool.size if pool is not None else 0},
                limiter=limits.get(name),
            )
            if self._consumers is not None:
                row["consumers"] = self._consumers.get(name, 0)
            queues.append(row)
        age = (mono - self._depth.at) * 1000 if self._depth is not None else 0.0
        return Tick(
            type="tick",
            seq=self.seq,
            t=now.timestamp(),
            statsAgeMs=round(max(0.0, age), 1),
            database={"ok": self._db_error is None, "error": self._db_error},
            deadUnreviewed=sum(self._dead.values()),
            alertsOpen=self._alerts,
            queues=queues,
            draining=self.draining() if self.draining is not None else False,
        )


def _audit_events(rows: list[AuditEntry]) -> list[Event]:
    """Audit rows as events: the rows of one action by one actor on one queue within a sample
    (a bulk retry writes one per dead letter) become one event with a count."""
    groups: dict[tuple[str, str | None, str], list[AuditEntry]] = {}
    for r in rows:
        kind = KINDS.get(r.action, r.action.replace(".", "_"))
        groups.setdefault((kind, r.queue, r.actor), []).append(r)
    events = []
    for (kind, queue, actor), group in groups.items():
        job_ids = [r.job_id for r in group if r.job_id is not None]
        event = Event(
            type="event",
            kind=kind,
            queue=queue,
            t=max(r.at for r in group).timestamp(),
            by=actor,
            jobIds=job_ids[:MAX_EVENT_IDS],
            count=len(group),
        )
        detail = _detail(kind, group)
        if detail:
            event["detail"] = detail
        events.append(event)
    return events


def _detail(kind: str, group: list[AuditEntry]) -> dict[str, object]:
    details = [r.details for r in group]
    dead_ids = [r.dead_letter_id for r in group if r.dead_letter_id is not None][:MAX_EVENT_IDS]
    out: dict[str, object] = {}
    if dead_ids:
        out["deadLetterIds"] = dead_ids
    if kind == "dead_retried":
        out["newJobIds"] = [int(d["job_id"]) for d in details if isinstance(d.get("job_id"), int)][:MAX_EVENT_IDS]
    elif kind == "queue_cleared":
        out["cleared"] = sum(int(d.get("cleared", 0)) for d in details)
    elif kind == "thresholds_changed":
        out["changes"] = details[-1].get("changes", {})
    elif kind == "config_reloaded":
        out["needsRestart"] = details[-1].get("needsRestart", [])
    elif kind == "dead_reviewed" and details[-1].get("notes") is not None:
        out["notes"] = details[-1]["notes"]
    return out


# -- the WebSocket -----------------------------------------------------------------------------


def _client_error(field: str | None, message: str) -> ErrorFrame:
    return ErrorFrame(type="error", field=field, message=message)


def handle_message(stream: Stream, sub: Subscriber, data: str) -> ErrorFrame | None:
    """Apply one client message; an error frame naming the field when it is refused."""
    try:
        message = json.loads(data)
    except ValueError:
        return _client_error("body", "not JSON: send one JSON object per text frame")
    if not isinstance(message, dict):
        return _client_error("body", f"must be a JSON object, got {type(message).__name__}")
    if message.get("type") != "subscribe":
        return _client_error("type", f"unknown message type {str(message.get('type'))[:40]!r}; known: subscribe")
    unknown = sorted(str(k)[:40] for k in message if k not in ("type", "intervalMs"))
    if unknown:
        return _client_error(unknown[0], f"unknown field(s) {', '.join(unknown[:5])}; known: type, intervalMs")
    try:
        stream.set_interval(sub, message.get("intervalMs"))
    except ValueError as exc:
        return _client_error("intervalMs", str(exc))
    return None


class Sockets:
    """The open stream WebSockets of an application, closed on shutdown before the runner's cleanup."""

    def __init__(self) -> None:
        self._open: dict[web.WebSocketResponse, web.Request] = {}

    def add(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self._open[ws] = request

    def discard(self, ws: web.WebSocketResponse) -> None:
        self._open.pop(ws, None)

    def __len__(self) -> int:
        return len(self._open)

    async def close_all(self) -> None:
        """Close every socket; one whose client does not take the close frame within
        ``CLOSE_SECONDS`` (a suspended client) is cut."""

        async def close(ws: web.WebSocketResponse, request: web.Request) -> None:
            try:
                async with asyncio.timeout(CLOSE_SECONDS):
                    await ws.close(code=WSCloseCode.GOING_AWAY, message=b"appliance stopping")
            except (TimeoutError, OSError, FleetboxError):
                if request.transport is not None:
                    request.transport.abort()

        await asyncio.gather(*(close(ws, req) for ws, req in list(self._open.items())))


async def serve(request: web.Request, stream: Stream, sockets: Sockets, info: ApplianceInfo) -> web.WebSocketResponse:
    """Run one stream WebSocket: hello, then ticks and events from the subscriber's mailbox, while
    reading subscribe messages. Returns when either side closes."""
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS, max_msg_size=MAX_CLIENT_MESSAGE)
    await ws.prepare(request)
    # From here on the connection speaks WebSocket: the error middleware must not answer in HTTP.
    request[UPGRADED] = ws
    sockets.add(ws, request)
    sub = stream.subscribe()
    writer: asyncio.Task[None] | None = None
    try:
        hello = await stream.hello()
        await ws.send_str(compact_json({**hello, "appliance": info}))
        writer = asyncio.get_running_loop().create_task(_write(ws, sub, stream), name="fleetbox.admin.stream.writer")
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                try:
                    error = handle_message(stream, sub, message.data)
                except RecursionError:
                    await ws.close(code=WSCloseCode.INVALID_TEXT, message=TOO_DEEP)
                    break
            else:
                error = _client_error("body", "send text frames holding JSON")
            if error is not None:
                sub.offer(error)
    except (ConnectionError, DatabaseError):
        pass  # the client went away, or the first sample failed: nothing to tell anyone
    except Exception:
        log.exception("stream failed unexpectedly", extra={"event": "admin_stream_error"})
        with contextlib.suppress(ConnectionError):
            await ws.close(
                code=WSCloseCode.INTERNAL_ERROR, message=b"internal error; the appliance log has the details"
            )
    finally:
        stream.unsubscribe(sub)
        sockets.discard(ws)
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await writer
    return ws


async def _write(ws: web.WebSocketResponse, sub: Subscriber, stream: Stream) -> None:
    """Send what the mailbox holds; waiting on a slow client blocks only this task."""
    while True:
        frames = await sub.take(lambda: stream.clock.now().timestamp())
        if frames is None or ws.closed:
            return
        for frame in frames:
            await ws.send_str(compact_json(frame))
