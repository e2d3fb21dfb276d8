"""The appliance: one asyncio process that claims, runs and records jobs. This module only wires:
it builds the components, starts them in order, stops them in reverse, and hands each its part of
the settings on reload.

Embed it in any asyncio program::

    settings = Settings(database={"dsn": "postgresql://..."}, queues={"reports": {"tier": "low"}})
    async with Appliance(settings, handlers={"reports": build_report}) as app:
        ...  # jobs run until the block ends; app.client enqueues, app.queue_depth() counts

Start order: the database pool (migrations, queue registry and limits written), the Graph runtime
(the simulator when Graph is simulated, tokens, client), the worker (completer, heartbeat, lease
reaper, dispatcher, listener), the rate-limit event writer, presence, the scheduler (the
monitoring schedule), the admin server (with the webhook receiver). Stop order is the reverse,
with the running jobs given ``shutdown_grace_seconds`` to finish before they are interrupted and
recorded as such; the Graph client closes only after them. Every background task runs under one
:class:`~fleetbox.supervise.Supervisor`: whatever one raises, it is logged and restarted with
backoff, and the appliance's health says so.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fleetbox.admin import AdminServer, ApplianceInfo, build_app
from fleetbox.admin.server import fleetbox_version
from fleetbox.admin.stream import LimiterSource, Stream
from fleetbox.alerts.delivery import AlertDelivery
from fleetbox.client import Client
from fleetbox.config import Settings, redaction_of
from fleetbox.errors import ConfigError, DatabaseError, SchemaNotReady
from fleetbox.graph.runtime import GraphRuntime
from fleetbox.models import Clock, QueueDepth, SystemClock
from fleetbox.monitor import Monitor
from fleetbox.monitor.crons import CronRunner
from fleetbox.monitor.health import Condition
from fleetbox.monitor.metrics import Metrics
from fleetbox.monitor.notify import AlertNotifier
from fleetbox.monitor.presence import Presence
from fleetbox.monitor.schedule import PeriodicTask, Scheduler
from fleetbox.monitor.tasks import default_tasks
from fleetbox.service import Service
from fleetbox.service.schedules import ScheduleSpec
from fleetbox.store import Store
from fleetbox.store.migrations import current_version, latest_version, migrate, missing_versions, write_limits
from fleetbox.supervise import Supervisor, TaskState
from fleetbox.worker import Worker
from fleetbox.worker.executor import AuthHook
from fleetbox.worker.registry import Handler, QueueSpec, build_registry, register_queues

log = logging.getLogger("fleetbox.app")

#: Task names of the appliance's own loops (the worker names its own).
SCHEDULER, PRESENCE, RATE_EVENTS, CRON = (
    "fleetbox.scheduler",
    "fleetbox.presence",
    "fleetbox.graph.ratelimit_writer",
    "fleetbox.cron",
)
GRAPH_PAUSES = "fleetbox.graph.pauses"
#: Tasks without which the appliance cannot do its work: while one is failing it is not ready.
CRITICAL_TASKS = ("fleetbox.dispatcher", "fleetbox.completer", "fleetbox.heartbeat")


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether the appliance can do its work (``/readyz``), and if not, why."""

    ready: bool
    reasons: tuple[str, ...]
    #: tasks failing now: name -> last error
    failing: Mapping[str, str | None]
    draining: bool = False


