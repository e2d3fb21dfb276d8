"""The appliance: one asyncio process that claims, runs and records jobs.

Embed it in any asyncio program::

    settings = Settings(database={"dsn": "postgresql://..."}, queues={"reports": {"tier": "low"}})
    async with Appliance(settings, handlers={"reports": build_report}) as app:
        ...  # jobs run until the block ends; app.client enqueues, app.queue_depth() counts

Start order: database pool, queue registry synced to the database, completer, heartbeat and
lease reaper, dispatcher, listener, scheduler (the monitoring schedule). Stop order is the
reverse, with the running jobs given ``shutdown_grace_seconds`` to finish before they are
interrupted and recorded as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fleetbox.admin import AdminServer, ApplianceInfo, build_app
from fleetbox.admin.server import fleetbox_version
from fleetbox.admin.stream import LimiterSource, Stream
from fleetbox.client import Client
from fleetbox.completer import Completer
from fleetbox.config import Settings
from fleetbox.db import Database, Listener
from fleetbox.dispatcher import Dispatcher
from fleetbox.errors import ConfigError, DatabaseError, SchemaNotReady
from fleetbox.metrics import Metrics
from fleetbox.migrate import current_version, latest_version, migrate
from fleetbox.models import Clock, Job, QueueDepth, SystemClock, Tier
from fleetbox.monitor import Monitor, Thresholds
from fleetbox.pools import AuthHook, Executor, RunningJob, TierPool
from fleetbox.queues import Handler, QueueSpec, build_registry, sync_queues
from fleetbox.retry import RetryPolicy, build_policies
from fleetbox.scheduler import Scheduler, default_tasks

log = logging.getLogger("fleetbox.app")


class Appliance:
    """The fleetbox appliance: dispatcher, tier pools, completer, heartbeat and lease reaper.

    Args:
        settings: the configuration.
        dsn: the database to use (default: the one in settings).
        handlers: queue name -> ``async def handler(job)``, overriding handlers named in config.
        clock: the clock for scheduling decisions (tests pass a :class:`ManualClock`).
        on_auth_error: awaited with the job and the exception when a handler raises
            :class:`~fleetbox.errors.AuthenticationError`, before the one retry is scheduled.
        migrate: apply pending migrations at start.
        load_config: reads the configuration again (``fleetbox run`` passes one that reads the
            file and environment); enables :meth:`reload_from_config` and the admin reload endpoint.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        dsn: str | None = None,
        handlers: Mapping[str, Handler] | None = None,
        clock: Clock | None = None,
        on_auth_error: AuthHook | None = None,
        migrate: bool = False,
        load_config: Callable[[], Settings] | None = None,
    ) -> None:
        resolved = dsn or settings.database.resolved_dsn()
        if resolved is None:
            raise SchemaNotReady("no database configured: pass dsn= or set database.dsn")
        self.settings = settings
        self.dsn = resolved
        self.clock = clock or SystemClock()
        self._code_handlers = dict(handlers or {})
        self._load_config = load_config
        self.registry: dict[str, QueueSpec] = build_registry(settings, handlers)
        self._migrate = migrate
        cfg = settings.appliance
        self.worker_id = f"{cfg.name}:{os.getpid()}:{secrets.token_hex(3)}"
        self.db = Database(
            self.dsn, schema=settings.database.schema_name,
            min_size=settings.database.pool_min, max_size=settings.database.pool_max,
        )  # fmt: skip
        self.pools: dict[Tier, TierPool] = {
            Tier.HIGH: TierPool(Tier.HIGH, settings.pools.high),
            Tier.MEDIUM: TierPool(Tier.MEDIUM, settings.pools.medium),
            Tier.LOW: TierPool(Tier.LOW, settings.pools.low),
        }
        self.metrics = Metrics()
        self.completer = Completer(
            self.db, self.worker_id, batch=cfg.completion_batch, flush_ms=cfg.completion_flush_ms,
            on_retry_due=self._retry_due, now=self.clock.now, on_written=self.metrics.observe,
        )  # fmt: skip
        default_policy = RetryPolicy(settings.retry)
        self.executor = Executor(
            registry=self.registry,
            policies=build_policies(settings.retry, ((n, q.settings) for n, q in self.registry.items())),
            default_policy=default_policy, completer=self.completer, clock=self.clock,
            on_auth_error=on_auth_error, on_slot_freed=self._slot_freed,
        )  # fmt: skip
        self.dispatcher = Dispatcher(
            self.db, self.pools, worker_id=self.worker_id, clock=self.clock,
            lease_seconds=cfg.lease_seconds, poll_seconds=cfg.poll_seconds,
            claim_batch=cfg.claim_batch, start=self._start_job,
        )  # fmt: skip
        self.listener = Listener(
            self.dsn, f"{settings.database.schema_name}_jobs", self.dispatcher.on_notify,
            on_reconnect=self.dispatcher.wake,
        )  # fmt: skip
        self.client = Client(self.db, clock=self.clock, max_payload_bytes=cfg.max_payload_bytes)
        mon = settings.monitor
        self.monitor = Monitor(
            self.db, clock=self.clock, thresholds=configured_thresholds(settings),
            window_seconds=mon.window_seconds, depth_cache_seconds=mon.depth_cache_seconds,
        )  # fmt: skip
        self.scheduler = Scheduler(
            self.db, clock=self.clock, worker_id=self.worker_id,
            tasks=default_tasks(settings, self.db, self.monitor, self.clock),
        )  # fmt: skip
        #: the admin HTTP API, while it serves (admin.enabled); ``admin.port`` is the bound port
        self.admin: AdminServer | None = None
        #: the rate limiter state per queue for the live stream (None: no limiters to show)
        self.limiter_states: LimiterSource | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stop_requested = asyncio.Event()
        self._accepting = False
        self.started_at: float | None = None

    def __repr__(self) -> str:
        pools = " ".join(f"{p.tier.name.lower()}={len(p.running)}/{p.size}" for p in self.pools.values())
        return f"<Appliance {self.worker_id} {pools} {self.completer!r}>"

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> Appliance:
        """Open the database, sync the queues and start every background task."""
        await self.db.open()
        try:
            if self._migrate:
                await migrate(self.db)
            version = await current_version(self.db)
            if version < latest_version():
                raise SchemaNotReady(
                    f"the database schema is at version {version}, this fleetbox needs {latest_version()}: "
                    "run `fleetbox migrate`"
                )
            await sync_queues(self.db, self.registry)
        except BaseException:
            await self.db.close()
            raise
        self._loop = asyncio.get_running_loop()
        self._accepting = True
        self._spawn("fleetbox.completer", self.completer.run())
        self._spawn("fleetbox.heartbeat", self._heartbeat_loop())
        self._spawn("fleetbox.reaper", self._reaper_loop())
        self._spawn("fleetbox.dispatcher", self.dispatcher.run())
        self._spawn("fleetbox.listener", self.listener.run(self._listener_error))
        if self.settings.monitor.schedule:
            self._spawn("fleetbox.scheduler", self.scheduler.run())
        if self.settings.admin.enabled:
            try:
                await self._start_admin()
            except BaseException:
                await self.stop()
                raise
        self.started_at = time.monotonic()
        pools = {t.name.lower(): p.size for t, p in self.pools.items()}
        log.info("appliance started", extra={"event": "appliance_started", "worker_id": self.worker_id, "pools": pools})
        return self

    async def stop(self) -> None:
        """Stop claiming, let running jobs finish within the grace period, write every outcome."""
        if not self._accepting and not self._tasks:
            return
        self._accepting = False
        grace = self.settings.appliance.shutdown_grace_seconds
        log.info("appliance stopping", extra={"event": "appliance_stopping", "grace_seconds": grace})
        await self._stop_admin()
        await self._cancel("fleetbox.scheduler")
        await self._cancel("fleetbox.listener")
        await self._stop_dispatcher()
        await self._hand_back_unstarted()
        running = [e.task for p in self.pools.values() for e in p.running.values() if e.task is not None]
        if running:
            log.info("waiting for running jobs", extra={"event": "shutdown_waiting", "running": len(running)})
            _done, late = await asyncio.wait(running, timeout=grace)
            for p in self.pools.values():
                for entry in p.running.values():
                    if entry.task in late:
                        entry.cancel_reason = "shutdown"
                        entry.task.cancel()
            if late:
                log.warning(
                    "jobs interrupted after the grace period",
                    extra={"event": "shutdown_interrupted", "count": len(late)},
                )
                await asyncio.wait(late, timeout=5)
        await self._cancel("fleetbox.completer")
        if not await self.completer.drain(within=30):
            log.error("outcomes not written; their jobs return when the leases expire",
                      extra={"event": "shutdown_outcomes_lost", "pending": self.completer.pending})  # fmt: skip
        await self._cancel("fleetbox.heartbeat", "fleetbox.reaper")
        await self.db.close()
        log.info("appliance stopped", extra={"event": "appliance_stopped"})

    async def __aenter__(self) -> Appliance:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def request_stop(self) -> None:
        """Ask :meth:`run_until_stopped` to shut down (signal handlers call this)."""
        self._stop_requested.set()

    async def run_until_stopped(self, *, install_signals: bool = True) -> None:
        """Start, run until SIGTERM or SIGINT (or :meth:`request_stop`), then stop gracefully."""
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
        await self.start()
        # This process is the appliance: move what start-up allocated out of the collector's
        # way, so the per-job garbage is scanned without it (a measurable share of drain CPU).
        gc.freeze()
        try:
            await self._stop_requested.wait()
        finally:
            await self.stop()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    def wake(self) -> None:
        """Look for due jobs now (tests call this after advancing a manual clock)."""
        self.dispatcher.wake()

    async def queue_depth(self) -> list[QueueDepth]:
        """Jobs per queue by state (ready, scheduled, retrying, running, dead)."""
        return await self.client.queue_depth()

    async def reload(self, settings: Settings) -> list[str]:
        """Apply a new configuration without a restart; returns the keys that need a restart.

        Applied live: pool sizes, retry rules (defaults and per queue), queues and their
        handlers (new custom queues are registered in the database). Everything else (database,
        lease and poll timing, admin address) is kept until the next start and named in the result.
        """
        registry = build_registry(settings, self._code_handlers)  # raises ConfigError: nothing applied
        old = self.settings.model_dump()
        new = settings.model_dump()
        live = {"pools", "retry", "queues", "monitor", "retention"}
        restart = sorted(section for section in new if section not in live and new[section] != old[section])
        await sync_queues(self.db, registry)
        self.registry.clear()
        self.registry.update(registry)
        self.executor.policies = build_policies(settings.retry, ((n, q.settings) for n, q in registry.items()))
        self.executor.default_policy = RetryPolicy(settings.retry)
        for tier, size in ((Tier.HIGH, settings.pools.high), (Tier.MEDIUM, settings.pools.medium),
                           (Tier.LOW, settings.pools.low)):  # fmt: skip
            self.pools[tier].size = size
        # Keep the parts that only a restart changes, so every task goes on with one set of them.
        self.settings = settings.model_copy(
            update={
                "database": self.settings.database,
                "appliance": self.settings.appliance,
                "admin": self.settings.admin,
            }
        )
        self.monitor.defaults = configured_thresholds(settings)
        self.monitor.window_seconds = settings.monitor.window_seconds
        self.monitor.depth_cache_seconds = settings.monitor.depth_cache_seconds
        self.scheduler.set_tasks(default_tasks(self.settings, self.db, self.monitor, self.clock))
        self.dispatcher.wake()
        log.info("configuration reloaded", extra={"event": "config_reloaded", "needs_restart": restart})
        return restart

    async def reload_from_config(self) -> list[str]:
        """Read the configuration again (SIGHUP, the admin endpoint) and apply it with :meth:`reload`."""
        if self._load_config is None:
            raise ConfigError("this appliance was configured in code; there is no file to read again")
        return await self.reload(self._load_config())

    # -- internals ------------------------------------------------------------------------

    async def _start_admin(self) -> None:
        cfg = self.settings.admin
        info = ApplianceInfo(
            self.settings.appliance.name, self.worker_id, fleetbox_version(),
            started_at=self.clock.now().timestamp(),
            graph_mode="simulated" if self.settings.graph.simulated else "live",
        )  # fmt: skip
        stream = Stream(
            self.db, clock=self.clock, info=info.to_protocol(read_only=False), pools=self.pools,
            limiter=self.limiter_states,
        )  # fmt: skip
        app = build_app(
            db=self.db, client=self.client, monitor=self.monitor, settings=self.settings, appliance_info=info,
            metrics=self.metrics, reload=self.reload_from_config if self._load_config is not None else None,
            stream=stream,
        )  # fmt: skip
        self.admin = AdminServer(
            app, host=cfg.host, port=cfg.port, socket_path=cfg.control_socket(self.settings.appliance.data_dir)
        )
        await self.admin.start()

    async def _stop_admin(self) -> None:
        admin, self.admin = self.admin, None
        if admin is not None:
            await admin.stop()

    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        self._tasks[name] = task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("background task died", exc_info=task.exception(),
                      extra={"event": "task_died", "task": task.get_name()})  # fmt: skip
            self.request_stop()

    async def _cancel(self, *names: str) -> None:
        for name in names:
            task = self._tasks.pop(name, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _start_job(self, pool: TierPool, job: Job) -> None:
        entry = RunningJob(job, pool.tier, time.monotonic() + self.settings.appliance.lease_seconds)
        pool.add(entry)
        if not self._accepting:
            return  # claimed while stopping: stop() hands it back without starting it
        entry.task = self._loop.create_task(self.executor.run(pool, entry), name=f"fleetbox.job.{job.id}")

    async def _stop_dispatcher(self) -> None:
        # Cancelling a claim in flight would lose its reply while the database has already
        # marked the jobs running under our lease; let it finish, then hand those jobs back.
        task = self._tasks.get("fleetbox.dispatcher")
        if task is not None:
            self.dispatcher.stop()
            await asyncio.wait({task}, timeout=10)
        await self._cancel("fleetbox.dispatcher")

    async def _hand_back_unstarted(self) -> None:
        unstarted = [e for p in self.pools.values() for e in p.running.values() if not e.started]
        if not unstarted:
            return
        for entry in unstarted:
            if entry.task is not None:
                entry.task.cancel()
            self.pools[entry.tier].remove(entry.job.id)
        try:
            await self.db.fetch("release", [e.job.id for e in unstarted], [e.job.attempt for e in unstarted])
            await self.db.fetchval("notify_tiers", ",".join(sorted({str(int(e.tier)) for e in unstarted})))
        except DatabaseError as exc:
            log.warning("could not hand back claimed jobs; they return when their leases expire",
                        extra={"event": "release_failed", "error": str(exc)})  # fmt: skip

    def _slot_freed(self, tier: Tier) -> None:
        if self._accepting:
            self.dispatcher.slot_freed(tier)

    def _retry_due(self, tiers: set[Tier]) -> None:
        if self._accepting:
            self.dispatcher.wake(tiers)

    async def _listener_error(self, message: str) -> None:
        log.warning("listen connection lost; polling until it is back",
                    extra={"event": "listener_down", "error": message})  # fmt: skip

    async def _heartbeat_loop(self) -> None:
        cfg = self.settings.appliance
        while True:
            await asyncio.sleep(cfg.heartbeat_seconds)
            await self.heartbeat()

    async def heartbeat(self) -> None:
        """Extend the leases of running jobs; cancel the jobs whose lease is gone."""
        cfg = self.settings.appliance
        entries = [e for p in self.pools.values() for e in p.running.values()]
        sent = time.monotonic()
        if entries:
            now = self.clock.now()
            try:
                rows = await self.db.fetch(
                    "heartbeat", [e.job.id for e in entries], [e.job.attempt for e in entries],
                    now + dt.timedelta(seconds=cfg.lease_seconds),
                )  # fmt: skip
            except DatabaseError as exc:
                log.warning("heartbeat failed", extra={"event": "heartbeat_failed", "error": str(exc)})
                rows = None
            if rows is not None:
                kept = {r["id"] for r in rows}
                for e in entries:
                    if e.job.id in kept:
                        e.lease_deadline = sent + cfg.lease_seconds
                    elif e.task is not None and not e.task.done():
                        self._lose(e)
        # Without a heartbeat getting through, stop a job before its lease can run out, because
        # another appliance may then claim it.
        for e in [e for p in self.pools.values() for e in p.running.values()]:
            if (
                time.monotonic() >= e.lease_deadline - cfg.heartbeat_seconds
                and e.task is not None
                and not e.task.done()
            ):
                self._lose(e)

    def _lose(self, entry: RunningJob) -> None:
        entry.cancel_reason = "lease_lost"
        assert entry.task is not None
        entry.task.cancel()

    async def _reaper_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.appliance.reap_seconds)
            await self.reap()

    async def reap(self) -> int:
        """Return jobs whose lease expired (their worker died) to their queues."""
        try:
            rows = await self.db.fetch("reap_expired", self.clock.now(), 1000)
        except DatabaseError as exc:
            log.warning("lease reaper failed", extra={"event": "reap_failed", "error": str(exc)})
            return 0
        if rows:
            log.warning("expired leases returned to the queue",
                        extra={"event": "leases_expired", "job_ids": [r["job_id"] for r in rows]})  # fmt: skip
            await self.db.fetchval("notify_tiers", "1,2,3")
        return len(rows)


def configured_thresholds(settings: Settings) -> Thresholds:
    """The alert thresholds of the configuration (``[monitor]``)."""
    m = settings.monitor
    return Thresholds(
        max_backlog=m.max_backlog, max_failure_rate=m.max_failure_rate,
        max_processing_time=m.max_processing_time, max_dead_letter_jobs=m.max_dead_letter_jobs,
    )  # fmt: skip
