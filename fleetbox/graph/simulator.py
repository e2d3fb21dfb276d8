"""A local Microsoft Graph + Entra simulator: a real HTTPS server for msal and the aiohttp Graph client.

Tests and simulator mode (``fleetbox run`` with no Graph credentials) point fleetbox's production
code at it unchanged: msal gets ``authority=f"{sim.authority_host}/{sim.tenant}"`` with
``instance_discovery=False`` and a ``requests.Session`` that trusts :attr:`GraphSimulator.ca_pem_path`;
the Graph client gets :attr:`GraphSimulator.base_url` and :meth:`GraphSimulator.client_ssl_context`.
The TLS certificate comes from a throw-away ``trustme`` CA, because msal refuses any authority or
token endpoint that is not https.

What it serves (the contract is ``docs/graph-contract.md`` in this repository; section numbers below):

- Entra (6.x): OIDC discovery, the token endpoint (client credentials with a secret or an assertion,
  refresh token, device code) and the device-code endpoint.
- Teams (3.1, 3.2): chat and channel message POST/GET (delegated tokens only, as real Graph: an
  app-only token gets the 401 "only for import purposes"), activity-feed notifications, channel
  files folders; per-chat, per-channel, per-user and per-tenant POST limits (429 + Retry-After).
- Outlook (3.3, 3.4): sendMail, drafts, attachment upload sessions, draft send, message and
  attachment reads; Outlook's limits (:mod:`fleetbox.graph.sim_limits`: 4 requests at once per
  mailbox, 150 MB of uploads per 5 minutes per mailbox; 429 ApplicationThrottled), in ``outlook``.
- Drive (3.5, 3.6): small uploads, upload sessions (320 KiB multiples, in order), ``/content`` 302
  to a pre-authenticated download URL.
- Change notifications (4.x): subscriptions with the real validation handshake, lifetimes,
  renew/delete/reauthorize, notification and lifecycle delivery to the receiver.
- Delta (5.x): mail folder delta and ``chats/getAllMessages/delta`` with paging, ``@removed``
  items and 410 on expired or reset tokens.

Every Graph route requires a bearer token this simulator issued and that has not expired;
pre-authenticated upload and download URLs refuse an ``Authorization`` header. Errors use the Graph
envelope; every answer carries ``request-id`` and echoes ``client-request-id``.

Operators' fault mode: :meth:`simulate_faults` (``[graph.simulator.faults]``, rates of 429, 503,
504, 401, slow answers, dropped connections, 503 bursts and Entra outages; see ``sim_faults``).

Test hooks: :meth:`fail`, :meth:`slow`, :meth:`drop`, :meth:`expire_tokens`, :meth:`revoke_permission`,
:meth:`expire_delta_tokens`, :meth:`resync_required`, :meth:`expire_subscription`, :meth:`deliver`,
:meth:`lifecycle`; seeding with :meth:`add_mail`, :meth:`remove_mail`, :meth:`add_chat_message`,
:meth:`remove_chat_message`. Every request is kept in :attr:`requests` with its arrival time.

All state is in memory, on one event loop; the simulator is not thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import shutil
import ssl
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import trustme
from aiohttp import web

from fleetbox.config import SimulatedFaultSettings
from fleetbox.graph import sim_delta, sim_entra, sim_files, sim_mail, sim_teams, sim_webhooks
from fleetbox.graph.sim_common import (
    ARRIVAL,
    BODY,
    MAX_REQUEST_BYTES,
    ActivityNotification,
    Delivery,
    DeltaState,
    DeviceFlow,
    DriveFile,
    GraphError,
    LifecycleEvent,
    MailAttachment,
    OAuthError,
    RecordedRequest,
    RefreshGrant,
    SentMail,
    SlidingWindow,
    TeamsLimits,
    TokenInfo,
    TokenKind,
    UploadSession,
    json_response,
    monotonic,
    retry_after_header,
    utc_now,
)
from fleetbox.graph.sim_faults import FaultMode
from fleetbox.graph.sim_limits import MAILBOX_ROUTE, OutlookLimits, OutlookLoad

__all__ = [
    "ActivityNotification",
    "Delivery",
    "DriveFile",
    "GraphSimulator",
    "LifecycleEvent",
    "MailAttachment",
    "OutlookLimits",
    "RecordedRequest",
    "SentMail",
    "TeamsLimits",
    "TokenKind",
    "UploadSession",
]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_DEFAULT_ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "The request is malformed or incorrect."),
    401: ("InvalidAuthenticationToken", "Access token validation failure."),
    403: ("Forbidden", "Forbidden"),
    404: ("itemNotFound", "The resource could not be found."),
    409: ("Conflict", "The request conflicts with the current state of the resource."),
    410: ("SyncStateNotFound", "The sync state generation is not found."),
    412: ("PreconditionFailed", "A precondition of the request was not met."),
    413: ("RequestEntityTooLarge", "The maximum request length supported is 4MB."),
    429: ("TooManyRequests", "Please retry again later."),
    500: ("generalException", "An unspecified error has occurred."),
    502: ("BadGateway", "Bad gateway."),
    503: ("serviceNotAvailable", "The service is temporarily unavailable."),
    504: ("GatewayTimeout", "The gateway did not receive a timely response."),
}

_MAILBOX_ROUTE = MAILBOX_ROUTE
#: upload and download URLs are pre-authenticated and live outside /v1.0
UPLOAD_PREFIX = "/_upload"
DOWNLOAD_PREFIX = "/_download"


@dataclass
class _Fault:
    kind: str  # "fail" | "slow" | "drop" | "revoke"
    pattern: re.Pattern[str]
    remaining: int
    status: int = 0
    code: str | None = None
    message: str | None = None
    retry_after: str | None = None
    inner_error: bool = True
    seconds: float = 0.0


class GraphSimulator:
    """The simulator. Use ``async with GraphSimulator(...) as sim:`` or :meth:`start` / :meth:`stop`.

    State that tests and simulator mode read (plain containers, mutated in place):

    - ``requests``: every :class:`RecordedRequest`, in arrival order (dropped ones too, status 0);
    - ``chat_messages``: chat id -> the stored chatMessage dicts, oldest first;
    - ``channel_messages``: (team id, channel id) -> the stored chatMessage dicts;
    - ``mailboxes``: mailbox (lower case) -> folder (lower case well-known name, e.g. "inbox",
      "drafts", "sentitems") -> message id -> message dict; :attr:`drafts` is a view of the drafts;
    - ``mail_attachments``: Outlook message id -> its :class:`MailAttachment` list;
    - ``sent_mail``: each :class:`SentMail` (sendMail, or a sent draft), in order;
    - ``drive_items``: driveItem id -> :class:`DriveFile` (uploaded files carry their bytes);
    - ``upload_sessions``: session id -> :class:`UploadSession` (open sessions only);
    - ``subscriptions``: subscription id -> the subscription JSON (live ones only);
    - ``activity_notifications``: each :class:`ActivityNotification` sent;
    - ``deliveries``: each :class:`Delivery` made to a webhook receiver (validation POSTs excluded);
    - ``device_flows``: device code -> its state (see :meth:`approve_device_code`).

    Knobs (attributes, change them any time): ``teams_limits`` (:class:`TeamsLimits`), ``outlook.limits``
    (:class:`OutlookLimits`; ``outlook`` also keeps the peaks and uploads it saw), ``enforce_limits``,
    ``notify_on_change`` (seeded or posted changes notify matching subscriptions), ``validation_timeout_seconds``
    (10), ``delivery_timeout_seconds`` (3), ``notification_redeliveries`` (automatic notifications are retried
    this many times on failure), ``device_code_interval_seconds``, ``min_upload_session_bytes``,
    ``allow_http_notification_urls``, ``auto_approve_device_codes``, ``audience`` (the token audience
    Graph routes accept).
    """

    def __init__(
        self,
        *,
        tenant: str = "simulated-tenant",
        client_id: str = "fleetbox-simulator",
        client_secret: str = "simulator-secret",
        host: str = "127.0.0.1",
        port: int = 0,
        user: str = "svc-fleetbox@simulated.example",
        min_upload_session_bytes: int = 3 * 1024 * 1024,
        token_lifetime_seconds: int = 3599,
        enforce_limits: bool = True,
        allow_http_notification_urls: bool = False,
        auto_approve_device_codes: bool = True,
        audience: str = sim_entra.GRAPH_RESOURCE,
    ) -> None:
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self.host = host
        self.user = user
        self.min_upload_session_bytes = min_upload_session_bytes
        self.token_lifetime_seconds = token_lifetime_seconds
        self.enforce_limits = enforce_limits
        self.allow_http_notification_urls = allow_http_notification_urls
        self.auto_approve_device_codes = auto_approve_device_codes
        #: the token audience Graph routes accept (Microsoft Graph's own; a gateway may use another)
        self.audience = audience
        self.notify_on_change = True
        self.validation_timeout_seconds = 10.0
        self.delivery_timeout_seconds = 3.0
        self.notification_redeliveries = 3
        self.device_code_interval_seconds = 1
        self.teams_limits = TeamsLimits()

        self.requests: list[RecordedRequest] = []
        self.chat_messages: dict[str, list[dict[str, Any]]] = {}
        self.channel_messages: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.mailboxes: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        self.mail_attachments: dict[str, list[MailAttachment]] = {}
        self.sent_mail: list[SentMail] = []
        self.drive_items: dict[str, DriveFile] = {}
        self.upload_sessions: dict[str, UploadSession] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.activity_notifications: list[ActivityNotification] = []
        self.deliveries: list[Delivery] = []
        self.device_flows: dict[str, DeviceFlow] = {}
        #: subscriptions sent reauthorizationRequired and not yet reauthorized or renewed
        self.reauthorization_required: set[str] = set()
        #: unexpected exceptions inside the simulator (answered 500); a test can assert it stays empty
        self.internal_errors: list[BaseException] = []

        self.tokens: dict[str, TokenInfo] = {}
        self.refresh_tokens: dict[str, RefreshGrant] = {}
        self.delta = DeltaState()
        self.teams_drives: dict[str, str] = {}  # team id -> drive id
        self.downloads: dict[str, tuple[str, float]] = {}  # download token -> (drive item id, monotonic expiry)
        self._windows: dict[tuple[str, ...], SlidingWindow] = {}
        #: Outlook's concurrency and upload limits: enforced, and the peaks kept (sim_limits)
        self.outlook = OutlookLoad()
        self._faults: list[_Fault] = []
        #: the operator's fault mode (``[graph.simulator.faults]``), when one is on
        self.fault_mode: FaultMode | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_message_id = 0

        self._port = port
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._tmpdir: Path | None = None
        self._ca = trustme.CA(organization_name="fleetbox Graph simulator")
        self.ca_pem_path = Path()
        self.authority_host = ""
        self.base_url = ""
        self.pre_auth_origin = ""

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the HTTPS server (an ephemeral port unless one was given) and write the CA PEM file."""
        if self._runner is not None:
            raise RuntimeError("the Graph simulator is already running")
        self._tmpdir = Path(tempfile.mkdtemp(prefix="fleetbox-graph-sim-"))
        self.ca_pem_path = self._tmpdir / "simulator-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_pem_path))
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        names = sorted({self.host, "127.0.0.1", "localhost"})
        self._ca.issue_cert(*names).configure_cert(server_ctx)

        # Upload sessions carry up to 60 MiB per PUT; the 4 MB Graph cap is checked per route.
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._middleware])
        self._routes(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port, ssl_context=server_ctx)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            raise
        self._runner = runner
        self._http = aiohttp.ClientSession(trust_env=False)
        port = runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.authority_host = f"https://{host}:{port}"
        self.base_url = f"{self.authority_host}/v1.0"
        # Upload and download URLs use the other name of this host: a different origin, as in production.
        self.pre_auth_origin = f"https://{'127.0.0.1' if self.host == 'localhost' else 'localhost'}:{port}"
        log.info("Graph simulator listening", extra={"event": "graph_simulator_started", "url": self.authority_host})

    async def stop(self) -> None:
        """Stop serving, cancel notification deliveries in progress and remove the CA file."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._runner is not None:
            # Abort the open connections: a graceful TLS close waits for the peer's close_notify, which
            # may never come before the event loop ends, leaving the socket to be reclaimed by the GC.
            server = self._runner.server
            for connection in list(server.connections if server is not None else []):
                if connection.transport is not None:
                    connection.transport.abort()
            await asyncio.sleep(0)
            await self._runner.cleanup()
            self._runner = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        log.info("Graph simulator stopped", extra={"event": "graph_simulator_stopped"})

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._runner is None:
            raise RuntimeError("the Graph simulator is not running")
        return int(self._runner.addresses[0][1])

    @property
    def http(self) -> aiohttp.ClientSession:
        """The simulator's own HTTP client (validation handshakes and notification deliveries)."""
        if self._http is None:
            raise RuntimeError("the Graph simulator is not running")
        return self._http

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts the simulator's CA (for aiohttp)."""
        ctx = ssl.create_default_context()
        self._ca.configure_trust(ctx)
        return ctx

    def server_ssl_context(self, *hosts: str) -> ssl.SSLContext:
        """A server TLS context with a certificate for ``hosts`` from the simulator's CA.

        For an https webhook receiver the simulator itself must trust (it trusts the system store
        plus its own CA when it POSTs notifications).
        """
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert(*(hosts or ("127.0.0.1", "localhost"))).configure_cert(ctx)
        return ctx

    def notification_ssl_context(self) -> ssl.SSLContext:
        """What the simulator trusts when it calls a webhook receiver: the system store and its own CA."""
        ctx = ssl.create_default_context()
        self._ca.configure_trust(ctx)
        return ctx

    # -- fault injection ---------------------------------------------------------------------------

    def fail(
        self,
        route: str,
        status: int,
        *,
        code: str | None = None,
        message: str | None = None,
        retry_after: float | str | None = None,
        times: int = 1,
        inner_error: bool = True,
    ) -> None:
        """Answer the next ``times`` requests matching ``route`` with ``status`` and a Graph error envelope.

        ``route`` is a regex searched in ``"METHOD /path"`` (e.g. ``r"POST /v1.0/chats/.*/messages"``).
        ``retry_after`` as a number is sent as such ("5", "2.5"); a string is sent verbatim (an HTTP
        date). On the Entra routes the error takes the OAuth shape instead.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        default_code, default_message = _DEFAULT_ERRORS.get(status, ("UnknownError", "An error occurred."))
        self._faults.append(
            _Fault(
                "fail",
                re.compile(route),
                times,
                status=status,
                code=code or default_code,
                message=message or default_message,
                retry_after=_format_retry_after(retry_after),
                inner_error=inner_error,
            )
        )

    def slow(self, route: str, seconds: float, *, times: int = 1) -> None:
        """Answer the next ``times`` requests matching ``route`` only after ``seconds``."""
        if times < 1 or seconds < 0:
            raise ValueError("times must be at least 1 and seconds not negative")
        self._faults.append(_Fault("slow", re.compile(route), times, seconds=seconds))

    def drop(self, route: str, *, times: int = 1) -> None:
        """Close the connection of the next ``times`` requests matching ``route`` without answering."""
        if times < 1:
            raise ValueError("times must be at least 1")
        self._faults.append(_Fault("drop", re.compile(route), times))

    def revoke_permission(self, route: str, *, times: int = 1) -> None:
        """Answer the next ``times`` matching requests 403, as the workload does when a permission is missing.

        Outlook routes get ``ErrorAccessDenied`` without innerError; the others ``Forbidden``.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        self._faults.append(_Fault("revoke", re.compile(route), times, status=403))

    def simulate_faults(
        self, settings: SimulatedFaultSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> FaultMode:
        """Turn on the operator's fault mode (see :mod:`fleetbox.graph.sim_faults`); its windows are
        timed on ``clock`` (seconds) from now."""
        self.fault_mode = FaultMode(settings, clock=clock, token_lifetime_seconds=self.token_lifetime_seconds)
        return self.fault_mode

    def clear_faults(self) -> None:
        """Forget every fault not yet used."""
        self._faults.clear()

    def expire_tokens(self) -> None:
        """Every access token issued so far becomes invalid (401 InvalidAuthenticationToken).

        Refresh tokens stay valid, as they do in Entra when an access token expires.
        """
        for info in self.tokens.values():
            info.expires_at = 0.0

    def expire_delta_tokens(self) -> None:
        """Every delta token and nextLink issued so far is forgotten: the next one used gets 410 SyncStateNotFound."""
        self.delta.expire_all()

    def resync_required(self) -> None:
        """The next delta GET that carries a token gets 410 resyncRequired (and a Location to start over)."""
        self.delta.resync_pending = True

    def _take_fault(self, kind: str, route: str) -> _Fault | None:
        for fault in self._faults:
            if fault.kind == kind and fault.remaining > 0 and fault.pattern.search(route):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    # -- the request pipeline ----------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        at = monotonic()
        route = f"{request.method} {request.path}"
        request_id = str(uuid.uuid4())
        client_request_id = request.headers.get("client-request-id", request_id)
        index = len(self.requests)
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=b"",
            at=at,
            status=0,
        )
        self.requests.append(record)
        entra = not request.path.startswith(("/v1.0/", UPLOAD_PREFIX, DOWNLOAD_PREFIX))
        mailbox: str | None = None
        try:
            try:
                body = await request.read()
            except ConnectionError:
                # The client went away in the middle of its body: Graph never saw the request whole
                # and does nothing with it. The record keeps status 0.
                self.requests[index] = replace(record, delivered=False)
                return web.Response(status=400)
            self.requests[index] = record = replace(record, body=body)
            if self._take_fault("drop", route):
                log.info("dropping a connection", extra={"event": "graph_simulator_drop", "route": route})
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=500)
            fault = self._take_fault("fail", route) or self._take_fault("revoke", route)
            if fault is not None:
                raise self._fault_error(fault, request.path, entra)
            step = self.fault_mode.step(request, route, at, index, self.tokens) if self.fault_mode else None
            if step is not None and step.drop:
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=500)
            if step is not None and step.error is not None:
                raise step.error
            if step is not None and step.delay:
                await asyncio.sleep(step.delay)
            # PUT .../content carries a whole file (up to 250 MB); every other Graph request is capped at 4 MB.
            simple_upload = request.method == "PUT" and request.path.endswith(":/content")
            if request.path.startswith("/v1.0/") and len(body) > MAX_REQUEST_BYTES and not simple_upload:
                raise GraphError(413, "RequestEntityTooLarge", "The maximum request length supported is 4MB.")
            mailbox = self.outlook.enter(
                request.method, request.path, len(body), at, self.upload_sessions, enforce=self.enforce_limits
            )
            slow = self._take_fault("slow", route)
            if slow is not None:
                await asyncio.sleep(slow.seconds)
            request[ARRIVAL] = at
            request[BODY] = body
            response = await handler(request)
        except GraphError as exc:
            response = self._error_response(exc, request_id, client_request_id)
        except OAuthError as exc:
            response = web.json_response(
                exc.body(trace_id=request_id, correlation_id=client_request_id), status=exc.status, headers=exc.headers
            )
        except web.HTTPRequestEntityTooLarge:
            response = self._error_response(
                GraphError(413, "RequestEntityTooLarge", "The request body is too large."),
                request_id,
                client_request_id,
            )
        except web.HTTPMethodNotAllowed:
            response = self._error_response(
                GraphError(
                    405, "Request_BadRequest", f"The {request.method} method is not supported for this resource."
                ),
                request_id,
                client_request_id,
            )
        except web.HTTPNotFound:
            segment = request.path.rstrip("/").rsplit("/", 1)[-1]
            response = self._error_response(
                GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'."),
                request_id,
                client_request_id,
            )
        except Exception as exc:
            self.internal_errors.append(exc)
            log.exception("Graph simulator error", extra={"event": "graph_simulator_error", "route": route})
            response = self._error_response(
                GraphError(500, "generalException", "An unspecified error has occurred."), request_id, client_request_id
            )
        finally:
            self.outlook.leave(mailbox)
        # Record what was done even when the client is gone: the effect stands (Graph does not undo a
        # stored fragment because its client died waiting for the answer).
        delivered = request.transport is not None and not request.transport.is_closing()
        self.requests[index] = replace(record, status=response.status, delivered=delivered)
        if not delivered:
            return response
        response.headers["request-id"] = request_id
        response.headers["client-request-id"] = client_request_id
        return response

    def _fault_error(self, fault: _Fault, path: str, entra: bool) -> Exception:
        if fault.kind == "revoke":
            if _MAILBOX_ROUTE.match(path):
                return GraphError(
                    403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.", inner_error=False
                )
            return GraphError(403, "Forbidden", "Forbidden")
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        if entra:
            error = "temporarily_unavailable" if fault.status >= 429 else "invalid_request"
            # OAuth error names are snake_case; a Graph-style default code is replaced by the OAuth one.
            name = fault.code if fault.code and fault.code.islower() else error
            return OAuthError(
                fault.status, name, 90033, fault.message or "A transient error occurred.", headers=headers
            )
        return GraphError(
            fault.status,
            fault.code or "UnknownError",
            fault.message or "An error occurred.",
            inner_error=fault.inner_error,
            retry_after=fault.retry_after,
        )

    def _error_response(self, exc: GraphError, request_id: str, client_request_id: str) -> web.Response:
        error: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.inner_error:
            inner: dict[str, Any] = {
                "date": utc_now().strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_request_id,
            }
            if exc.inner_code:
                inner = {"code": exc.inner_code, **inner}
            error["innerError"] = inner
        headers = dict(exc.headers)
        if exc.retry_after is not None:
            headers["Retry-After"] = exc.retry_after
        return json_response({"error": error}, status=exc.status, headers=headers)

    # -- helpers for the route modules -------------------------------------------------------------

    def authorize(self, request: web.Request) -> TokenInfo:
        """The token of a Graph request, or 401 InvalidAuthenticationToken."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if not header or scheme.lower() != "bearer" or not token:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        info = self.tokens.get(token)
        if info is None:
            raise GraphError(401, "InvalidAuthenticationToken", "CompactToken parsing failed with error code: 80049217")
        if info.expires_at <= time.time():
            raise GraphError(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        if info.audience.rstrip("/") != self.audience.rstrip("/"):
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
        return info

    def refuse_authorization_header(self, request: web.Request) -> None:
        """Pre-authenticated URLs refuse a bearer token (contract 3.5: "may result in 401")."""
        if "Authorization" in request.headers:
            raise GraphError(
                401,
                "unauthenticated",
                "This URL is pre-authenticated; the request must not carry an Authorization header.",
            )

    def rate_check(self, keys: list[tuple[tuple[str, ...], int]], at: float) -> None:
        """Raise 429 TooManyRequests if a request arriving at ``at`` would exceed any (key, limit) window."""
        if not self.enforce_limits:
            return
        waits = []
        for key, limit in keys:
            window = self._windows.get(key)
            if window is None or window.limit != limit:
                window = self._windows[key] = SlidingWindow(limit)
            wait = window.retry_after(at)
            if wait is not None:
                waits.append(wait)
        if waits:
            raise GraphError(
                429, "TooManyRequests", "Please retry again later.", retry_after=retry_after_header(max(waits))
            )

    def rate_accept(self, keys: list[tuple[tuple[str, ...], int]], at: float) -> None:
        """Count an accepted request against its windows."""
        for key, limit in keys:
            self._windows.setdefault(key, SlidingWindow(limit)).add(at)

    def next_message_id(self) -> str:
        """A unique millisecond-epoch chatMessage id (Teams ids are the creation time in ms)."""
        now_ms = int(utc_now().timestamp() * 1000)
        self._last_message_id = max(now_ms, self._last_message_id + 1)
        return str(self._last_message_id)

    def new_token(self) -> str:
        """A random URL-safe token (upload sessions, download URLs)."""
        return secrets.token_urlsafe(24)

    def spawn(self, coro: Awaitable[None], name: str) -> None:
        """Run a background coroutine owned by the simulator (cancelled by :meth:`stop`)."""

        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain_notifications(self) -> None:
        """Wait until every automatic change notification in flight has been delivered (or given up).

        Redeliveries back off for seconds: wrap the call in ``asyncio.timeout`` for a deadline.
        """
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @property
    def drafts(self) -> dict[str, dict[str, Any]]:
        """Unsent drafts of every mailbox: message id -> message."""
        return {mid: msg for box in self.mailboxes.values() for mid, msg in box.get("drafts", {}).items()}

    @property
    def outlook_attachments(self) -> dict[str, list[MailAttachment]]:
        """Alias of :attr:`mail_attachments`: Outlook message id -> its attachments."""
        return self.mail_attachments

    # -- seeding inbound data ----------------------------------------------------------------------

    def add_mail(
        self,
        user: str,
        folder: str,
        message: dict[str, Any],
        *,
        attachments: list[tuple[str, bytes, str]] | None = None,
    ) -> dict[str, Any]:
        """Put a message into ``user``'s ``folder`` (e.g. an inbound mail in "inbox") and return it.

        Missing Graph fields (id, timestamps, etag, from, body, ...) are filled in. ``attachments`` are
        (name, bytes, content type). The change feeds the folder's delta log and, with
        ``notify_on_change``, notifies matching subscriptions.
        """
        return sim_mail.add_mail(self, user, folder, message, attachments or [])

    def remove_mail(self, user: str, folder: str, message_id: str) -> None:
        """Delete a message (delta then reports it ``@removed``; subscriptions get a "deleted" change)."""
        sim_mail.remove_mail(self, user, folder, message_id)

    def add_chat_message(
        self,
        chat_id: str,
        body: str,
        *,
        content_type: str = "text",
        sender: str = "colleague@simulated.example",
        sender_name: str = "Simulated Colleague",
        importance: str = "normal",
    ) -> dict[str, Any]:
        """Post an inbound chat message from ``sender`` (someone other than the service account)."""
        return sim_teams.add_chat_message(
            self,
            chat_id,
            body,
            content_type=content_type,
            sender=sender,
            sender_name=sender_name,
            importance=importance,
        )

    def remove_chat_message(self, chat_id: str, message_id: str) -> None:
        """Soft-delete a chat message (delta reports it ``@removed``)."""
        sim_teams.remove_chat_message(self, chat_id, message_id)

    def revoke_refresh_tokens(self) -> None:
        """Every refresh token becomes invalid (invalid_grant): the delegated account must sign in again."""
        for grant in self.refresh_tokens.values():
            grant.revoked = True

    def approve_device_code(self, user_code: str | None = None) -> None:
        """Approve a pending device-code sign-in (all pending ones when ``user_code`` is None)."""
        sim_entra.approve_device_code(self, user_code)

    # -- webhooks ----------------------------------------------------------------------------------

    async def deliver(
        self, subscription_id: str, items: list[dict[str, Any]] | None = None, *, client_state: str | None = None
    ) -> Delivery:
        """POST one change-notification batch ``{"value": [...]}`` to the subscription's notificationUrl.

        Each item is a partial changeNotification merged over the defaults (subscriptionId,
        clientState, tenantId, subscriptionExpirationDateTime, changeType, resource); ``None`` sends
        one default notification. ``client_state`` overrides clientState (to send a wrong one).
        Returns what the receiver answered and how long it took; redelivery is the caller's call.
        """
        return await sim_webhooks.deliver(self, subscription_id, items, client_state=client_state)

    async def lifecycle(self, subscription_id: str, event: LifecycleEvent | str) -> Delivery:
        """POST a lifecycle notification to the subscription's lifecycleNotificationUrl.

        ``subscriptionRemoved`` also removes the subscription; ``reauthorizationRequired`` marks it
        until it is reauthorized or renewed.
        """
        return await sim_webhooks.lifecycle(self, subscription_id, LifecycleEvent(event))

    def expire_subscription(self, subscription_id: str) -> None:
        """The subscription expires now: renewing it gets 404, and nothing more is delivered."""
        if self.subscriptions.pop(subscription_id, None) is None:
            raise KeyError(f"no subscription {subscription_id!r}")

    # -- routes ------------------------------------------------------------------------------------

    def _routes(self, app: web.Application) -> None:
        def bind(fn: Callable[[GraphSimulator, web.Request], Awaitable[web.StreamResponse]]) -> Handler:
            async def handler(request: web.Request) -> web.StreamResponse:
                return await fn(self, request)

            return handler

        r = app.router
        for method, path, fn in [
            *sim_entra.ROUTES,
            *sim_teams.ROUTES,
            *sim_mail.ROUTES,
            *sim_files.ROUTES,
            *sim_webhooks.ROUTES,
            *sim_delta.ROUTES,
        ]:
            r.add_route(method, path, bind(fn))


def _format_retry_after(value: float | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return format(value, "g")
