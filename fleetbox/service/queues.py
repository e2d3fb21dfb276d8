"""Queues: the list, how many jobs each holds, and pause, resume and clear."""

from __future__ import annotations

from fleetbox import rules
from fleetbox.errors import InvalidInput, UnknownQueue
from fleetbox.models import Clock, QueueDepth, QueueInfo, Tier
from fleetbox.service.audit import Audit
from fleetbox.store import Store


class Queues:
    """Operator actions on queues, shared by every appliance on the database."""

    def __init__(self, store: Store, audit: Audit, *, clock: Clock) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock

    async def all(self) -> list[QueueInfo]:
        """Every queue the database knows, with its tier and pause flag."""
        return await self._store.queues.all()

    async def get(self, name: object) -> QueueInfo:
        """A queue by name, or :class:`UnknownQueue`."""
        if not rules.valid_queue_name(name):
            raise UnknownQueue(str(name)[:80], field="queue")  # not a possible name: no need to ask
        assert isinstance(name, str)
        info = await self._store.queues.get(name)
        if info is None:
            raise UnknownQueue(name, field="queue")
        return info

    async def depth(self) -> list[QueueDepth]:
        """Jobs per queue by state: waiting, scheduled, retrying, running, and open dead letters."""
        infos = await self._store.queues.all()
        counts = await self._store.queues.counts(self._clock.now())
        dead = await self._store.queues.open_dead_letters()
        out = []
        for q in infos:
            c = counts.get(q.name)
            out.append(
                QueueDepth(
                    queue=q.name,
                    tier=q.tier,
                    paused=q.paused,
                    waiting=c.waiting if c else 0,
                    scheduled=c.scheduled if c else 0,
                    retrying=c.retrying if c else 0,
                    running=c.running if c else 0,
                    dead=sum(dead.values()) if q.tier is Tier.DEAD else dead.get(q.name, 0),
                )
            )
        return out

    async def set_paused(self, name: str, paused: bool, *, actor: str) -> QueueInfo:
        """Pause or resume a queue for every appliance on the database (running jobs finish)."""
        info = await self.get(name)
        if info.tier is Tier.DEAD:
            raise InvalidInput(f"{name!r} holds dead letters and runs nothing, so it cannot be paused", field="queue")
        async with self._store.transaction() as tx:
            updated = await tx.queues.set_paused(name, paused, actor)
            assert updated is not None  # get() saw the queue, and queues are never deleted
            await self._audit.record(tx, actor, "queue.pause" if paused else "queue.resume", name)
            if not paused:
                await tx.jobs.notify([updated.tier])
        return updated

    async def clear(self, name: str, *, actor: str) -> int:
        """Move a queue's jobs not yet started (waiting, scheduled, retrying) to jobs_done as cleared; never
        running ones. Returns how many."""
        await self.get(name)
        async with self._store.transaction() as tx:
            cleared = await tx.jobs.clear(name, self._clock.now())
            await self._audit.record(tx, actor, "queue.clear", name, {"cleared": cleared})
        return cleared
