"""Limits on calls to Microsoft Graph: rate buckets, concurrency, and pauses after a 429.

=============== ============================================================================
resource        limit (``RateLimitSettings``)
=============== ============================================================================
every request   ``graph_requests`` per ``graph_period_seconds`` across the appliance (Graph's
                global limit per app: 130,000 per 10 s)
teams           ``teams_per_second`` across the appliance, and ``teams_per_chat_per_second``
                into each chat or channel (the key)
outlook         ``outlook_requests`` per ``outlook_period_seconds`` and
                ``outlook_concurrent_per_mailbox`` requests at once, per mailbox (the key), and
                ``outlook_concurrent`` at once across all mailboxes (Graph counts 4 per app);
                ``outlook_upload_bytes`` uploaded per ``outlook_upload_period_seconds`` per
                mailbox (:meth:`Limiters.upload_bytes`: attachment chunks and request bodies)
attachments     ``attachments_concurrent`` transfers at once (:meth:`Limiters.operation`)
anything else   no rate of its own; it can still be paused
=============== ============================================================================

The request buckets are aiolimiter leaky buckets holding one request: requests go out evenly
spaced, never in a burst. The upload budget is a sliding window of bytes (:class:`ByteWindow`): a
leaky bucket the size of the budget would let up to twice the budget into one window.

Every limit is this process's own: with several appliances on one database each keeps its own
budgets (the README says to give each 1/N); only Graph's pauses are shared (:class:`PauseSync`).

:meth:`Limiters.gauges` reads every limiter for ``/metrics``: its capacity, what is in use or
available, and how often it made a request wait.

A 429 (or 503/504) pauses the resource until its Retry-After has passed, so the jobs waiting for
it do not all hit Graph again: Outlook throttles each mailbox on its own, so there the pause
covers that mailbox; for every other resource Graph does not say which of its limits was hit, so
the pause covers the whole resource.

**Waiting never holds a worker slot for long.** Inside a job (:meth:`Limiters.job`), a request
whose limiter predicts a wait over ``defer_after_seconds`` (a pause, or a bucket with requests queued
ahead) does not wait: it reserves the next free turn of that limiter and raises
:class:`~fleetbox.errors.Deferred` for it, so the job gives its slot back and runs again at its
turn without using an attempt (mail on the same tier is not stuck behind throttled Teams posts).
A job back at its turn waits in its slot for the short rest. Turns are kept per process.

Waits longer than a millisecond and 429s are reported as :class:`RateEvent` to ``record``;
:class:`RateEventWriter` writes them to ``rate_limit_tracking`` in batches and counts them in the
Prometheus figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from aiolimiter import AsyncLimiter

from fleetbox.config import RateLimitSettings
from fleetbox.errors import DatabaseError, Deferred
from fleetbox.monitor.metrics import Metrics
from fleetbox.store import Store
from fleetbox.store.graph import PauseRow, RateEventRow

log = logging.getLogger("fleetbox.graph.ratelimit")

#: waits shorter than this are not worth a row
WAIT_RECORD_THRESHOLD_S = 0.001
#: rate events per insert
WRITE_BATCH = 1000
#: a reserved turn not taken within this long is forgotten (its job ran elsewhere, or was removed)
HOLD_TTL_S = 120.0

#: the job whose handler is running in this task (None outside a job: maintenance waits in place)
_JOB: contextvars.ContextVar[int | None] = contextvars.ContextVar("fleetbox_graph_job", default=None)


class Resource(StrEnum):
    """The resources fleetbox limits (any other name is accepted: it can only be paused)."""

    #: every request, whatever its resource (Graph's global limit per app)
    GRAPH = "graph"
    TEAMS = "teams"
    #: message posts by the delegated service account (Graph limits each user to 1 post/s)
    TEAMS_USER = "teams-user"
    OUTLOOK = "outlook"
    ATTACHMENTS = "attachments"
    SUBSCRIPTIONS = "subscriptions"
    SYNC = "sync"


@dataclass(frozen=True, slots=True)
class RateEvent:
    """A request waited for a limiter, or Graph throttled one."""

    resource: str
    key: str | None
    event: Literal["wait", "throttled"]
    wait_ms: float | None
    retry_after_ms: float | None


@dataclass(frozen=True, slots=True)
class LimiterSnapshot:
    """The state of one limiter (a resource, or one key of it) for monitoring."""

    resource: str
    key: str | None
    #: requests per second the bucket allows (None: no rate, only pauses or concurrency)
    rate_per_second: float | None
    #: requests the bucket would let through right now
    available: float | None
    #: until when it is paused, in seconds since the epoch
    paused_until: float | None
    waits: int
    throttled: int


#: requests are spaced this much wider than the configured rate asks (one post a second into a chat
#: goes out every 1.1 s): Graph counts arrivals in sliding windows, and network jitter (or one
#: request's connection setup) brings two sends closer together on arrival; 5 % proved too little
#: (two posts 0.97 s apart at the receiver)
PACING_MARGIN = 1.1


@dataclass(frozen=True, slots=True)
class LimiterGauge:
    """One limiter's figures for ``/metrics`` (a limiter kept per key: its fullest key)."""

    #: the resource: graph, teams, teams-user, outlook, attachments
    limiter: str
    kind: Literal["rate", "concurrency", "bytes"]
    #: what one limit applies to: the appliance, or each mailbox, chat ...
    per: str
    #: requests per second (rate), requests at once (concurrency), bytes per period (bytes)
    capacity: float
    #: requests holding a slot (concurrency) or bytes sent in the window (bytes); None for rates
    in_use: float | None
    #: tokens left (rate), free slots (concurrency), bytes left (bytes)
    available: float
    #: keys held (mailboxes, chats); 1 for an appliance-wide limiter
    keys: int
    #: requests this limiter made wait (over a millisecond), since start
    waits: int


