"""Claim → run → complete: one job's way through an appliance.

:class:`Worker` holds the parts and starts and stops them in order:

- :mod:`~fleetbox.worker.dispatcher` claims due jobs for tiers with free slots (woken by NOTIFY,
  a freed slot, a retry falling due, or its poll tick), only of queues this appliance can run;
- :mod:`~fleetbox.worker.pools` are the bounded worker slots per tier;
- :mod:`~fleetbox.worker.executor` runs one attempt and asks the retry policy what follows;
- :mod:`~fleetbox.worker.completer` writes outcomes in batches;
- :mod:`~fleetbox.worker.leases` keeps this appliance's leases and returns others' expired ones;
- :mod:`~fleetbox.worker.retry` is the one retry policy every decision comes from;
- :mod:`~fleetbox.worker.registry` says which queues exist and which this appliance can run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from fleetbox.config import Settings
from fleetbox.errors import DatabaseError
from fleetbox.models import Clock, Job, Tier
from fleetbox.service.experiments import VariantBook
from fleetbox.store import Listener, Store
from fleetbox.supervise import Supervisor
from fleetbox.worker.completer import Completer, Finished
from fleetbox.worker.dispatcher import Dispatcher
from fleetbox.worker.executor import AuthHook, Executor
from fleetbox.worker.leases import Leases
from fleetbox.worker.pools import CancelReason, RunningJob, TierPool
from fleetbox.worker.registry import QueueSpec, runnable
from fleetbox.worker.retry import RetryPolicies

__all__ = ["Worker"]

log = logging.getLogger("fleetbox.worker")
#: The hot table is vacuumed by the appliance once it wrote this many outcomes since the last time
#: (checked every VACUUM_CHECK_SECONDS): dead tuples in ``jobs`` stay within a few seconds of work
#: whatever the server's autovacuum does (docs/performance.md, "Sustained throughput").
VACUUM_AFTER = 20_000
VACUUM_CHECK_SECONDS = 2.0
VACUUM = "fleetbox.vacuum"

TIERS = (Tier.HIGH, Tier.MEDIUM, Tier.LOW)
#: Task names, in start order (stopped in the reverse, with the dispatcher and completer handled
#: specially by :meth:`Worker.stop`).
COMPLETER, HEARTBEAT, REAPER, DISPATCHER, LISTENER = (
    "fleetbox.completer",
    "fleetbox.heartbeat",
    "fleetbox.reaper",
    "fleetbox.dispatcher",
    "fleetbox.listener",
)
#: Reads the retry-experiment weights (each job's variant) every few seconds.
EXPERIMENTS = "fleetbox.experiments"
EXPERIMENTS_REFRESH_SECONDS = 5.0


def _pool_size(settings: Settings, tier: Tier) -> int:
    sizes: dict[Tier, int] = {
        Tier.HIGH: settings.pools.high,
        Tier.MEDIUM: settings.pools.medium,
        Tier.LOW: settings.pools.low,
    }
    return sizes[tier]


class Worker:
    """The job-running part of one appliance.

    Args:
        store: the database.
        settings: the configuration (pools, retry, appliance timing).
        registry: the queues and their handlers.
        worker_id: this appliance's id, recorded on claims and attempts.
        clock: the time of every decision.
        on_auth_error: awaited before the one retry of an authentication error.
        on_written: called with each batch of outcomes written (the metrics count them).
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        registry: Mapping[str, QueueSpec],
        *,
        worker_id: str,
        clock: Clock,
        on_auth_error: AuthHook | None = None,
        on_written: Callable[[list[Finished]], None] | None = None,
    ) -> None:
        cfg = settings.appliance
        self._store = store
        self.worker_id = worker_id
        self.clock = clock
        self.registry: dict[str, QueueSpec] = dict(registry)
        self.policies = RetryPolicies(settings.retry, ((n, q.settings) for n, q in self.registry.items()))
        self.pools: dict[Tier, TierPool] = {t: TierPool(t, _pool_size(settings, t)) for t in TIERS}
        self.lease_seconds = cfg.lease_seconds
        self.completer = Completer(
            store,
            worker_id,
            batch=cfg.completion_batch,
            flush_ms=cfg.completion_flush_ms,
            on_retry_due=self._retries_written,
            now=clock.now,
            on_written=on_written,
        )
        self.executor = Executor(
            registry=self.registry,
            policies=self.policies,
            complete=self.completer.add,
            clock=clock,
            on_auth_error=on_auth_error,
            on_slot_freed=self._slot_freed,
        )
        self.dispatcher = Dispatcher(
            store,
            self.pools,
            worker_id=worker_id,
            clock=clock,
            lease_seconds=cfg.lease_seconds,
            poll_seconds=cfg.poll_seconds,
            claim_batch=cfg.claim_batch,
            start=self._start_job,
        )
        self.leases = Leases(
            store,
            self.pools,
            clock=clock,
            policies=lambda: self.policies,
            held=self.completer.held,
            lease_seconds=cfg.lease_seconds,
            heartbeat_seconds=cfg.heartbeat_seconds,
            reap_seconds=cfg.reap_seconds,
            on_returned=self._retry_due,
        )
        self.listener: Listener = store.listener("jobs", self.dispatcher.on_notify, self.dispatcher.wake)
        self._claimable()
        self._accepting = False
        #: vacuums of the hot table this appliance ran, and the ones that failed
        self.vacuums = 0
        self.vacuum_failures = 0
        self._supervisor: Supervisor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        pools = " ".join(f"{p.tier.name.lower()}={len(p.running)}/{p.size}" for p in self.pools.values())
        return f"<Worker {self.worker_id} {pools} {self.completer!r}>"

    def _claimable(self) -> None:
        for tier in TIERS:
            self.dispatcher.queues[tier] = runnable(self.registry, tier)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, supervisor: Supervisor) -> None:
        """Start claiming and running (the tasks run under ``supervisor``)."""
        self._supervisor = supervisor
        self._loop = asyncio.get_running_loop()
        self._accepting = True
        supervisor.spawn(COMPLETER, self.completer.run)
        supervisor.spawn(HEARTBEAT, self.leases.heartbeat_loop)
        supervisor.spawn(REAPER, self.leases.reaper_loop)
        supervisor.spawn(DISPATCHER, self.dispatcher.run)
        supervisor.spawn(LISTENER, lambda: self.listener.run(self._listener_error))
        supervisor.spawn(EXPERIMENTS, self._experiments_loop)
        supervisor.spawn(VACUUM, self._vacuum_loop)

    async def stop(self, *, grace: float) -> None:
        """Stop claiming, hand back claimed jobs that never started, let running jobs finish within
        ``grace`` seconds (then interrupt them, recorded as such), and write every outcome."""
        supervisor = self._supervisor
        if supervisor is None:
            return
        self._accepting = False
        await supervisor.stop(LISTENER, EXPERIMENTS, VACUUM)
        await self._stop_dispatcher(supervisor)
        await self._hand_back_unstarted()
        running = [e.task for p in self.pools.values() for e in p.running.values() if e.task is not None]
        if running:
            log.info("waiting for running jobs", extra={"event": "shutdown_waiting", "running": len(running)})
            _done, late = await asyncio.wait(running, timeout=grace)
            for p in self.pools.values():
                for entry in p.running.values():
                    if entry.task in late:
                        entry.cancel_reason = CancelReason.SHUTDOWN
                        entry.task.cancel()
            if late:
                log.warning(
                    "jobs interrupted after the grace period",
                    extra={"event": "shutdown_interrupted", "count": len(late)},
                )
                await asyncio.wait(late, timeout=5)

    async def finish(self) -> None:
        """After :meth:`stop` (and after the handlers' own resources closed): write the outcomes
        still buffered, then stop keeping leases."""
        supervisor = self._supervisor
        if supervisor is None:
            return
        await supervisor.stop(COMPLETER)
        if not await self.completer.drain(within=30):
            log.error(
                "outcomes not written; their jobs return when the leases expire",
                extra={"event": "shutdown_outcomes_lost", "pending": self.completer.pending},
            )
        await supervisor.stop(HEARTBEAT, REAPER)
        self._supervisor = None

    async def _stop_dispatcher(self, supervisor: Supervisor) -> None:
        # Cancelling a claim in flight would lose its reply while the database has already
        # marked the jobs running under our lease; let it finish, then hand those jobs back.
        state = supervisor.tasks.get(DISPATCHER)
        task = state.task if state is not None else None
        if task is not None:
            self.dispatcher.stop()
            await asyncio.wait({task}, timeout=10)
        await supervisor.stop(DISPATCHER)

    async def _hand_back_unstarted(self) -> None:
        unstarted = [e for p in self.pools.values() for e in p.running.values() if not e.started]
        if not unstarted:
            return
        for entry in unstarted:
            if entry.task is not None:
                entry.task.cancel()
            self.pools[entry.tier].remove(entry.job.id)
        try:
            await self._store.jobs.release([e.job.id for e in unstarted], [e.job.attempt for e in unstarted])
            await self._store.jobs.notify({e.tier for e in unstarted})
        except DatabaseError as exc:
            log.warning(
                "could not hand back claimed jobs; they return when their leases expire",
                extra={"event": "release_failed", "error": str(exc)},
            )

    async def refresh_experiments(self) -> None:
        """Read every queue's retry-experiment epochs (the variant of each job comes from them)."""
        self.policies.book = VariantBook(await self._store.experiments.epochs())

    async def _experiments_loop(self) -> None:
        # Weights change rarely (a reload, a promotion, a guardrail, the bandit): a few seconds'
        # lag only means a job created in them follows its variant from its next failure on.
        while True:
            await self.refresh_experiments()
            await asyncio.sleep(EXPERIMENTS_REFRESH_SECONDS)

    async def _vacuum_loop(self) -> None:
        last = self.completer.written
        while True:
            await asyncio.sleep(VACUUM_CHECK_SECONDS)
            if self.completer.written - last < VACUUM_AFTER:
                continue
            last = self.completer.written
            try:
                await self._store.jobs.vacuum()
            except DatabaseError as exc:
                # Autovacuum still does it, later: nothing is lost by skipping one.
                log.warning("vacuum of jobs failed", extra={"event": "vacuum_failed", "error": str(exc)})
                self.vacuum_failures += 1
            else:
                self.vacuums += 1

    # -- settings ---------------------------------------------------------------------------

    def apply(self, settings: Settings, registry: Mapping[str, QueueSpec]) -> None:
        """A configuration reload: pool sizes, retry rules, queues and their handlers, and the
        appliance timing apply from the next claim (running jobs keep going)."""
        cfg = settings.appliance
        self.registry.clear()
        self.registry.update(registry)
        self.policies = RetryPolicies(
            settings.retry, ((n, q.settings) for n, q in self.registry.items()), self.policies.book
        )
        self.executor.policies = self.policies
        for tier in TIERS:
            self.pools[tier].size = _pool_size(settings, tier)
        self.dispatcher.configure(
            lease_seconds=cfg.lease_seconds, poll_seconds=cfg.poll_seconds, claim_batch=cfg.claim_batch
        )
        self.completer.configure(batch=cfg.completion_batch, flush_ms=cfg.completion_flush_ms)
        self.leases.lease_seconds = cfg.lease_seconds
        self.leases.heartbeat_seconds = cfg.heartbeat_seconds
        self.leases.reap_seconds = cfg.reap_seconds
        self.lease_seconds = cfg.lease_seconds
        self._claimable()
        self.dispatcher.wake()

    # -- the way of one job -----------------------------------------------------------------

    def wake(self) -> None:
        """Look for due jobs now (tests call this after advancing a manual clock)."""
        self.dispatcher.wake()

    def _start_job(self, pool: TierPool, job: Job) -> None:
        entry = RunningJob(job, pool.tier, time.monotonic() + self.lease_seconds)
        pool.add(entry)
        if not self._accepting or self._loop is None:
            return  # claimed while stopping: stop() hands it back without starting it
        entry.task = self._loop.create_task(self.executor.run(pool, entry), name=f"fleetbox.job.{job.id}")

    def _slot_freed(self, tier: Tier) -> None:
        if self._accepting:
            self.dispatcher.slot_freed(tier)

    def _retry_due(self, tiers: set[Tier]) -> None:
        if self._accepting:
            self.dispatcher.wake(tiers)

    def _retries_written(self, due: Iterable[tuple[Tier, dt.datetime]]) -> None:
        if self._accepting:
            self.dispatcher.wake_at(due)

    async def _listener_error(self, message: str) -> None:
        log.warning(
            "listen connection lost; polling until it is back", extra={"event": "listener_down", "error": message}
        )
