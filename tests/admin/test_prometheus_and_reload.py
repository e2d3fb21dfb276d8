"""GET /metrics in the Prometheus text format, and POST /api/queue/config/reload."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleetbox.app import Appliance
from fleetbox.client import Client
from fleetbox.config import Settings, load_settings
from tests.admin.conftest import ADMIN_KEY, ApiFactory, admin_section
from tests.conftest import wait_for


async def test_metrics_are_public_like_health_and_in_the_prometheus_format(
    api_factory: ApiFactory, client: Client
) -> None:
    await client.enqueue("sync", {"n": 1}, delay=60_000)
    api = await api_factory()

    response = await api.get("/metrics")

    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    scheduled = [
        s for s in families["fleetbox_queue_jobs"].samples if s.labels == {"queue": "sync", "state": "scheduled"}
    ]
    assert [s.value for s in scheduled] == [1.0]


async def test_metrics_need_a_key_when_health_is_not_public(api_factory: ApiFactory) -> None:
    api = await api_factory(health_public=False)
    assert (await api.get("/metrics")).status == 401


async def test_reload_of_an_appliance_configured_in_code_is_refused(api_factory: ApiFactory) -> None:
    api = await api_factory()
    response = await api.post("/api/queue/config/reload", headers={"x-admin-key": ADMIN_KEY})
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "conflict"


async def test_reload_applies_a_new_file_and_refuses_a_broken_one(
    make_settings: Callable[..., Settings], aiohttp_client: Any
) -> None:
    current: dict[str, Any] = {"pools": {"low": 2}}

    def load() -> Settings:
        if current.get("broken"):
            return load_settings(environ={}, flags={"pools": {"low": "many"}}).settings  # raises ConfigError
        return make_settings(admin=admin_section(), **current)

    app = Appliance(load(), load_config=load)
    await app.start()
    try:
        assert app.admin is not None
        http = await aiohttp_client(app.admin.app)
        current["pools"] = {"low": 7}
        ok = await http.post("/api/queue/config/reload", headers={"x-admin-key": ADMIN_KEY})
        assert ok.status == 200
        assert await ok.json() == {"reloaded": True, "needsRestart": []}
        assert app.worker.pools[app.registry["sync"].tier].size == 7

        current["broken"] = True
        bad = await http.post("/api/queue/config/reload", headers={"x-admin-key": ADMIN_KEY})
        assert bad.status == 422
        assert "pools.low" in (await bad.json())["error"]["message"]
        assert app.worker.pools[app.registry["sync"].tier].size == 7
    finally:
        await app.stop()


async def test_rate_limit_waits_and_throttles_are_scraped_and_rate_limits_reload(
    make_settings: Callable[..., Settings], aiohttp_client: Any, client: Client
) -> None:
    """Graph simulated in process: the service account's posts wait for its 1/s limiter."""
    current: dict[str, Any] = {"teams_per_second": 50.0}

    def load() -> Settings:
        return make_settings(
            admin=admin_section(), graph={"enabled": True, "simulate": True}, rate_limits=dict(current)
        )

    app = Appliance(load(), load_config=load)
    await app.start()
    try:
        assert app.admin is not None
        http = await aiohttp_client(app.admin.app)
        jobs = [await client.enqueue_teams_message({"chatId": f"19:c{i}@thread.v2", "content": "x"}) for i in range(2)]

        async def done() -> bool:
            states = [(await client.get_job(j.id)).state.value for j in jobs]
            return states == ["succeeded", "succeeded"]

        await wait_for(done, timeout=15)
        families = {f.name: f for f in text_string_to_metric_families(await (await http.get("/metrics")).text())}
        waits = {
            s.labels["resource"]: s.value
            for s in families["fleetbox_rate_limit_waits"].samples
            if s.name.endswith("_total")
        }
        assert waits["teams-user"] >= 1  # the second post waited for the first's second

        current["teams_per_second"] = 5.0
        ok = await http.post("/api/queue/config/reload", headers={"x-admin-key": ADMIN_KEY})
        assert ok.status == 200 and (await ok.json())["needsRestart"] == []
        teams = next(s for s in app.graph.limiters.snapshot() if s.resource == "teams" and s.key is None)
        assert teams.rate_per_second == pytest.approx(5.0)
    finally:
        await app.stop()