class Appliance:
    """The fleetbox appliance.

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
        self._load_config = load_config
        self._migrate = migrate
        cfg, db, mon = settings.appliance, settings.database, settings.monitor
        self.worker_id = f"{cfg.name}:{os.getpid()}:{secrets.token_hex(3)}"
        self.store = Store(
            self.dsn,
            schema=db.schema_name,
            min_size=db.pool_min,
            max_size=db.pool_max,
            acquire_timeout=db.acquire_timeout_seconds,
            statement_timeout=db.statement_timeout_seconds,
        )
        self.metrics = Metrics()
        self.supervisor = Supervisor(on_failure=self._task_failed)
        self.service = Service(
            self.store,
            clock=self.clock,
            limits=cfg.limits(),
            thresholds=mon.thresholds(),
            redaction=redaction_of(settings),
        )
        self.client = Client.for_service(self.service)
        #: the Graph processors, client, limiters (and the simulator when Graph is simulated)
        self.graph = GraphRuntime(settings, self.store, self.metrics, self.clock)
        #: alert notifications sent to the configured webhooks (the queue alert-webhooks)
        self.alerts = AlertDelivery(self.store, settings.alerts.webhooks)
        # Handlers given in code win over the Graph processors of the spec's queues.
        self._code_handlers = {**self.graph.handlers(), **self.alerts.handlers(), **(handlers or {})}
        self.worker = Worker(
            self.store,
            settings,
            build_registry(settings, self._code_handlers),
            worker_id=self.worker_id,
            clock=self.clock,
            on_auth_error=on_auth_error,
            on_written=self.metrics.observe,
        )
        self.presence = Presence(
            self.store,
            clock=self.clock,
            worker_id=self.worker_id,
            name=cfg.name,
            version=fleetbox_version(),
            queues=self._consumed,
            failing=self._failing,
            interval_seconds=cfg.heartbeat_seconds,
            no_consumer_seconds=mon.no_consumer_seconds,
            task_failing_seconds=mon.task_failing_seconds,
        )
        self.monitor = Monitor(
            self.store,
            self.service.thresholds,
            clock=self.clock,
            window_seconds=mon.window_seconds,
            depth_cache_seconds=mon.depth_cache_seconds,
            consumers=self.presence.consumers,
            notifier=AlertNotifier(settings.alerts.webhooks),
        )
        self.crons = CronRunner(self.service.schedules, clock=self.clock, worker_id=self.worker_id)
        self.scheduler = Scheduler(self.store, clock=self.clock, worker_id=self.worker_id, tasks=self._tasks(settings))
        #: the admin HTTP API, while it serves (admin.enabled); ``admin.port`` is the bound port
        self.admin: AdminServer | None = None
        #: the rate limiter state per queue for the live stream (None: no limiters to show)
        self.limiter_states: LimiterSource | None = self.graph.limiter_states if self.graph.mode != "off" else None
        self._stop_requested = asyncio.Event()
        self._running = False
        self._draining = False
        #: the exit status ``fleetbox run`` ends with (non-zero when the appliance had to stop)
        self.exit_code = 0
        self.started_at: float | None = None

    def __repr__(self) -> str:
        return f"<Appliance {self.worker_id} {self.worker!r} {self.supervisor!r}>"

    @property
    def registry(self) -> Mapping[str, QueueSpec]:
        """The queues this appliance knows, and their handlers."""
        return self.worker.registry

    def _consumed(self) -> list[str]:
        return sorted(name for name, spec in self.worker.registry.items() if spec.handler is not None)

    def _failing(self) -> dict[str, str | None]:
        failing = {name: state.last_error for name, state in self.supervisor.failing().items()}
        return {**failing, **self.graph.failing()}

    def _task_failed(self, state: TaskState) -> None:
        self.metrics.task_failures.labels(state.name).inc()

    async def _conditions(self) -> list[Condition]:
        """What the alert check looks at beside the queue figures: appliances and schedules."""
        return [*await self.presence.conditions(), *await self.crons.conditions()]

    def _tasks(self, settings: Settings) -> list[PeriodicTask]:
        async def retry_experiments() -> object:
            return {"changed": await self.service.experiments.tune(settings.queues)}

        return [
            *default_tasks(settings, self.monitor, self.service.retention, self.clock, self._conditions),
            # guardrails and the bandit of retry experiments (once a minute across the appliances)
            PeriodicTask(name="retry-experiments", every=60, run=retry_experiments),
            *self.graph.tasks(),
        ]

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> Appliance:
        """Open the database, register the queues and start every component."""
        await self.store.open()
        try:
            if self._migrate:
                await migrate(self.store, self.settings.appliance.limits())
            missing = await missing_versions(self.store)
            if missing:
                raise SchemaNotReady(
                    f"the database schema lacks migrations {missing} (at version {await current_version(self.store)}, "
                    f"this fleetbox has {latest_version()}): run `fleetbox migrate`"
                )
            await write_limits(self.store, self.settings.appliance.limits())
            await register_queues(self.store, self.worker.registry)
            await self.service.schedules.apply_config(_schedule_specs(self.settings))
            await self.service.experiments.apply_config(self.settings.queues)
            await self.worker.refresh_experiments()
            await self.graph.start()
        except BaseException:
            await self.graph.stop()
            await self.store.close()
            raise
        self._running = True
        self._draining = False
        self.worker.start(self.supervisor)
        self.supervisor.spawn(RATE_EVENTS, self.graph.writer.run)
        self.supervisor.spawn(GRAPH_PAUSES, self.graph.run_pauses)
        self.supervisor.spawn(PRESENCE, self.presence.loop)
        self.supervisor.spawn(CRON, self.crons.loop)
        if self.settings.monitor.schedule:
            self.supervisor.spawn(SCHEDULER, self.scheduler.run)
        if self.settings.admin.enabled:
            try:
                await self._start_admin()
            except BaseException:
                await self.stop()
                raise
        self.started_at = time.monotonic()
        # Everything alive now (modules, classes, settings, this wiring: some 100k objects) lives
        # as long as the appliance, and the churn of claimed jobs sets off a full collection every
        # few thousand jobs, each walking all of it: 12 of them took 0.43 s of a 2.8 s drain of
        # 100k jobs (docs/performance.md, "Garbage collection"). Frozen, the collector skips
        # them; stop() hands them back, so nothing that becomes garbage later is kept.
        gc.freeze()
        pools = {t.name.lower(): p.size for t, p in self.worker.pools.items()}
        log.info("appliance started", extra={"event": "appliance_started", "worker_id": self.worker_id, "pools": pools})
        return self

    async def stop(self) -> None:
        """Stop claiming, let running jobs finish within the grace period, write every outcome."""
        if not self._running:
            return
        self._running = False
        self._draining = True
        grace = self.settings.appliance.shutdown_grace_seconds
        log.info("appliance stopping", extra={"event": "appliance_stopping", "grace_seconds": grace})
        await self.supervisor.stop(CRON, SCHEDULER, PRESENCE)
        await self.worker.stop(grace=grace)
        await self.supervisor.stop(RATE_EVENTS, GRAPH_PAUSES)
        await self.graph.stop()
        await self.alerts.stop()
        await self.worker.finish()
        await self.presence.leave()
        # The admin API and the control socket answered "draining" until the work was done.
        await self._stop_admin()
        await self.supervisor.stop_all()
        await self.store.close()
        self._draining = False
        gc.unfreeze()
        log.info("appliance stopped", extra={"event": "appliance_stopped"})

    async def __aenter__(self) -> Appliance:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def request_stop(self, exit_code: int = 0) -> None:
        """Ask :meth:`run_until_stopped` to shut down (signal handlers call this); a non-zero
        ``exit_code`` says the appliance had to stop (``fleetbox run`` exits with it)."""
        self.exit_code = self.exit_code or exit_code
        self._stop_requested.set()

    async def run_until_stopped(self, *, install_signals: bool = True) -> int:
        """Start, run until SIGTERM or SIGINT (or :meth:`request_stop`), then stop gracefully.

        A second SIGINT or SIGTERM while stopping ends the process at once (exit status 130).
        Returns the exit status.
        """
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal)
        await self.start()
        try:
            await self._stop_requested.wait()
        finally:
            await self.stop()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        return self.exit_code

    def _on_signal(self) -> None:
        if self._stop_requested.is_set():
            log.warning("second stop signal: exiting at once", extra={"event": "forced_exit"})
            os._exit(130)
        self.request_stop()

    def wake(self) -> None:
        """Look for due jobs now (tests call this after advancing a manual clock)."""
        self.worker.wake()

    async def queue_depth(self) -> list[QueueDepth]:
        """Jobs per queue by state (waiting, scheduled, retrying, running, dead)."""
        return await self.service.queues.depth()

    async def readiness(self) -> Readiness:
        """Ready when the database answers with a current schema and no critical task is failing."""
        reasons: list[str] = []
        try:
            async with asyncio.timeout(5):
                missing = await missing_versions(self.store)
            if missing:
                reasons.append(f"schema lacks migrations {missing}: run `fleetbox migrate`")
        except (DatabaseError, TimeoutError):
            reasons.append("database unreachable")
        failing = {name: s.last_error for name, s in self.supervisor.failing().items()}
        reasons += [f"task {name} is failing" for name in CRITICAL_TASKS if name in failing]
        if self._draining:
            reasons.append("draining: the appliance is stopping")
        if not self._running and not self._draining:
            reasons.append("not running")
        return Readiness(not reasons, tuple(reasons), failing, self._draining)

    # -- reload ---------------------------------------------------------------------------

    async def reload(self, settings: Settings) -> list[str]:
        """Apply a new configuration without a restart; returns the sections that need a restart.

        Each component applies its own part: pool sizes, retry rules, queues and their handlers,
        claim and lease timing (the worker), payload limits and thresholds (the service, and the
        limits table the SQL function reads), the monitor's window, the schedule, Graph rate limits.
        The database, admin address and Graph credentials are kept until the next start and named
        in the result.
        """
        registry = build_registry(settings, self._code_handlers)  # raises ConfigError: nothing applied
        old = self.settings.model_dump()
        new = settings.model_dump()
        live = {"pools", "retry", "queues", "monitor", "retention", "rate_limits", "appliance", "schedules", "alerts"}
        restart = sorted(section for section in new if section not in live and new[section] != old[section])
        await register_queues(self.store, registry)
        await self.service.schedules.apply_config(_schedule_specs(settings))
        await self.service.experiments.apply_config(settings.queues)
        limits = settings.appliance.limits()
        await write_limits(self.store, limits)
        # Keep the parts that only a restart changes, so every component goes on with one set.
        self.settings = settings.model_copy(
            update={"database": self.settings.database, "admin": self.settings.admin, "graph": self.settings.graph}
        )
        self.worker.apply(self.settings, registry)
        await self.worker.refresh_experiments()
        self.service.apply(limits, settings.monitor.thresholds(), redaction_of(settings))
        self.monitor.configure(
            window_seconds=settings.monitor.window_seconds, depth_cache_seconds=settings.monitor.depth_cache_seconds
        )
        self.presence.configure(
            no_consumer_seconds=settings.monitor.no_consumer_seconds,
            task_failing_seconds=settings.monitor.task_failing_seconds,
        )
        self.scheduler.set_tasks(self._tasks(self.settings))
        self.graph.apply(settings)
        self.alerts.apply(settings.alerts.webhooks)
        if self.monitor.notifier is not None:
            self.monitor.notifier.apply(settings.alerts.webhooks)
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
            self.settings.appliance.name,
            self.worker_id,
            fleetbox_version(),
            started_at=self.clock.now().timestamp(),
            graph_mode=self.graph.mode,
        )
        stream = Stream(
            self.store,
            clock=self.clock,
            info=info.to_protocol(read_only=False),
            pools=self.worker.pools,
            limiter=self.limiter_states,
            consumers=self.presence.consumers,
            draining=lambda: self._draining,
        )
        app = build_app(
            service=self.service,
            monitor=self.monitor,
            settings=self.settings,
            appliance_info=info,
            metrics=self.metrics,
            reload=self.reload_from_config if self._load_config is not None else None,
            stream=stream,
            readiness=self.readiness,
            queue_settings=lambda: self.settings.queues,
            webhook_receiver=self.graph.receiver is not None,
        )
        self.graph.install_routes(app)
        self.admin = AdminServer(
            app, host=cfg.host, port=cfg.port, socket_path=cfg.control_socket(self.settings.appliance.data_dir)
        )
        await self.admin.start()
        self.graph.set_public_url(f"http://{cfg.host}:{self.admin.port}")

    async def _stop_admin(self) -> None:
        admin, self.admin = self.admin, None
        if admin is not None:
            await admin.stop()


def _schedule_specs(settings: Settings) -> list[ScheduleSpec]:
    return [ScheduleSpec(**s.model_dump()) for s in settings.schedules]
