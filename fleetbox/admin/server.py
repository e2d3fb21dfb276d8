"""The admin HTTP server: the aiohttp application and its listener.

:func:`build_app` makes the application (route table, key checks, the JSON error middleware, the
OpenAPI document); :class:`AdminServer` serves it on ``admin.host``/``admin.port`` (port 0: an
ephemeral port, read back from :attr:`AdminServer.port`). The appliance starts it after the
dispatcher and stops it first.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from fleetbox.admin.auth import HEADER, KeyCheck
from fleetbox.admin.errors import error_middleware
from fleetbox.admin.openapi import build_openapi
from fleetbox.admin.operations import AdminOperations
from fleetbox.admin.routes import STATE, AdminState, ApplianceInfo, Handler, Reload, Route, route_table
from fleetbox.client import Client
from fleetbox.config import Settings
from fleetbox.db import Database
from fleetbox.errors import ConfigError
from fleetbox.metrics import Metrics
from fleetbox.monitor import Monitor

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


def _guarded(route: Route, keys: KeyCheck) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        keys.check(route.access, request.headers.get(HEADER))
        return await route.handler(request)

    handle.__name__ = route.handler.__name__
    handle.__doc__ = route.handler.__doc__
    return handle


def build_app(
    *,
    db: Database,
    client: Client,
    monitor: Monitor,
    settings: Settings,
    appliance_info: ApplianceInfo,
    metrics: Metrics | None = None,
    reload: Reload | None = None,
) -> web.Application:
    """The admin API as an aiohttp application (serve it with :class:`AdminServer`, or test it
    with pytest-aiohttp's ``aiohttp_client``)."""
    max_body = settings.appliance.max_payload_bytes + BODY_MARGIN
    app = web.Application(middlewares=[error_middleware], client_max_size=max_body)
    routes = route_table(settings.admin)
    app[STATE] = AdminState(
        ops=AdminOperations(db, client),
        client=client,
        monitor=monitor,
        settings=settings.admin,
        info=appliance_info,
        openapi=build_openapi(routes, version=appliance_info.version, max_body=max_body),
        metrics=metrics if metrics is not None else Metrics(),
        reload=reload,
    )
    keys = KeyCheck(settings.admin)
    for route in routes:
        app.router.add_route(route.method, route.path, _guarded(route, keys), name=route.operation_id)

    async def tag(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers["x-fleetbox-appliance"] = appliance_info.worker_id

    app.on_response_prepare.append(tag)
    return app


class AdminServer:
    """Serves the admin API of one appliance."""

    def __init__(self, app: web.Application, *, host: str, port: int, shutdown_timeout: float = 5.0) -> None:
        self.app = app
        self.host = host
        self._port = port
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
            access_log=logging.getLogger("fleetbox.admin.access"),
            logger=_server_log,
            shutdown_timeout=self._shutdown_timeout,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(f"admin.port: cannot listen on {self.host}:{self._port}: {exc.strerror or exc}") from None
        self._runner = runner
        log.info("admin API listening", extra={"event": "admin_listening", "host": self.host, "port": self.port})

    async def stop(self) -> None:
        """Stop listening; requests in flight get ``shutdown_timeout`` seconds to finish."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("admin API stopped", extra={"event": "admin_stopped"})

    async def __aenter__(self) -> AdminServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