class ByteWindow:
    """At most ``limit`` bytes within any ``period`` seconds: a sliding window, as Graph counts a
    mailbox's uploads (a full budget may go at once, then nothing until it leaves the window)."""

    def __init__(self, limit: int, period: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.period = period
        self._clock = clock
        self._sent: deque[tuple[float, int]] = deque()
        self._used = 0

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0][0] <= now - self.period:
            self._used -= self._sent.popleft()[1]

    def used(self) -> int:
        """Bytes sent within the last period."""
        self._expire(self._clock())
        return self._used

    def wait(self, amount: int) -> float:
        """Seconds until ``amount`` more bytes fit (0: now)."""
        now = self._clock()
        self._expire(now)
        over = self._used + amount - self.limit
        if over <= 0:
            return 0.0
        # The oldest sends leave the window first: it fits once enough of them have left.
        for at, size in self._sent:
            over -= size
            if over <= 0:
                return max(0.0, at + self.period - now)
        return 0.0

    async def acquire(self, amount: int) -> None:
        """Wait until ``amount`` bytes fit, then count them as sent now."""
        amount = min(amount, self.limit)  # a single larger send waits for an empty window
        while True:
            delay = self.wait(amount)
            if delay <= 0:
                break
            # Sends only ever leave the window, so sleeping until this one fits and looking again
            # is enough (another request may have taken the room meanwhile).
            await asyncio.sleep(delay)
        self._sent.append((self._clock(), amount))
        self._used += amount

    @property
    def idle(self) -> bool:
        return self.used() == 0


def _bucket(requests: float, period: float) -> AsyncLimiter:
    # One request per slot, evenly spaced, never a burst: a bucket holding `requests` tokens would
    # let a full bucket out at once and then the refill, close to twice the rate in one window,
    # and Graph counts requests in sliding windows.
    return AsyncLimiter(*_rate(requests, period))


def _bucket_wait(bucket: AsyncLimiter) -> float:
    """Seconds until one more request would get through ``bucket``, counting the requests queued in it."""
    bucket.has_capacity(0)  # let the bucket leak up to now before reading its level
    # aiolimiter has no public reader for its level or its queue of waiters.
    level: float = getattr(bucket, "_level", 0.0)
    queued = len(getattr(bucket, "_waiters", ()))
    excess = level + 1 + queued - bucket.max_rate
    return max(0.0, excess) * bucket.time_period / bucket.max_rate


