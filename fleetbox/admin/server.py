"""The admin HTTP server: the aiohttp application and its listener.

:func:`build_app` makes the application (route table, key checks, the JSON error middleware, the
OpenAPI document, the live stream); :class:`AdminServer` serves it on ``admin.host``/``admin.port``
(port 0: an ephemeral port, read back from :attr:`AdminServer.port`) and on the unix control
socket (:class:`ControlSocket`), where requests need no key: the socket file is owner-only, so
only the appliance's own user can connect. The appliance starts it after the dispatcher and stops
it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import re
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from fleetbox.admin import dashboard, dependencies, schedules
from fleetbox.admin.auth import HEADER, KeyCheck, KeyThrottle
from fleetbox.admin.errors import error_middleware
from fleetbox.admin.inputs import via_control_socket
from fleetbox.admin.models import read_inputs, reads
from fleetbox.admin.openapi import build_openapi
from fleetbox.admin.routes import STATE, AdminState, ApplianceInfo, Readiness, Reload, Route, route_table
from fleetbox.admin.stream import Sockets, Stream
from fleetbox.config import AdminSettings, QueueSettings, Settings
from fleetbox.errors import ConfigError
from fleetbox.monitor import Monitor
from fleetbox.monitor.metrics import Metrics
from fleetbox.service import Service

log = logging.getLogger("fleetbox.admin")


class _RequestContentFilter(logging.Filter):
    """aiohttp logs a malformed request with a traceback quoting the offending header line, which
    may hold a key: keep only that a malformed request was refused (aiohttp answered it 400)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = "malformed HTTP request refused with 400 (%s)"
            record.args = (type(exc).__name__,)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.event = "admin_bad_request"
        return True


#: A job search's payload filter in a query string: ``data=`` up to the next parameter.
_PAYLOAD_FILTER = re.compile(r"([?&]data=)[^&\s\"]*")


