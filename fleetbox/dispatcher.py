"""The dispatcher: claims due jobs in batches for tiers with free worker slots.

It wakes on a NOTIFY from the job table's insert trigger, on a freed slot while the tier may have
more due work, on a local retry falling due, and on its poll tick, which bounds the delay of a lost
notification (or of a scheduled job coming due) to one poll interval.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping

from fleetbox.db import Database
from fleetbox.errors import DatabaseError
from fleetbox.models import Clock, Job, Tier
from fleetbox.pools import TierPool

log = logging.getLogger("fleetbox.dispatcher")


class Dispatcher:
    """Claims jobs for the tier pools and hands each one to ``start``."""

    def __init__(
        self,
        db: Database,
        pools: Mapping[Tier, TierPool],
        *,
        worker_id: str,
        clock: Clock,
        lease_seconds: float,
        poll_seconds: float,
        claim_batch: int,
        start: Callable[[TierPool, Job], None],
    ) -> None:
        self._db = db
        self._pools = pools
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
        self.claims = 0
        self.claimed = 0

    def __repr__(self) -> str:
        return f"<Dispatcher claims={self.claims} claimed={self.claimed} pending={sorted(t.name for t in self._pending)}>"

    def wake(self, tiers: Iterable[Tier] | None = None) -> None:
        """Look for work now (in these tiers, or all)."""
        for tier in self._pools if tiers is None else tiers:
            if tier in self._pools:
                self._pending.add(tier)
                self._generation[tier] += 1
        self._wake.set()

    def on_notify(self, payload: str) -> None:
        tiers = set()
        for part in payload.split(","):
            if part.strip().isdigit() and int(part) in Tier._value2member_map_:
                tiers.add(Tier(int(part)))
        self.wake(tiers or None)

    def slot_freed(self, tier: Tier) -> None:
        if tier in self._pending:
            self._wake.set()

    async def run(self) -> None:
        """Claim until cancelled."""
        loop = asyncio.get_running_loop()
        next_poll = loop.time()
        while True:
            if loop.time() >= next_poll:
                self.wake()
                next_poll = loop.time() + self._poll
            self._wake.clear()
            for tier in list(self._pending):
                pool = self._pools[tier]
                if pool.free == 0:
                    continue  # slot_freed() wakes us
                try:
                    await self._claim(tier, pool)
                except DatabaseError as exc:
                    log.warning("claim failed", extra={"event": "claim_failed", "tier": tier.name.lower(), "error": str(exc)})
                    break  # the poll tick tries again
            timeout = max(0.0, next_poll - loop.time())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _claim(self, tier: Tier, pool: TierPool) -> None:
        want = min(pool.free, self._batch)
        generation = self._generation[tier]
        now = self._clock.now()
        rows = await self._db.fetch("claim", int(tier), want, self._worker_id, now, now + self._lease)
        self.claims += 1
        self.claimed += len(rows)
        if len(rows) < want and self._generation[tier] == generation:
            self._pending.discard(tier)
        for row in rows:
            self._start(pool, Job.from_row(row))
