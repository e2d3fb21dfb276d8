"""The Graph side of an appliance: tokens, client, limiters, processors, receiver, simulator.

With credentials configured it talks to Microsoft Graph. Without them (or with
``graph.simulate = true``) it starts the built-in simulator in process, on a loopback port with
its own test CA, and points the same msal and aiohttp code at it: the embedded default runs end
to end on a fresh machine, and nothing leaves it. The appliance says so at start
(``graph_simulated``), in /api/queue/health and in the terminal UI.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

from aiohttp import web
from pydantic import SecretStr

from fleetbox import protocol
from fleetbox.config import Settings
from fleetbox.errors import FleetboxError
from fleetbox.graph.attachments import transfer_attachment
from fleetbox.graph.client import GraphClient
from fleetbox.graph.context import GraphContext
from fleetbox.graph.inbound import fetch_inbound
from fleetbox.graph.notifications import send_notification
from fleetbox.graph.outlook import send_mail
from fleetbox.graph.ratelimit import Limiters, PauseSync, RateEventWriter, Resource
from fleetbox.graph.simulator import GraphSimulator
from fleetbox.graph.sync import run_sync
from fleetbox.graph.teams import send_teams_message
from fleetbox.graph.tokens import Tokens
from fleetbox.graph.webhooks import Receiver, Subscriptions, process_webhook
from fleetbox.models import Clock, Job
from fleetbox.monitor.metrics import Metrics
from fleetbox.monitor.schedule import PeriodicTask
from fleetbox.store import Store
from fleetbox.worker.registry import Handler

log = logging.getLogger("fleetbox.graph")

GraphMode = Literal["simulated", "live", "off"]

#: the limiter resource each Graph queue's requests go through (for monitoring)
QUEUE_RESOURCES = {
    "teams-outbound": "teams",
    "notifications": "teams",
    "teams-inbound": "teams",
    "outlook-outbound": "outlook",
    "outlook-inbound": "outlook",
    "sync": "outlook",
    "attachments": "attachments",
    "webhooks": "subscriptions",
}

#: the mailbox the simulator's sends come from when none is configured
SIMULATED_SENDER = "fleet-notices@simulated.example"


def graph_mode(settings: Settings) -> GraphMode:
    if not settings.graph.enabled:
        return "off"
    return "simulated" if settings.graph.simulated else "live"


class GraphRuntime:
    """Builds and runs the Graph processors of one appliance."""

    def __init__(self, settings: Settings, store: Store, metrics: Metrics, clock: Clock) -> None:
        self.settings = settings
        self.mode = graph_mode(settings)
        self.store = store
        self.clock = clock
        self._metrics = metrics
        self.writer = RateEventWriter(store, metrics)
        self.limiters = Limiters(settings.rate_limits, record=self.writer.record)
        #: shares 429 pauses with the other appliances (run as an owned task)
        self.pauses = PauseSync(store, self.limiters)
        if self.mode != "off":
            metrics.watch_limiters(self.limiters.gauges)
        self.simulator: GraphSimulator | None = None
        self.tokens: Tokens | None = None
        self.client: GraphClient | None = None
        self.ctx: GraphContext | None = None
        self.subscriptions: Subscriptions | None = None
        self.receiver: Receiver | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._subscribing: asyncio.Task[None] | None = None

    def handlers(self) -> dict[str, Handler]:
        """The processors of the spec's Graph-backed queues (none when Graph is off)."""
        if self.mode == "off":
            return {}
        return {
            "teams-outbound": self._bound(send_teams_message),
            "outlook-outbound": self._bound(send_mail),
            "notifications": self._bound(send_notification),
            "attachments": self._bound(transfer_attachment),
            "webhooks": self._webhook,
            "teams-inbound": self._bound(fetch_inbound),
            "outlook-inbound": self._bound(fetch_inbound),
            "sync": self._bound(run_sync),
        }

    def _bound(self, processor: Callable[[GraphContext, Job], Awaitable[None]]) -> Handler:
        async def handler(job: Job) -> None:
            # A long limiter wait inside the job defers it rather than holding its worker slot.
            with Limiters.job(job.id):
                await processor(self._context(), job)

        return handler

    async def _webhook(self, job: Job) -> None:
        assert self.subscriptions is not None
        with Limiters.job(job.id):
            await process_webhook(self._context(), self.subscriptions, job)

    def _context(self) -> GraphContext:
        if self.ctx is None:
            raise FleetboxError("the Graph runtime has not started")
        return self.ctx

    async def run_pauses(self) -> None:
        """Share Graph's pauses with the other appliances until cancelled (idle when Graph is off)."""
        if self.mode == "off":
            await asyncio.Event().wait()
        await self.pauses.run()

    async def start(self) -> None:
        """Start the simulator (when simulated), the tokens and the client; take over the pauses
        other appliances were told of."""
        if self.mode == "off":
            return
        await self.pauses.sync()
        graph = self.settings.graph
        data_dir = self.settings.appliance.data_dir
        cache_path = graph.token_cache_path or data_dir / "graph-token-cache.json"
        if self.mode == "simulated":
            self.simulator = GraphSimulator(allow_http_notification_urls=True)
            await self.simulator.start()
            self._simulate_faults(self.simulator)
            self._tmp = tempfile.TemporaryDirectory(prefix="fleetbox-graph-sim-")
            cache_path = Path(self._tmp.name) / "token-cache.json"
            graph = graph.model_copy(
                update={
                    "tenant_id": self.simulator.tenant,
                    "client_id": self.simulator.client_id,
                    "client_secret": SecretStr(self.simulator.client_secret),
                    "authority_host": self.simulator.authority_host,
                    "base_url": self.simulator.base_url,
                    "ca_bundle": self.simulator.ca_pem_path,
                    "sender": graph.sender or SIMULATED_SENDER,
                    "client_state": graph.client_state or SecretStr(secrets.token_urlsafe(24)),
                }
            )
            log.warning(
                "Microsoft Graph is simulated: the Graph queues run against the built-in simulator and nothing "
                "leaves this machine",
                extra={"event": "graph_simulated", "base_url": graph.base_url},
            )
        tokens = self.tokens = Tokens(graph, cache_path=cache_path, clock=lambda: self.clock.now().timestamp())
        await tokens.start()
        if self.simulator is not None and tokens.delegated_account() is None:
            # The simulator approves its own device codes: the Teams service account signs in here.
            await tokens.device_login(lambda _message: None)
        self.client = GraphClient(graph, tokens, self.limiters)
        await self.client.start()
        files_dir = graph.files_dir or data_dir / "attachments"
        # Attachments are private: a directory fleetbox creates is the appliance user's only.
        files_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.ctx = GraphContext(self.store, self.client, self.limiters, graph, self.clock, files_dir)
        self.subscriptions = Subscriptions(self.ctx)
        secret = graph.client_state.get_secret_value() if graph.client_state else None
        self.receiver = Receiver(self.store, secret, on_rejected=self._metrics.notifications_rejected.inc)
        log.info("graph ready", extra={"event": "graph_started", "mode": self.mode, "base_url": graph.base_url})

    def _simulate_faults(self, simulator: GraphSimulator) -> None:
        """Turn on the rehearsal faults of ``[graph.simulator.faults]``, timed on the appliance's clock."""
        faults = self.settings.graph.simulator.faults
        if not faults.active:
            return
        mode = simulator.simulate_faults(faults, clock=lambda: self.clock.now().timestamp())
        log.warning(
            "the Graph simulator injects faults (%s): the Graph queues should ride through them",
            mode.describe(),
            extra={"event": "graph_simulator_faults", "profile": faults.profile},
        )

    def install_routes(self, app: web.Application) -> None:
        """The webhook receiver's routes on the admin application (after :meth:`start`)."""
        if self.receiver is not None:
            self.receiver.install(app)

    def set_public_url(self, url: str) -> None:
        """The admin server's address, once bound: the simulator's notifications go there. The
        receiver answers now, so the configured subscriptions are created (or adopted) at once
        rather than at the first 5-minute tick."""
        if self.ctx is not None and self.simulator is not None and self.settings.graph.webhook_base_url is None:
            self.ctx.settings = self.ctx.settings.model_copy(update={"webhook_base_url": url})
        if self.subscriptions is not None and self.settings.graph.subscriptions and self._subscribing is None:
            self._subscribing = asyncio.create_task(self._subscribe_at_start(), name="graph-subscribe-at-start")

    async def _subscribe_at_start(self) -> None:
        assert self.subscriptions is not None
        try:
            done = await self.subscriptions.maintain()
        except Exception as exc:  # the 5-minute tick tries again
            log.warning(
                "subscriptions not created at start; the scheduled check will try again",
                extra={"event": "graph_subscriptions_deferred", "error": str(exc)},
            )
        else:
            log.info("subscriptions checked at start", extra={"event": "graph_subscriptions_started", **done})

    def tasks(self) -> list[PeriodicTask]:
        """Scheduled: keep the configured subscriptions alive (every 5 minutes, once across processes)."""
        if self.mode == "off" or not self.settings.graph.subscriptions:
            return []
        return [PeriodicTask(name="graph-subscriptions", run=self._maintain, every=300)]

    async def _maintain(self) -> object:
        assert self.subscriptions is not None
        return await self.subscriptions.maintain()

    def failing(self) -> dict[str, str | None]:
        """Graph's part of the appliance's failing tasks (a ``task_failing`` alert after a minute):
        token kinds Entra is failing to issue (``graph-tokens-app``, ``graph-tokens-delegated``), and
        a burst of notifications with a wrong clientState (``graph-webhook-receiver``)."""
        failing: dict[str, str | None] = {}
        if self.tokens is not None:
            failing.update({f"graph-tokens-{o.kind.value}": o.error for o in self.tokens.failing()})
        if self.receiver is not None and (burst := self.receiver.failing()) is not None:
            failing["graph-webhook-receiver"] = burst
        return failing

    def limiter_states(self) -> dict[str, protocol.LimiterState]:
        """Per Graph queue, the state of the limiter of the resource it calls (the live stream's)."""
        limits = self.limiters.settings
        totals: dict[str, protocol.LimiterState] = {}
        for snap in self.limiters.snapshot():
            empty = protocol.LimiterState(
                resource=snap.resource, ratePerSecond=None, available=None, pausedUntil=None, waits=0, throttled=0
            )
            state = totals.setdefault(snap.resource, empty)
            if snap.key is None:
                state["ratePerSecond"] = snap.rate_per_second
                state["available"] = snap.available
            state["waits"] += snap.waits
            state["throttled"] += snap.throttled
            if snap.paused_until is not None:
                state["pausedUntil"] = max(state["pausedUntil"] or 0.0, snap.paused_until)
        # The limits that are not one appliance-wide bucket: say what they are.
        if (outlook := totals.get("outlook")) is not None:
            outlook["ratePerSecond"] = limits.outlook_requests / limits.outlook_period_seconds
            outlook["concurrency"] = limits.outlook_concurrent_per_mailbox
            outlook["per"] = "mailbox"
            outlook["appConcurrency"] = limits.outlook_concurrent
            outlook["inUse"] = self.limiters.held(Resource.OUTLOOK)
            outlook["uploadBytes"] = limits.outlook_upload_bytes
            outlook["uploadPeriodSeconds"] = limits.outlook_upload_period_seconds
        if (attachments := totals.get("attachments")) is not None:
            attachments["concurrency"] = limits.attachments_concurrent
            attachments["per"] = "appliance"
            attachments["inUse"] = self.limiters.held(Resource.ATTACHMENTS)
        return {queue: totals[resource] for queue, resource in QUEUE_RESOURCES.items() if resource in totals}

    def apply(self, settings: Settings) -> None:
        """A reload: new rate limits apply to later requests."""
        self.limiters.apply(settings.rate_limits)
        self.settings = settings

    async def stop(self) -> None:
        """Close the client and the simulator; then write the rate-limit events still buffered."""
        if self._subscribing is not None:
            self._subscribing.cancel()
            await asyncio.gather(self._subscribing, return_exceptions=True)
            self._subscribing = None
        if self.client is not None:
            await self.client.close()
            self.client = None
        if self.tokens is not None:
            self.tokens.close()
            self.tokens = None
        if self.simulator is not None:
            await self.simulator.stop()
            self.simulator = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self.ctx = None
        await self.writer.drain()
