"""Shared fixtures: a real PostgreSQL for every test that touches SQL.

The server is ``FLEETBOX_TEST_DSN`` when set, otherwise an embedded one (pgserver) in a temporary
directory. A template database gets the schema once per session; each test gets its own database
cloned from it (``CREATE DATABASE ... TEMPLATE``), which takes a few milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from fleetbox.app import Appliance
from fleetbox.client import Client
from fleetbox.config import Settings
from fleetbox.models import ManualClock, Thresholds
from fleetbox.monitor import Monitor
from fleetbox.monitor.schedule import PeriodicTask
from fleetbox.monitor.tasks import default_tasks
from fleetbox.service import Service
from fleetbox.store import Store
from fleetbox.store.migrations import migrate
from fleetbox.worker.registry import build_registry, register_queues

SCHEMA = "fleetbox"
# One template per test session, so concurrent sessions on one server do not trip over each other.
TEMPLATE = f"fleetbox_test_template_{os.getpid()}"

# Settings in tests are built in code; nothing from the developer's environment leaks in.
for _key in list(os.environ):
    if _key.startswith("FLEETBOX_") and _key != "FLEETBOX_TEST_DSN":
        os.environ.pop(_key)


@pytest.fixture(autouse=True)
def _fleetbox_logging_restored() -> Iterator[None]:
    """A test that runs the CLI in-process lets it set up fleetbox's logging for a process of its
    own (a handler on the test's captured stderr, no propagation); give it back afterwards, or
    every later test in that worker loses its log records (caplog sees nothing) and writes to a
    closed stream."""
    logger = logging.getLogger("fleetbox")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    yield
    logger.handlers[:], logger.propagate, logger.level = saved[0], saved[1], saved[2]


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """A DSN of the test server's maintenance database."""
    configured = os.environ.get("FLEETBOX_TEST_DSN")
    if configured:
        yield configured
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="fleetbox-test-pg-") as tmp:
        server = pgserver.get_server(Path(tmp), cleanup_mode="stop")
        yield server.get_uri("postgres")
        server.cleanup()


async def _admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_dsn(server_dsn: str) -> Iterator[str]:
    """The template database, migrated once per session, with the spec's queues registered."""

    async def build() -> None:
        await _admin(server_dsn, f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)", f"CREATE DATABASE {TEMPLATE}")
        async with Store(with_database(server_dsn, TEMPLATE), schema=SCHEMA, min_size=1, max_size=2) as db:
            await migrate(db)
            await register_queues(db, build_registry(Settings()))

    asyncio.run(build())
    yield with_database(server_dsn, TEMPLATE)
    asyncio.run(_admin(server_dsn, f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"))


@pytest.fixture
async def dsn(server_dsn: str, template_dsn: str) -> AsyncIterator[str]:
    """A fresh database for this test, cloned from the migrated template."""
    name = f"fleetbox_test_{uuid.uuid4().hex[:12]}"
    await _admin(server_dsn, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield with_database(server_dsn, name)
    await _admin(server_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def make_settings(dsn: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings for this test's database; keyword arguments are sections to override.

    Defaults are tuned for tests: short poll, lease and heartbeat intervals, short grace.
    """

    def make(**sections: Any) -> Settings:
        base: dict[str, Any] = {
            "database": {"dsn": dsn, "pool_min": 1, "pool_max": 6},
            "appliance": {
                "name": "test",
                "data_dir": str(tmp_path / "data"),
                "poll_seconds": 0.2,
                "lease_seconds": 5,
                "heartbeat_seconds": 1,
                "reap_seconds": 0.5,
                "shutdown_grace_seconds": 5,
                "completion_flush_ms": 1,
            },
            # The admin API on an ephemeral port: appliances of one test (and of parallel runs)
            # never compete for 8080. Read the bound port from app.admin.port. No control socket:
            # appliances of one test share a data_dir, and a socket is never shared (the socket
            # tests enable it with a short path of their own).
            "admin": {"port": 0, "socket_enabled": False},
            # The Graph processors (and their simulator) only where a test asks for them.
            "graph": {"enabled": False},
        }
        for section, values in sections.items():
            if isinstance(values, dict) and isinstance(base.get(section), dict):
                base[section] = {**base[section], **values}
            else:
                base[section] = values
        return Settings(**base)

    return make


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[Store]:
    """The test's database, open (a pool of up to four connections)."""
    async with Store(dsn, schema=SCHEMA, min_size=1, max_size=4) as store:
        yield store


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def client(db: Store) -> Client:
    return Client(db)


@pytest.fixture
async def appliance_factory(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[Callable[..., Awaitable[Appliance]]]:
    """Start appliances in this test (registering their queues); all are stopped at the end.

    ``await appliance_factory(handlers={...}, queues={...}, pools={...}, clock=...)``.
    """
    started: list[Appliance] = []

    async def start(
        *, handlers: dict[str, Any] | None = None, clock: Any = None, on_auth_error: Any = None, **sections: Any
    ) -> Appliance:
        app = Appliance(make_settings(**sections), handlers=handlers, clock=clock, on_auth_error=on_auth_error)
        await app.start()
        started.append(app)
        return app

    yield start
    for app in reversed(started):
        await app.stop()


async def wait_for(
    predicate: Callable[[], Awaitable[bool] | bool], *, timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Wait until ``predicate()`` is true, failing after ``timeout`` seconds (no fixed sleeps)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def monitor_for(store: Store, *, clock: Any, thresholds: Thresholds | None = None, **kwargs: Any) -> Monitor:
    """A monitor over ``store`` with these configured thresholds (the monitor reads runtime changes
    through the service's ThresholdSettings, as an appliance's does)."""
    service = Service(store, clock=clock, thresholds=thresholds or Thresholds())
    return Monitor(store, service.thresholds, clock=clock, **kwargs)


def tasks_for(settings: Settings, store: Store, monitor: Monitor, clock: Any) -> list[PeriodicTask]:
    """The spec's monitoring schedule over ``store``."""
    return default_tasks(settings, monitor, Service(store, clock=clock).retention, clock)
