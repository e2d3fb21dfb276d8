"""Fixtures for the admin API: the aiohttp application on this test's database, keys, and an
appliance whose handler can be told to succeed, fail, or block until released."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from fleetbox.admin import ApplianceInfo, build_app
from fleetbox.admin.auth import KeyThrottle
from fleetbox.admin.routes import Readiness
from fleetbox.app import Appliance
from fleetbox.client import Client
from fleetbox.config import Settings
from fleetbox.errors import PermanentError, TransientError
from fleetbox.models import Job, ManualClock
from fleetbox.monitor import Monitor
from fleetbox.store import Store

ADMIN_KEY = "admin-key-for-tests-0123456789"
READ_KEY = "read-key-for-tests-9876543210"
ADMIN = {"x-admin-key": ADMIN_KEY}
READ = {"x-admin-key": READ_KEY}
#: the custom queue of the test appliance, and a second one on the same tier
WORK = "work"
OTHER = "other"

Api = TestClient[web.Request, web.Application]
ApiFactory = Callable[..., Awaitable[Api]]


def admin_section(**admin: Any) -> dict[str, Any]:
    """The [admin] settings of a test: an ephemeral port and both keys (override with key=None)."""
    return {"port": 0, "key": ADMIN_KEY, "read_key": READ_KEY, **admin}


def test_monitor(client: Client, **kwargs: Any) -> Monitor:
    """A monitor over the client's database and thresholds, counting afresh on every request."""
    kwargs.setdefault("depth_cache_seconds", 0)
    return Monitor(client.store, client.service.thresholds, clock=client.clock, **kwargs)


def app_for(
    settings: Settings,
    client: Client,
    monitor: Monitor | None = None,
    *,
    readiness: Readiness | None = None,
    key_throttle: KeyThrottle | None = None,
) -> web.Application:
    """build_app for a test (``readiness``: the appliance's, or one the test makes up)."""
    return build_app(
        service=client.service,
        monitor=monitor or test_monitor(client),
        settings=settings,
        appliance_info=ApplianceInfo("test", "test:1:abc", "0.1.0"),
        readiness=readiness,
        key_throttle=key_throttle,
    )


@pytest.fixture
def api_factory(aiohttp_client: Any, db: Store, make_settings: Callable[..., Settings]) -> ApiFactory:
    """``await api_factory(client=..., **admin_settings)``: a test client on build_app."""

    async def make(*, client: Client | None = None, key_throttle: KeyThrottle | None = None, **admin: Any) -> Api:
        settings = make_settings(admin=admin_section(**admin))
        test_client: Api = await aiohttp_client(app_for(settings, client or Client(db), key_throttle=key_throttle))
        return test_client

    return make


@pytest.fixture
async def api(api_factory: ApiFactory) -> Api:
    """The admin API with both keys configured, on this test's database (no appliance)."""
    return await api_factory()


@dataclass
class Behaviour:
    """What the test appliance's handler does, by ``job.data["mode"]``: ``ok`` (default),
    ``transient`` (retried), ``permanent`` (dead-lettered), ``block`` (runs until released)."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    running: set[int] = field(default_factory=set)
    done: list[int] = field(default_factory=list)

    async def handle(self, job: Job) -> None:
        mode = job.data.get("mode", "ok")
        if mode == "transient":
            raise TransientError("upstream hiccup")
        if mode == "permanent":
            raise PermanentError("the payload is wrong")
        if mode == "block":
            self.running.add(job.id)
            try:
                await self.release.wait()
            finally:
                self.running.discard(job.id)
        self.done.append(job.id)


@dataclass
class Rig:
    """A started appliance (manual clock, queues work and other on the low tier), its handler's
    behaviour, and a test client on an admin app built from the appliance's own parts."""

    app: Appliance
    behaviour: Behaviour
    clock: ManualClock
    api: Api

    async def enqueue(self, mode: str = "ok", queue: str = WORK, **kw: Any) -> int:
        return (await self.app.client.enqueue(queue, {"mode": mode}, **kw)).id


@pytest.fixture
async def rig(appliance_factory: Callable[..., Awaitable[Appliance]], aiohttp_client: Any) -> AsyncIterator[Rig]:
    behaviour = Behaviour()
    clock = ManualClock()
    app = await appliance_factory(
        handlers={WORK: behaviour.handle, OTHER: behaviour.handle},
        clock=clock,
        queues={WORK: {"tier": "low"}, OTHER: {"tier": "low"}},
        pools={"low": 2},
        admin=admin_section(),
    )
    api: Api = await aiohttp_client(app_for(app.settings, app.client, app.monitor))
    yield Rig(app, behaviour, clock, api)
    behaviour.release.set()  # blocked jobs finish, so the appliance stops without waiting out its grace


@pytest.fixture(autouse=True)
def log_everything() -> Iterator[None]:
    """Every log call of fleetbox runs (at the default WARNING level an info() call builds no
    record, so a bad ``extra`` would only fail in production, where the level is INFO)."""
    logger = logging.getLogger("fleetbox")
    old = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.setLevel(old)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog, with the fleetbox loggers captured whatever their propagation (read ``.records``)."""
    logger = logging.getLogger("fleetbox")
    old = (logger.level, logger.propagate)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # caught here, not a second time at the root
    logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(old[0])
        logger.propagate = old[1]
