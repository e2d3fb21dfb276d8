"""Leases: the heartbeat that keeps this appliance's jobs, and the reaper that returns the jobs of
appliances that stopped heartbeating.

The heartbeat extends the lease of every job this process holds: running, and finished but with
its outcome not yet written. When no heartbeat gets through for nearly a lease (the database is
away), a running job is cancelled before its lease can lapse, because another appliance may then
claim it; its outcome is never written. The reaper returns expired jobs to their queues, or
dead-letters them when the retry policy says they lost their lease too often or used their
attempts (the numbers come from :meth:`RetryPolicies.lease_rules`). It skips the jobs this
process still holds, and after it could not reach the database it holds off for two heartbeats:
when an outage ends, the live owners of leases that ran out during it renew them (a heartbeat
renews any lease its attempt still holds) and write their outcomes before anyone takes their jobs.

What remains of at-least-once: a job whose handler finished but whose outcome could not be
written before the database had been away for a whole lease (``appliance.lease_seconds``, 30 s)
can be claimed again elsewhere once the database is back; its late outcome is then discarded as
stale. Everything shorter than a lease loses nothing and runs nothing twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from fleetbox.errors import DatabaseError
from fleetbox.models import Clock, Tier
from fleetbox.store import Store
from fleetbox.worker.pools import CancelReason, RunningJob, TierPool
from fleetbox.worker.retry import RetryPolicies

log = logging.getLogger("fleetbox.leases")

#: Jobs the reaper returns per pass.
REAP_BATCH = 1000


class Leases:
    """Heartbeat and reaper of one appliance."""

    def __init__(
        self,
        store: Store,
        pools: Mapping[Tier, TierPool],
        *,
        clock: Clock,
        policies: Callable[[], RetryPolicies],
        held: Callable[[], Iterable[tuple[int, int]]],
        lease_seconds: float,
        heartbeat_seconds: float,
        reap_seconds: float,
        on_returned: Callable[[set[Tier]], None],
    ) -> None:
        self._store = store
        self._pools = pools
        self._clock = clock
        self._policies = policies
        self._held = held
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.reap_seconds = reap_seconds
        self._on_returned = on_returned
        self.lost = 0
        self.reaped = 0
        #: monotonic time before which the reaper holds off: after this process could not reach
        #: the database, the live owners of leases that ran out meanwhile get two heartbeats to
        #: renew them (or write their outcomes) before anyone takes their jobs
        self._hold_until = 0.0

    def _running(self) -> list[RunningJob]:
        return [e for p in self._pools.values() for e in p.running.values()]

    async def heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            await self.heartbeat()

    async def heartbeat(self) -> None:
        """Extend the leases of held jobs; cancel the running jobs whose lease is gone."""
        running = self._running()
        pending = list(self._held())
        sent = time.monotonic()
        if running or pending:
            ids = [e.job.id for e in running] + [job_id for job_id, _ in pending]
            attempts = [e.job.attempt for e in running] + [attempt for _, attempt in pending]
            now = self._clock.now()
            try:
                kept: set[int] | None = await self._store.jobs.heartbeat(
                    ids, attempts, now + dt.timedelta(seconds=self.lease_seconds)
                )
            except DatabaseError as exc:
                log.warning("heartbeat failed", extra={"event": "heartbeat_failed", "error": str(exc)})
                kept = None
            if kept is not None:
                for e in running:
                    if e.job.id in kept:
                        e.lease_deadline = sent + self.lease_seconds
                    elif e.task is not None and not e.task.done():
                        self._lose(e)
        # Without a heartbeat getting through, stop a job before its lease can run out, because
        # another appliance may then claim it.
        for e in self._running():
            if (
                time.monotonic() >= e.lease_deadline - self.heartbeat_seconds
                and e.task is not None
                and not e.task.done()
            ):
                self._lose(e)

    def _lose(self, entry: RunningJob) -> None:
        entry.cancel_reason = CancelReason.LEASE_LOST
        assert entry.task is not None
        entry.task.cancel()
        self.lost += 1

    async def reaper_loop(self) -> None:
        while True:
            await asyncio.sleep(self.reap_seconds)
            await self.reap()

    async def reap(self) -> int:
        """Return jobs whose lease expired (their worker died) to their queues, or dead-letter them."""
        if time.monotonic() < self._hold_until:
            return 0
        rules, default = self._policies().lease_rules()
        try:
            reaped = await self._store.jobs.reap(self._clock.now(), REAP_BATCH, rules, default, self._holding())
        except DatabaseError as exc:
            log.warning(
                "lease reaper failed; it holds off for two heartbeats once the database is back",
                extra={"event": "reap_failed", "error": str(exc)},
            )
            self._hold_until = time.monotonic() + 2 * self.heartbeat_seconds
            return 0
        if reaped:
            back = [r.job_id for r in reaped if not r.dead]
            dead = [r.job_id for r in reaped if r.dead]
            if back:
                log.warning("expired leases returned to the queue", extra={"event": "leases_expired", "job_ids": back})
            if dead:
                log.error(
                    "jobs dead-lettered after losing their lease too often (poison) or using their attempts",
                    extra={"event": "leases_expired_dead", "job_ids": dead},
                )
            self.reaped += len(reaped)
            tiers = {r.tier for r in reaped if not r.dead}
            if tiers:
                await self._store.jobs.notify(tiers)
                self._on_returned(tiers)
        return len(reaped)

    def _holding(self) -> list[int]:
        return [e.job.id for e in self._running()] + [job_id for job_id, _ in self._held()]