def _available(bucket: AsyncLimiter | None) -> float | None:
    if bucket is None:
        return None
    bucket.has_capacity(0)  # let the bucket leak up to now before reading its level
    # aiolimiter has no public reader for the level; has_capacity() only answers yes or no.
    level: float = getattr(bucket, "_level", 0.0)
    return max(0.0, bucket.max_rate - level)


@dataclass(slots=True)
class _State:
    """One limiter: a resource, or one key of a resource."""

    bucket: AsyncLimiter | None = None
    semaphore: asyncio.Semaphore | None = None
    #: the semaphore's size
    limit: int = 0
    #: requests holding a slot of the semaphore now
    held: int = 0
    #: paused until this time of the Limiters' clock
    paused_until: float = 0.0
    last_used: float = 0.0
    in_use: int = 0
    waits: int = 0
    throttled: int = 0
    #: Outlook: bytes uploaded into the mailbox within the upload period
    upload: ByteWindow | None = None
    #: the end of the last turn reserved by a deferred job (the Limiters' clock)
    reserved_until: float = 0.0
    deferred: int = 0


class Limiters:
    """Every Graph limit of one appliance.

    ``clock`` is a monotonic clock in seconds (the event loop's own by default); it times pauses,
    waits and idle keys. Keys unused for ``idle_seconds`` (and longer than their bucket needs to
    empty) are dropped, so a million chats do not grow memory without end.
    """

    def __init__(
        self,
        settings: RateLimitSettings,
        *,
        record: Callable[[RateEvent], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        idle_seconds: float = 300.0,
        on_pause: Callable[[PauseRow], None] | None = None,
    ) -> None:
        self._settings = settings
        self._record = record
        #: told of every pause Graph asked for, to share it with the other appliances (PauseSync)
        self.on_pause = on_pause
        self._clock = clock
        self._idle = idle_seconds
        self._resources: dict[str, _State] = {}
        self._keys: dict[tuple[str, str | None], _State] = {}
        #: (job id, resource, key) -> the time of the turn that job reserved
        self._holds: dict[tuple[int, str, str | None], float] = {}
        self._last_sweep = clock()
        #: (resource, kind, per) -> requests that limiter made wait
        self._waits: dict[tuple[str, str, str], int] = {}
        self._build_resources()

    # -- configuration ------------------------------------------------------------------------

    def _build_resources(self) -> None:
        s = self._settings
        for name in (Resource.GRAPH, Resource.TEAMS, Resource.TEAMS_USER, Resource.OUTLOOK, Resource.ATTACHMENTS):
            self._resources.setdefault(name, _State())
        for name, requests, period in (
            (Resource.GRAPH, s.graph_requests, s.graph_period_seconds),
            (Resource.TEAMS, s.teams_per_second, 1.0),
            (Resource.TEAMS_USER, s.teams_per_user_per_second, 1.0),
        ):
            state = self._resources[name]
            if state.bucket is None or (state.bucket.max_rate, state.bucket.time_period) != _rate(requests, period):
                state.bucket = _bucket(requests, period)
        for name, size in ((Resource.ATTACHMENTS, s.attachments_concurrent), (Resource.OUTLOOK, s.outlook_concurrent)):
            state = self._resources[name]
            if state.semaphore is None or state.limit != size:
                # Requests under way keep (and release) the semaphore they took.
                state.semaphore = asyncio.Semaphore(size)
                state.limit = size

    def _key_limits(self, resource: str, state: _State) -> None:
        """Give a key the bucket and semaphore the settings ask for (new objects when they changed)."""
        s = self._settings
        if resource == Resource.TEAMS:
            want = _rate(s.teams_per_chat_per_second, 1.0)
            if state.bucket is None or (state.bucket.max_rate, state.bucket.time_period) != want:
                state.bucket = _bucket(s.teams_per_chat_per_second, 1.0)
        elif resource == Resource.OUTLOOK:
            want = _rate(s.outlook_requests, s.outlook_period_seconds)
            if state.bucket is None or (state.bucket.max_rate, state.bucket.time_period) != want:
                state.bucket = _bucket(s.outlook_requests, s.outlook_period_seconds)
            if state.semaphore is None or state.limit != s.outlook_concurrent_per_mailbox:
                state.semaphore = asyncio.Semaphore(s.outlook_concurrent_per_mailbox)
                state.limit = s.outlook_concurrent_per_mailbox
            # Graph counts the window from arrival: widened by the pacing margin, so a chunk that
            # took longer on the wire than the next one cannot bring two windows' worth closer.
            want = (s.outlook_upload_bytes, s.outlook_upload_period_seconds * PACING_MARGIN)
            if state.upload is None:
                state.upload = ByteWindow(*want, clock=self._clock)
            else:  # a reload: the bytes already in the window still count
                state.upload.limit, state.upload.period = want

    def apply(self, settings: RateLimitSettings) -> None:
        """Use new limits (a config reload): later acquires get them; requests under way finish as they are.

        A bucket whose rate changed starts empty, so the first second after a change may let a
        burst of the new rate through.
        """
        self._settings = settings
        self._build_resources()
        for (resource, _), state in self._keys.items():
            self._key_limits(resource, state)

    @property
    def settings(self) -> RateLimitSettings:
        return self._settings

    # -- acquiring ----------------------------------------------------------------------------

    def _resource(self, resource: str) -> _State:
        state = self._resources.get(resource)
        if state is None:
            state = self._resources[resource] = _State()
        return state

    def _key(self, resource: str, key: str | None) -> _State | None:
        if resource not in (Resource.TEAMS, Resource.OUTLOOK):
            return None
        if resource == Resource.TEAMS and key is None:
            return None  # the appliance-wide bucket only
        state = self._keys.get((resource, key))
        if state is None:
            state = self._keys[(resource, key)] = _State()
            self._key_limits(resource, state)
        return state

    def acquire(self, resource: str, key: str | None = None) -> AbstractAsyncContextManager[None]:
        """Wait until one request to ``resource`` (for ``key``: a chat or channel, a mailbox) may go.

        Waits while the resource (or the key) is paused, then for the key's bucket, the
        resource's bucket and the key's concurrency slot, which is held until the block exits.
        """
        return self._acquire(resource, key)

    @staticmethod
    @contextlib.contextmanager
    def job(job_id: int) -> Iterator[None]:
        """Mark the requests made inside this block as those of job ``job_id``: a long limiter wait
        defers the job (:class:`~fleetbox.errors.Deferred`) instead of holding its worker slot."""
        token = _JOB.set(job_id)
        try:
            yield
        finally:
            _JOB.reset(token)

    def _defer_if_long(self, job: int, resource: str, key: str | None, res: _State, state: _State | None) -> None:
        """Raise Deferred with a reserved turn when this request would wait longer than defer_after_seconds."""
        now = self._clock()
        short = self._settings.defer_after_seconds
        hold = (job, resource, key)
        turn = self._holds.pop(hold, None)
        limited = [st for st in (state, res) if st is not None]
        if turn is not None and turn <= now + short:
            # The job is back at its turn: the rest of the wait is short, unless a 429 paused the
            # resource while it was away. Then it goes away again for the pause (keeping its place)
            # rather than waiting the pause out on a worker slot the tier's other jobs need.
            paused = max(st.paused_until for st in limited) - now
            if paused <= short:
                return
            self._holds[hold] = now + paused
            raise Deferred(paused, f"Graph asked to wait {paused:.2f} s (Retry-After)")
        # Not the appliance-wide Graph bucket: its turns are microseconds apart, and a reservation
        # there would carry the chain of every slower limiter (a chat's turns a second apart) over
        # to every other resource.
        wait = max([st.paused_until - now for st in limited] + [0.0])
        for st in limited:
            if st.bucket is not None:
                wait = max(wait, _bucket_wait(st.bucket), st.reserved_until - now)
        if wait <= short:
            return
        for st in limited:
            if st.bucket is not None:
                interval = st.bucket.time_period / st.bucket.max_rate
                st.reserved_until = max(st.reserved_until, now + wait + interval)
            st.deferred += 1
        self._holds[hold] = now + wait
        # A deferred job waits for its turn too (off its worker slot): recorded like any wait, so
        # rate_limit_tracking and fleetbox_rate_limit_waits show the limiter's pressure.
        self._emit(RateEvent(resource, key, "wait", wait * 1000, None))
        raise Deferred(wait, f"{resource} limiter: the next turn{f' for {key}' if key else ''} is in {wait:.2f} s")

    @contextlib.asynccontextmanager
    async def _acquire(self, resource: str, key: str | None) -> AsyncIterator[None]:
        self._sweep()
        res = self._resource(resource)
        state = self._key(resource, key)
        job = _JOB.get()
        if job is not None:
            self._defer_if_long(job, resource, key, res, state)
        started = self._clock()
        res.in_use += 1
        if state is not None:
            state.in_use += 1
        per = _PER_KEY.get(resource, "appliance")
        try:
            await self._rest_if_paused(res, state, None)
            # Slots before tokens: a request that waits for a slot must not let its token lapse.
            # The mailbox's slot first, then the app-wide one: the same order everywhere, and a
            # request for a busy mailbox does not hold an app-wide slot another mailbox could use.
            slots = [
                (st, where)
                for st, where in ((state, per), (res if resource == Resource.OUTLOOK else None, "appliance"))
                if st is not None and st.semaphore is not None
            ]
            taken: list[tuple[_State, asyncio.Semaphore]] = []
            try:
                for st, where in slots:
                    semaphore = st.semaphore
                    assert semaphore is not None
                    await self._timed((resource, "concurrency", where), semaphore.acquire())
                    taken.append((st, semaphore))
                    st.held += 1
                # The key's bucket first: waiting a second for one chat must not hold a token of
                # the appliance-wide bucket that another chat could use.
                if state is not None and state.bucket is not None:
                    await self._timed((resource, "rate", per), state.bucket.acquire())
                if res.bucket is not None:
                    await self._timed((resource, "rate", "appliance"), res.bucket.acquire())
                graph = self._resources[Resource.GRAPH].bucket
                if graph is not None and resource != Resource.GRAPH:
                    await self._timed((Resource.GRAPH, "rate", "appliance"), graph.acquire())
                # A 429 may have paused the key while this request waited for its turn: it must
                # not leave inside that window either.
                await self._rest_if_paused(res, state, job)
                self._waited(resource, key, res, state, self._clock() - started)
                yield
            finally:
                for st, semaphore in taken:
                    st.held -= 1
                    semaphore.release()
        finally:
            now = self._clock()
            res.in_use -= 1
            res.last_used = now
            if state is not None:
                state.in_use -= 1
                state.last_used = now

    async def upload_bytes(self, mailbox: str, amount: int) -> None:
        """Wait until ``amount`` more bytes may go into ``mailbox`` (Outlook's upload budget);
        inside a job, a long wait defers the job instead (an upload resumes where Graph says)."""
        state = self._key(Resource.OUTLOOK, mailbox)
        assert state is not None and state.upload is not None  # built in _key_limits
        window = state.upload
        need = min(amount, window.limit)
        job = _JOB.get()
        if job is not None:
            wait = window.wait(need)
            if wait > self._settings.defer_after_seconds:
                state.deferred += 1
                self._count_wait((Resource.OUTLOOK, "bytes", "mailbox"))
                self._emit(RateEvent(Resource.OUTLOOK, mailbox, "wait", wait * 1000, None))
                raise Deferred(wait, f"outlook upload budget of {mailbox}: {wait:.1f} s until it fits")
        started = self._clock()
        await self._timed((Resource.OUTLOOK, "bytes", "mailbox"), window.acquire(need))
        state.last_used = self._clock()
        res = self._resource(Resource.OUTLOOK)
        self._waited(Resource.OUTLOOK, mailbox, res, state, self._clock() - started)

    async def _timed(self, limiter: tuple[str, str, str], wait: Awaitable[object]) -> None:
        """Await one limiter's ``wait``, counting it as a wait of that limiter when it took a while."""
        started = self._clock()
        await wait
        if self._clock() - started > WAIT_RECORD_THRESHOLD_S:
            self._count_wait(limiter)

    def _count_wait(self, limiter: tuple[str, str, str]) -> None:
        self._waits[limiter] = self._waits.get(limiter, 0) + 1

    def operation(self, resource: str) -> AbstractAsyncContextManager[None]:
        """Hold one slot of a whole transfer (``attachments``: ``attachments_concurrent`` at once)."""
        if resource != Resource.ATTACHMENTS:
            raise ValueError(f"no operation limit for resource {resource!r} (only {Resource.ATTACHMENTS.value!r})")
        return self._operation(resource)

    @contextlib.asynccontextmanager
    async def _operation(self, resource: str) -> AsyncIterator[None]:
        res = self._resource(resource)
        semaphore = res.semaphore
        assert semaphore is not None  # built in _build_resources
        started = self._clock()
        res.in_use += 1
        try:
            await self._timed((resource, "concurrency", "appliance"), semaphore.acquire())
            res.held += 1
            try:
                self._waited(resource, None, res, None, self._clock() - started)
                yield
            finally:
                res.held -= 1
                semaphore.release()
        finally:
            res.in_use -= 1
            res.last_used = self._clock()

    async def _rest_if_paused(self, res: _State, state: _State | None, job: int | None) -> None:
        """Wait out a 429's pause; with ``job``, a pause longer than defer_after_seconds defers the
        job instead. Pauses only ever grow, so sleeping to the current end and looking again is enough."""
        while True:
            until = max(res.paused_until, state.paused_until if state is not None else 0.0)
            remaining = until - self._clock()
            if remaining <= 0:
                return
            if job is not None and remaining > self._settings.defer_after_seconds:
                raise Deferred(remaining, f"Graph asked to wait {remaining:.2f} s (Retry-After)")
            await asyncio.sleep(remaining)

    def _waited(self, resource: str, key: str | None, res: _State, state: _State | None, seconds: float) -> None:
        if seconds <= WAIT_RECORD_THRESHOLD_S:
            return
        res.waits += 1
        if state is not None:
            state.waits += 1
        self._emit(RateEvent(resource, key, "wait", seconds * 1000, None))

    # -- throttling ---------------------------------------------------------------------------

    def pause(self, resource: str, key: str | None, seconds: float) -> None:
        """Graph throttled a request: hold back this resource (an Outlook mailbox: that mailbox) for ``seconds``."""
        seconds = max(0.0, seconds)
        res = self._resource(resource)
        state = self._key(resource, key) if resource == Resource.OUTLOOK and key is not None else None
        target = state if state is not None else res
        target.paused_until = max(target.paused_until, self._clock() + seconds)
        target.last_used = self._clock()
        res.throttled += 1
        if state is not None:
            state.throttled += 1
        self._emit(RateEvent(resource, key, "throttled", None, seconds * 1000))
        if self.on_pause is not None and seconds > 0:
            try:
                self.on_pause(PauseRow(resource, key if state is not None else None, time.time() + seconds))
            except Exception:  # sharing the pause must never break a request
                log.exception("pause not shared", extra={"event": "graph_pause_share_failed"})

    def rest_until(self, resource: str, key: str | None, until: float) -> None:
        """Another appliance was told to pause ``resource`` (``key``) until ``until`` (epoch seconds)."""
        res = self._resource(resource)
        target = (self._key(resource, key) if key is not None else None) or res
        end = self._clock() + (until - time.time())
        if end > target.paused_until:
            target.paused_until = end
            target.last_used = self._clock()

    def _emit(self, event: RateEvent) -> None:
        if self._record is None:
            return
        try:
            self._record(event)
        except Exception:  # the recorder must never break a request
            log.exception("rate event not recorded", extra={"event": "rate_event_record_failed"})

    # -- housekeeping -------------------------------------------------------------------------

    def _sweep(self) -> None:
        now = self._clock()
        if now - self._last_sweep < self._idle / 2:
            return
        self._last_sweep = now
        idle = [k for k, st in self._keys.items() if self._is_idle(st, now)]
        for k in idle:
            del self._keys[k]
        for hold in [h for h, turn in self._holds.items() if turn < now - HOLD_TTL_S]:
            del self._holds[hold]

    def _is_idle(self, state: _State, now: float) -> bool:
        if state.in_use or state.paused_until > now or state.reserved_until > now:
            return False
        if state.upload is not None and not state.upload.idle:
            return False  # dropping it would forget bytes still inside Graph's window
        # A bucket drains within its period; dropping it earlier would allow a fresh burst.
        period = state.bucket.time_period if state.bucket is not None else 0.0
        return now - state.last_used >= max(self._idle, period)

    @property
    def key_count(self) -> int:
        """How many per-key limiters are held (chats, channels and mailboxes seen lately)."""
        return len(self._keys)

    def snapshot(self) -> list[LimiterSnapshot]:
        """Every resource and key limiter, for monitoring."""
        now = self._clock()
        wall = time.time()

        def paused(st: _State) -> float | None:
            return wall + (st.paused_until - now) if st.paused_until > now else None

        def rate(st: _State) -> float | None:
            # the configured rate (the bucket paces a little wider, PACING_MARGIN)
            return st.bucket.max_rate / st.bucket.time_period * PACING_MARGIN if st.bucket is not None else None

        out = [
            LimiterSnapshot(name, None, rate(st), _available(st.bucket), paused(st), st.waits, st.throttled)
            for name, st in sorted(self._resources.items())
        ]
        out += [
            LimiterSnapshot(name, key, rate(st), _available(st.bucket), paused(st), st.waits, st.throttled)
            for (name, key), st in sorted(self._keys.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
        ]
        return out

    def held(self, resource: str) -> int:
        """Requests (or transfers) holding one of ``resource``'s appliance-wide slots now."""
        state = self._resources.get(resource)
        return state.held if state is not None else 0

    def gauges(self) -> list[LimiterGauge]:
        """Every limiter's capacity, use and waits (``/metrics``); a per-key limiter reports its
        fullest key (the most requests in flight, the fewest tokens or bytes left)."""
        s = self._settings
        out: list[LimiterGauge] = []

        def waits(resource: str, kind: str, per: str) -> int:
            return self._waits.get((resource, kind, per), 0)

        def rate(resource: str, per: str, configured: float, states: list[_State]) -> None:
            left = [a for st in states if (a := _available(st.bucket)) is not None]
            available = min(left) if left else 1.0
            out.append(
                LimiterGauge(
                    resource, "rate", per, configured, None, available, len(states), waits(resource, "rate", per)
                )
            )

        def slots(resource: str, per: str, size: int, states: list[_State]) -> None:
            busiest = max((st.held for st in states), default=0)
            out.append(
                LimiterGauge(
                    resource,
                    "concurrency",
                    per,
                    size,
                    busiest,
                    max(0, size - busiest),
                    len(states),
                    waits(resource, "concurrency", per),
                )
            )

        res = self._resources
        rate(Resource.GRAPH, "appliance", s.graph_requests / s.graph_period_seconds, [res[Resource.GRAPH]])
        rate(Resource.TEAMS, "appliance", s.teams_per_second, [res[Resource.TEAMS]])
        rate(Resource.TEAMS_USER, "appliance", s.teams_per_user_per_second, [res[Resource.TEAMS_USER]])
        chats = [st for (name, _), st in self._keys.items() if name == Resource.TEAMS]
        rate(Resource.TEAMS, "chat", s.teams_per_chat_per_second, chats)
        mailboxes = [st for (name, _), st in self._keys.items() if name == Resource.OUTLOOK]
        rate(Resource.OUTLOOK, "mailbox", s.outlook_requests / s.outlook_period_seconds, mailboxes)
        slots(Resource.OUTLOOK, "mailbox", s.outlook_concurrent_per_mailbox, mailboxes)
        slots(Resource.OUTLOOK, "appliance", s.outlook_concurrent, [res[Resource.OUTLOOK]])
        slots(Resource.ATTACHMENTS, "appliance", s.attachments_concurrent, [res[Resource.ATTACHMENTS]])
        used = max((st.upload.used() for st in mailboxes if st.upload is not None), default=0)
        out.append(
            LimiterGauge(
                Resource.OUTLOOK,
                "bytes",
                "mailbox",
                s.outlook_upload_bytes,
                used,
                max(0, s.outlook_upload_bytes - used),
                len(mailboxes),
                waits(Resource.OUTLOOK, "bytes", "mailbox"),
            )
        )
        return out


#: what a resource's per-key limiters apply to
_PER_KEY = {Resource.TEAMS.value: "chat", Resource.OUTLOOK.value: "mailbox"}


def _rate(requests: float, period: float) -> tuple[float, float]:
    """The (max_rate, time_period) that :func:`_bucket` builds, to tell whether a rate changed."""
    return (1, period / requests * PACING_MARGIN)


class RateEventWriter:
    """Writes rate events to ``rate_limit_tracking`` in batches, off the request path.

    :meth:`record` only appends to a buffer and counts the event in ``metrics``; run :meth:`run`
    as an owned task. To stop: cancel that task, then ``await drain()`` to write what is left.
    The buffer keeps at most ``max_buffer`` events while the database is away (the oldest go).
    """

    def __init__(
        self, store: Store, metrics: Metrics, *, flush_seconds: float = 1.0, max_buffer: int = 100_000
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._flush_s = flush_seconds
        self._buffer: deque[tuple[float, RateEvent]] = deque(maxlen=max_buffer)
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self.written = 0

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def record(self, event: RateEvent) -> None:
        """Take an event (never blocks, never raises for a full buffer)."""
        self._buffer.append((time.time(), event))
        self._metrics.observe_rate_event(event)
        self._wake.set()

    async def run(self) -> None:
        """Write batches until cancelled."""
        while True:
            await self._wake.wait()
            # Let events gather: one insert for many.
            await asyncio.sleep(self._flush_s)
            self._wake.clear()
            try:
                await self._flush()
            except DatabaseError as exc:
                log.warning(
                    "rate events not written; will retry",
                    extra={"event": "rate_events_write_failed", "error": str(exc), "pending": len(self._buffer)},
                )
                self._wake.set()

    async def drain(self) -> None:
        """Write everything buffered (events the database refuses now are dropped, and logged)."""
        try:
            await self._flush()
        except DatabaseError as exc:
            log.warning(
                "rate events dropped at shutdown",
                extra={"event": "rate_events_dropped", "error": str(exc), "count": len(self._buffer)},
            )
            self._buffer.clear()

    async def _flush(self) -> None:
        async with self._lock:
            while self._buffer:
                batch = list(itertools.islice(self._buffer, WRITE_BATCH))
                await self._store.graph.write_rate_events(
                    [RateEventRow(e.resource, at, e.event, e.wait_ms, e.retry_after_ms) for at, e in batch]
                )
                # Remove only what was written: a cancelled write leaves its events for drain().
                for _ in batch:
                    self._buffer.popleft()
                self.written += len(batch)


class PauseSync:
    """Shares Graph's pauses between the appliances on one database (table ``graph_pauses``).

    A pause this appliance is told of (:meth:`record`, the Limiters' ``on_pause``) is written at
    once; every ``interval`` seconds the live pauses of all appliances are read and applied to
    this appliance's limiters, so a 429 seen by one holds back the others' requests to that key
    too (within ``interval``). Run :meth:`run` as an owned task.
    """

    def __init__(self, store: Store, limiters: Limiters, *, interval: float = 0.5) -> None:
        self._store = store
        self._limiters = limiters
        self._interval = interval
        self._pending: deque[PauseRow] = deque(maxlen=10_000)
        self._wake = asyncio.Event()
        self._last_cleanup = 0.0
        limiters.on_pause = self.record

    def record(self, pause: PauseRow) -> None:
        """Take a pause to share (never blocks)."""
        self._pending.append(pause)
        self._wake.set()

    async def run(self) -> None:
        """Write and read pauses until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                await self.sync()
            except DatabaseError as exc:
                log.warning(
                    "Graph pauses not shared; will retry", extra={"event": "graph_pauses_failed", "error": str(exc)}
                )

    async def sync(self) -> None:
        """Write the pauses recorded here, then apply everyone's live pauses."""
        while self._pending:
            await self._store.graph.save_pause(self._pending[0])
            self._pending.popleft()
        now = time.time()
        for pause in await self._store.graph.live_pauses(now):
            self._limiters.rest_until(pause.resource, pause.key, pause.until)
        if now - self._last_cleanup > 600:
            self._last_cleanup = now
            await self._store.graph.forget_pauses(now - 3600)
