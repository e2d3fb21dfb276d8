"""The dispatcher: claims due jobs in batches for tiers with free worker slots.

It wakes on a NOTIFY from the job table's insert trigger, on a freed slot while the tier may have
more due work, when a retry or deferral this appliance wrote comes due (one timer, for the earliest
of the times it keeps), and on its poll tick, which bounds the delay of a lost notification (or of a scheduled
job coming due) to one poll interval.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import logging
from collections.abc import Callable, Iterable, Mapping

from fleetbox.errors import DatabaseError
from fleetbox.models import Clock, Job, Tier
from fleetbox.store import Store
from fleetbox.worker.pools import TierPool

log = logging.getLogger("fleetbox.dispatcher")

#: retry times kept for a timed wake; beyond that many waiting at once, the poll tick finds them
MAX_TIMED_WAKES = 10_000


class Dispatcher:
    """Claims jobs for the tier pools and hands each one to ``start``."""

    def __init__(
        self,
        store: Store,
        pools: Mapping[Tier, TierPool],
        *,
        worker_id: str,
        clock: Clock,
        lease_seconds: float,
        poll_seconds: float,
        claim_batch: int,
        start: Callable[[TierPool, Job], None],
    ) -> None:
        self._store = store
        self._pools = pools
        #: per tier, the queues this appliance can run (None: every queue of the tier)
        self.queues: dict[Tier, list[str] | None] = dict.fromkeys(pools)
        self._worker_id = worker_id
        self._clock = clock
        self._lease = dt.timedelta(seconds=lease_seconds)
        self._poll = poll_seconds
        self._batch = claim_batch
        self._start = start
        self._wake = asyncio.Event()
        #: tiers that may have due jobs we have not claimed yet
        self._pending: set[Tier] = set(pools)
        #: bumped on every wake of a tier, so a wake during a claim is not forgotten
        self._generation: dict[Tier, int] = dict.fromkeys(pools, 0)
        self._stopping = False
        #: (loop time, tier) of the retries and deferrals this appliance wrote that are not due
        #: yet, and the timer set for the earliest
        self._due: list[tuple[float, Tier]] = []
        self._timer: asyncio.TimerHandle | None = None
        self.claims = 0
        self.claimed = 0

    def __repr__(self) -> str:
        return (
            f"<Dispatcher claims={self.claims} claimed={self.claimed} pending={sorted(t.name for t in self._pending)}>"
        )

    def wake(self, tiers: Iterable[Tier] | None = None) -> None:
        """Look for work now (in these tiers, or all)."""
        for tier in self._pools if tiers is None else tiers:
            if tier in self._pools:
                self._pending.add(tier)
                self._generation[tier] += 1
        self._wake.set()

    def wake_at(self, due: Iterable[tuple[Tier, dt.datetime]]) -> None:
        """Look for work in each tier when its time comes: a retry 1 s away runs after 1 s, not
        at the first poll tick after it. The times wait in a heap behind one timer, the earliest."""
        loop = asyncio.get_running_loop()
        now = self._clock.now()
        for tier, when in due:
            if tier not in self._pools:
                continue
            if when <= now:
                self.wake([tier])
            elif len(self._due) < MAX_TIMED_WAKES:  # past that, the poll tick finds them
                heapq.heappush(self._due, (loop.time() + (when - now).total_seconds(), tier))
        self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Set the one timer for the earliest time in the heap (if it is not set for it already)."""
        if not self._due or self._stopping:
            return
        at = self._due[0][0]
        if self._timer is not None:
            if self._timer.when() <= at:
                return
            self._timer.cancel()
        self._timer = loop.call_at(at, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        tiers = set()
        while self._due and self._due[0][0] <= loop.time():
            tiers.add(heapq.heappop(self._due)[1])
        if tiers:
            self.wake(tiers)
        self._arm(loop)

    def on_notify(self, payload: str) -> None:
        tiers = set()
        for part in payload.split(","):
            if part.strip().isdigit() and int(part) in Tier._value2member_map_:
                tiers.add(Tier(int(part)))
        self.wake(tiers or None)

    def stop(self) -> None:
        """Leave :meth:`run` once the claim in progress (if any) has handed its jobs to ``start``."""
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due.clear()
        self._wake.set()

    def slot_freed(self, tier: Tier) -> None:
        if tier in self._pending:
            self._wake.set()

    async def run(self) -> None:
        """Claim until :meth:`stop` (or cancelled)."""
        loop = asyncio.get_running_loop()
        next_poll = loop.time()
        while not self._stopping:
            if loop.time() >= next_poll:
                self.wake()
                next_poll = loop.time() + self._poll
            self._wake.clear()
            again = False
            for tier in list(self._pending):
                pool = self._pools[tier]
                if self._stopping:
                    break
                if pool.free == 0:
                    continue  # slot_freed() wakes us
                try:
                    await self._claim(tier, pool)
                except DatabaseError as exc:
                    # Any other exception escapes to the supervisor, which restarts this loop.
                    log.warning(
                        "claim failed", extra={"event": "claim_failed", "tier": tier.name.lower(), "error": str(exc)}
                    )
                    again = False
                    break  # the poll tick tries again
                # Slots still free and more due work: claim again in the next pass without
                # waiting, so that claim is in flight while the jobs just claimed run (each
                # pending tier gets one claim per pass, so no tier starves another).
                again = again or (tier in self._pending and pool.free > 0)
            if again and not self._stopping:
                continue
            if not self._wake.is_set():
                # Sleep until woken or the poll tick (the loop re-checks the tick at the top).
                # A timer that sets the event costs one loop turn less per wake-up than
                # wait_for(), which wraps the wait in a task of its own.
                tick = loop.call_at(next_poll, self._wake.set)
                try:
                    await self._wake.wait()
                finally:
                    tick.cancel()

    def configure(self, *, lease_seconds: float, poll_seconds: float, claim_batch: int) -> None:
        """A configuration reload: new lease, poll interval and batch size apply to the next claim."""
        self._lease = dt.timedelta(seconds=lease_seconds)
        self._poll = poll_seconds
        self._batch = claim_batch

    async def _claim(self, tier: Tier, pool: TierPool) -> None:
        if self.queues[tier] == []:
            self._pending.discard(tier)  # no queue of this tier runs here
            return
        want = min(pool.free, self._batch)
        generation = self._generation[tier]
        now = self._clock.now()
        jobs = await self._store.jobs.claim(tier, want, self._worker_id, now, now + self._lease, self.queues[tier])
        self.claims += 1
        self.claimed += len(jobs)
        if len(jobs) < want and self._generation[tier] == generation:
            self._pending.discard(tier)
        start = self._start
        for job in jobs:
            start(pool, job)
