"""Fixtures for the Graph transport tests: a real HTTPS Graph/Entra simulator and the real client on top."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import requests

from fleetbox.app import Appliance
from fleetbox.config import GraphSettings, RateLimitSettings
from fleetbox.graph.client import GraphClient
from fleetbox.graph.ratelimit import Limiters, RateEvent
from fleetbox.graph.simulator import GraphSimulator
from fleetbox.graph.tokens import Tokens
from tests.graph.helpers import SENDER

AppFactory = Callable[..., Awaitable[Appliance]]


def graph_settings(sim: GraphSimulator, **overrides: Any) -> GraphSettings:
    """Settings pointing at the simulator, as an operator would write them for a real tenant."""
    values: dict[str, Any] = {
        "tenant_id": sim.tenant,
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "authority_host": sim.authority_host,
        "base_url": sim.base_url,
        "ca_bundle": sim.ca_pem_path,
        "simulate": False,
        "timeout_seconds": 10,
    }
    return GraphSettings(**{**values, **overrides})


@dataclass
class Rig:
    sim: GraphSimulator
    settings: GraphSettings
    tokens: Tokens
    limiters: Limiters
    client: GraphClient
    events: list[RateEvent] = field(default_factory=list)

    async def close(self) -> None:
        await self.client.close()
        self.tokens.close()


@pytest.fixture
async def sim() -> AsyncIterator[GraphSimulator]:
    async with GraphSimulator() as simulator:
        yield simulator
    assert simulator.internal_errors == []


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "graph-token-cache.json"


async def make_rig(
    sim: GraphSimulator, cache_path: Path, *, limits: RateLimitSettings | None = None, **overrides: Any
) -> Rig:
    settings = graph_settings(sim, **overrides)
    tokens = Tokens(settings, cache_path=cache_path)
    await tokens.start()
    events: list[RateEvent] = []
    limiters = Limiters(limits or RateLimitSettings(), record=events.append)
    # No ssl_context: the client builds its own from graph.ca_bundle, as the appliance does.
    client = GraphClient(settings, tokens, limiters)
    await client.start()
    return Rig(sim, settings, tokens, limiters, client, events)


@pytest.fixture
async def rig(sim: GraphSimulator, cache_path: Path) -> AsyncIterator[Rig]:
    made = await make_rig(sim, cache_path)
    yield made
    await made.close()


@pytest.fixture
async def http(sim: GraphSimulator) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session trusting the simulator's CA, as the Graph client would use."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=sim.client_ssl_context())) as session:
        yield session


@pytest.fixture
def sessions() -> Iterator[list[requests.Session]]:
    """requests sessions handed to msal, closed at the end."""
    made: list[requests.Session] = []
    yield made
    for session in made:
        session.close()


@pytest.fixture
async def sql(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """Plain SQL on the test database, to look at what the appliance wrote."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "fleetbox"})
    yield conn
    await conn.close()


@pytest.fixture
async def graph(sim: GraphSimulator, tmp_path: Path) -> dict[str, Any]:
    """The [graph] section pointing at the simulator, with the Teams service account signed in."""
    section: dict[str, Any] = {
        "enabled": True,
        "simulate": False,
        "tenant_id": sim.tenant,
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "authority_host": sim.authority_host,
        "base_url": sim.base_url,
        "ca_bundle": str(sim.ca_pem_path),
        "token_cache_path": str(tmp_path / "token-cache.json"),
        "sender": SENDER,
        "client_state": "s3cret-client-state",
        "files_dir": str(tmp_path / "files"),
    }
    tokens = Tokens(GraphSettings(**section), cache_path=tmp_path / "token-cache.json")
    await tokens.start()
    try:
        await tokens.device_login(lambda _message: None)
    finally:
        tokens.close()
    (tmp_path / "files").mkdir()
    return section


@pytest.fixture
async def start(appliance_factory: AppFactory, graph: dict[str, Any]) -> Callable[..., Awaitable[Appliance]]:
    """Start an appliance on the simulator (``clock=`` a ManualClock where a test drives retry time)."""

    async def run(**sections: Any) -> Appliance:
        merged = {**graph, **sections.pop("graph", {})}
        if "clock" in sections:
            # A ManualClock drives retry times while the limiters pace in real time: a job deferred
            # for a real-time wait would be due at a manual time the test does not move to. Such
            # tests wait in the slot (the deferral is tested on the real clock).
            sections["rate_limits"] = {"defer_after_seconds": 3600, **sections.get("rate_limits", {})}
        return await appliance_factory(graph=merged, **sections)

    return run