class _PayloadFilterFilter(logging.Filter):
    """The access log writes each request line; a job search's ``data=`` filter holds payload
    values (a search by a masked value is refused, but the line is logged before): it is logged
    as ``data=***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _PAYLOAD_FILTER.sub(r"\1***", record.msg)
        for name, value in vars(record).items():
            if name != "msg" and isinstance(value, str) and "data=" in value:
                setattr(record, name, _PAYLOAD_FILTER.sub(r"\1***", value))
        return True


#: The access log: one line per request, payload filters masked.
_access_log = logging.getLogger("fleetbox.admin.access")
_access_log.addFilter(_PayloadFilterFilter())

#: aiohttp's request-handling log (malformed requests, handler crashes outside the middleware).
_server_log = logging.getLogger("fleetbox.admin.server")
_server_log.addFilter(_RequestContentFilter())

#: Room for the JSON around a payload of ``appliance.max_payload_bytes`` (escaping can grow it).
BODY_MARGIN = 64 * 1024


def fleetbox_version() -> str:
    """The installed fleetbox version (``0+unknown`` when run from a tree that is not installed)."""
    try:
        return version("fleetbox")
    except PackageNotFoundError:
        return "0+unknown"


#: Set on a request whose key matched a configured one (after the wrong-key throttle let it in).
KEYED = web.RequestKey("fleetbox_keyed", bool)


def _guarded(
    route: Route, keys: KeyCheck, throttle: KeyThrottle
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    wanted = reads(route.handler)

    async def handle(request: web.Request) -> web.StreamResponse:
        # On the control socket the file permissions already decided who may connect.
        if not via_control_socket(request):
            header = request.headers.get(HEADER)
            if header and keys.any_configured:
                # Every keyed request counts, public ones too: what a keyed caller sees more
                # (the appliance header, driver messages) must not answer guesses either.
                address = request.remote or "unknown"
                throttle.admit(address)
                if keys.matches(header):
                    request[KEYED] = True
                else:
                    await throttle.wrong(address)
            dashboard.guard(request, route.access, keys)  # the key header, else a dashboard session
        return await route.handler(request, **await read_inputs(request, wanted))

    handle.__name__ = route.handler.__name__
    handle.__doc__ = route.handler.__doc__
    return handle


def api_routes(settings: AdminSettings) -> list[Route]:
    """Every endpoint of the admin API: the queues' (:mod:`fleetbox.admin.routes`), then the
    schedules' and retry experiments' (:mod:`fleetbox.admin.schedules`), a job's dependencies
    (:mod:`fleetbox.admin.dependencies`)."""
    return route_table(settings) + schedules.route_table() + dependencies.route_table()


def build_app(
    *,
    service: Service,
    monitor: Monitor,
    settings: Settings,
    appliance_info: ApplianceInfo,
    metrics: Metrics | None = None,
    reload: Reload | None = None,
    stream: Stream | None = None,
    readiness: Readiness | None = None,
    key_throttle: KeyThrottle | None = None,
    queue_settings: Callable[[], Mapping[str, QueueSettings]] | None = None,
    webhook_receiver: bool = False,
) -> web.Application:
    """The admin API as an aiohttp application (serve it with :class:`AdminServer`, or test it
    with pytest-aiohttp's ``aiohttp_client``).

    ``stream`` is the live stream's sampler (the appliance passes one that sees its pools and
    limiters; by default one that sees only the database). The application starts its task at
    startup, closes the stream's WebSockets on shutdown and stops the task at cleanup.
    ``key_throttle`` counts wrong keys per address (default: 30 at once, then one every 2 s).
    ``queue_settings`` gives the queues' configuration in force (it changes on reload; default:
    ``settings``'). ``webhook_receiver``: the caller installs the Graph change-notification
    receiver on the application (the OpenAPI document describes it then).
    """
    max_body = settings.appliance.max_payload_bytes + BODY_MARGIN
    app = web.Application(middlewares=[error_middleware], client_max_size=max_body)
    routes = api_routes(settings.admin)
    keys = KeyCheck(settings.admin)
    throttle = key_throttle if key_throttle is not None else KeyThrottle()
    if stream is None:
        stream = Stream(service.store, clock=service.clock, info=appliance_info.to_protocol(read_only=False))
    sockets = Sockets()
    app[STATE] = AdminState(
        service=service,
        monitor=monitor,
        settings=settings.admin,
        info=appliance_info,
        openapi=build_openapi(
            routes, version=appliance_info.version, max_body=max_body, webhook_receiver=webhook_receiver
        ),
        metrics=metrics if metrics is not None else Metrics(),
        stream=stream,
        sockets=sockets,
        keys=keys,
        reload=reload,
        readiness=readiness,
        queue_settings=queue_settings or (lambda: settings.queues),
    )
    for route in routes:
        app.router.add_route(
            route.method, route.match or route.path, _guarded(route, keys, throttle), name=route.operation_id
        )
    dashboard.install(app, settings.admin, keys, throttle)

    async def run_stream(_app: web.Application) -> AsyncIterator[None]:
        assert stream is not None
        stream.start()
        yield
        await stream.stop()

    async def close_sockets(_app: web.Application) -> None:
        # Before the runner waits for handlers to finish: a stream handler ends only when its
        # socket closes.
        await sockets.close_all()

    app.cleanup_ctx.append(run_stream)
    app.on_shutdown.append(close_sockets)

    async def tag(request: web.Request, response: web.StreamResponse) -> None:
        # Which process answers is for operators only: keyed callers and the control socket.
        # (Only requests that passed the wrong-key throttle: a 404 must not answer guesses.)
        if via_control_socket(request) or request.get(KEYED, False):
            response.headers["x-fleetbox-appliance"] = appliance_info.worker_id
        # No Server header: it would name the Python and aiohttp versions to anyone.
        response.headers.popall("Server", None)

    app.on_response_prepare.append(tag)
    return app


#: Linux keeps a unix socket's path in 108 bytes, NUL included.
MAX_SOCKET_PATH = 107


class ControlSocket:
    """The admin application's unix socket file: owner-only, never taken from a live appliance.

    An exclusive lock on ``<path>.lock``, held while serving, says whose socket it is: a second
    appliance configured with the same path fails to start instead of taking it over. A socket
    file left behind by a process that died is removed, but only if nothing answers on it (so an
    older fleetbox without the lock is not robbed either). The socket is bound, made 0600, and
    only then listens, so nobody can connect while it has wider permissions. The lock file stays
    (removing it would let two starting processes lock two different files).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: int | None = None
        self._identity: tuple[int, int] | None = None

    def _refuse(self, reason: str) -> ConfigError:
        return ConfigError(f"admin.socket_path: {reason} ({self.path})")

    async def bind(self) -> socket.socket:
        """The bound (not yet listening) socket; ConfigError naming the path when it cannot be had."""
        size = len(os.fsencode(self.path))
        if size > MAX_SOCKET_PATH:
            raise self._refuse(f"{size} bytes is longer than the {MAX_SOCKET_PATH} a unix socket path may have")
        parent = self.path.parent
        if not parent.exists():
            try:
                parent.mkdir(parents=True, mode=0o700)
            except OSError as exc:
                raise self._refuse(f"cannot create its directory: {exc.strerror or exc}") from None
        lock = self._open_lock()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise self._refuse("another fleetbox process serves this control socket; stop it or set another") from None
        try:
            await self._remove_stale()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(str(self.path))
                os.chmod(self.path, 0o600)
            except OSError as exc:
                sock.close()
                raise self._refuse(f"cannot bind: {exc.strerror or exc}") from None
        except BaseException:
            os.close(lock)
            raise
        info = os.stat(self.path)
        self._identity = (info.st_dev, info.st_ino)
        self._lock = lock
        return sock

    def _open_lock(self) -> int:
        """The lock file, opened without following a symlink (one planted there could make the
        appliance create or lock a file elsewhere) and refused unless this user owns it."""
        name = f"{self.path}.lock"
        try:
            lock = os.open(name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._refuse(f"its lock file {name} is a symlink; remove it") from None
            raise self._refuse(f"cannot create its lock file: {exc.strerror or exc}") from None
        info = os.fstat(lock)
        if info.st_uid != os.geteuid() or not stat.S_ISREG(info.st_mode):
            os.close(lock)
            raise self._refuse(
                f"its lock file {name} is not a regular file owned by this user (uid {os.geteuid()}); remove it"
            )
        return lock

    async def _remove_stale(self) -> None:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise self._refuse("a file that is not a socket is in the way; remove it or set another path")
        try:
            async with asyncio.timeout(2):
                _reader, writer = await asyncio.open_unix_connection(str(self.path))
        except (ConnectionRefusedError, FileNotFoundError):
            pass  # nobody listens: left behind by a process that died
        except (OSError, TimeoutError) as exc:
            raise self._refuse(f"cannot tell whether another process serves it: {exc}") from None
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            raise self._refuse("another process answers on this socket; stop it or set another path")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        log.warning("removed a stale control socket", extra={"event": "admin_socket_stale", "path": str(self.path)})

    def remove(self) -> None:
        """Remove the socket file (if it is still ours) and release the lock."""
        try:
            info = os.stat(self.path)
            if (info.st_dev, info.st_ino) == self._identity:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        lock, self._lock = self._lock, None
        if lock is not None:
            os.close(lock)


class AdminServer:
    """Serves the admin API of one appliance on TCP and, when ``socket_path`` is given, on that
    unix socket (the control socket; no key is needed there)."""

    def __init__(
        self,
        app: web.Application,
        *,
        host: str,
        port: int,
        socket_path: Path | None = None,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.app = app
        self.host = host
        self._port = port
        self.socket_path = socket_path
        self._socket: ControlSocket | None = None
        self._runner: web.AppRunner | None = None
        self._shutdown_timeout = shutdown_timeout

    @property
    def port(self) -> int:
        """The port it listens on (the bound one when configured as 0)."""
        if self._runner is None:
            return self._port
        for address in self._runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                return int(address[1])
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Listen; a port that cannot be bound raises :class:`ConfigError` naming it."""
        runner = web.AppRunner(
            self.app,
            access_log=_access_log,
            logger=_server_log,
            shutdown_timeout=self._shutdown_timeout,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port)
        try:
            try:
                await site.start()
            except OSError as exc:
                raise ConfigError(
                    f"admin.port: cannot listen on {self.host}:{self._port}: {exc.strerror or exc}"
                ) from None
            if self.socket_path is not None:
                control = ControlSocket(self.socket_path)
                sock = await control.bind()
                self._socket = control
                await web.SockSite(runner, sock).start()
        except BaseException:
            await self._cleanup(runner)
            raise
        self._runner = runner
        where = str(self.socket_path) if self.socket_path else None
        dashboard_url = f"{self.url}/ui/"
        log.info(
            "admin API listening; the dashboard is at %s",
            dashboard_url,
            extra={
                "event": "admin_listening",
                "host": self.host,
                "port": self.port,
                "socket": where,
                "dashboard": dashboard_url,
            },
        )

    async def _cleanup(self, runner: web.AppRunner) -> None:
        await runner.cleanup()
        control, self._socket = self._socket, None
        if control is not None:
            control.remove()

    async def stop(self) -> None:
        """Stop listening (stream sockets are closed first); requests in flight get
        ``shutdown_timeout`` seconds to finish; the control socket file is removed."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await self._cleanup(runner)
            log.info("admin API stopped", extra={"event": "admin_stopped"})

    async def __aenter__(self) -> AdminServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
