"""Health, stats, metrics, alerts and thresholds through the admin API (backed by the monitor)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fleetbox.app import Readiness
from fleetbox.client import Client
from fleetbox.config import Settings
from fleetbox.store import Store
from tests.admin.conftest import ADMIN, READ, Api, ApiFactory, Rig, admin_section, app_for
from tests.conftest import SCHEMA

SPEC_QUEUE_KEYS = {"isRunning", "backlog", "failureRate", "avgProcessingTime"}


async def test_health_is_public_and_in_the_spec_shape(api: Api) -> None:
    response = await api.get("/api/queue/health")
    assert response.status == 200
    body = await response.json()
    assert {"healthy", "queues", "deadLetterCount", "lastChecked"} <= set(body)
    assert body["healthy"] is True and body["reasons"] == [] and body["deadLetterCount"] == 0
    assert set(body["queues"]["teams-outbound"]) >= SPEC_QUEUE_KEYS
    assert "dead-letter" not in body["queues"]


async def test_a_crossed_threshold_is_200_with_healthy_false_and_the_reasons(api: Api, client: Client) -> None:
    await client.enqueue("sync", {})
    response = await api.put("/api/queue/thresholds", json={"maxBacklog": 0}, headers=ADMIN)
    assert response.status == 200
    unhealthy = await api.get("/api/queue/health")
    # an orchestrator probing health must not restart a working appliance
    assert unhealthy.status == 200
    body = await unhealthy.json()
    assert body["healthy"] is False and body["queues"]["sync"]["backlog"] == 1
    assert any("maxBacklog" in reason for reason in body["reasons"])
    assert body["ready"] is True and "databaseError" not in body
    assert (await api.get("/readyz")).status == 200


async def test_health_needs_a_key_when_not_public(api_factory: ApiFactory) -> None:
    api = await api_factory(health_public=False)
    assert (await api.get("/api/queue/health")).status == 401
    assert (await api.get("/api/queue/health", headers={"x-admin-key": "nope"})).status == 403
    assert (await api.get("/api/queue/health", headers=READ)).status == 200
    assert (await api.get("/api/queue/health", headers=ADMIN)).status == 200
    document = await (await api.get("/api/queue/openapi.json")).json()
    assert document["paths"]["/api/queue/health"]["get"]["security"] == [{"adminKey": []}]


async def test_an_unreachable_database_is_unhealthy_and_other_reads_are_503(
    aiohttp_client: Any, dsn: str, make_settings: Callable[..., Settings]
) -> None:
    db = await Store(dsn, schema=SCHEMA, min_size=1, max_size=2).open()
    api: Api = await aiohttp_client(app_for(make_settings(admin=admin_section()), Client(db)))
    await db.close()
    health = await api.get("/api/queue/health")
    assert health.status == 503
    body = await health.json()
    assert body["healthy"] is False and body["database"] == "unreachable" and body["reasons"]
    # the driver's message for keyed readers only
    assert body["databaseError"] == "database unreachable"
    keyed = await (await api.get("/api/queue/health", headers=READ)).json()
    assert keyed["databaseError"] and keyed["databaseError"] != "database unreachable"
    ready = await api.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["ready"] is False and "database unreachable" in (await ready.json())["reasons"]
    assert await (await api.get("/livez")).json() == {"alive": True}
    for path in ("/api/queue/stats", "/api/queue/sync/jobs", "/api/queue/dead-letter"):
        response = await api.get(path, headers=READ)
        assert response.status == 503, path
        error = (await response.json())["error"]
        assert error["code"] == "database_unavailable" and dsn not in error["message"]


async def test_stats(api: Api, client: Client) -> None:
    await client.enqueue("sync", {})
    await client.enqueue("sync", {}, delay=60_000)
    body = await (await api.get("/api/queue/stats", headers=READ)).json()
    assert body["queues"]["sync"]["backlog"] == 2 and body["queues"]["sync"]["scheduled"] == 1
    assert body["totals"]["backlog"] == 2 and "last24h" in body["totals"]


@pytest.mark.parametrize("time_range", ["1h", "24h", "7d", None])
async def test_metrics(api: Api, time_range: str | None) -> None:
    query = "" if time_range is None else f"?timeRange={time_range}"
    response = await api.get(f"/api/queue/metrics{query}", headers=READ)
    assert response.status == 200
    body = await response.json()
    assert body["timeRange"] == (time_range or "24h")
    assert "sync" in body["series"] and len(body["totals"]) == len(body["series"]["sync"])


@pytest.mark.parametrize("query", ["timeRange=2h", "timeRange=", "timeRange=1h&timeRange=7d"])
async def test_metrics_range_is_checked(api: Api, query: str) -> None:
    response = await api.get(f"/api/queue/metrics?{query}", headers=READ)
    assert response.status == 400
    assert (await response.json())["error"]["field"] == "timeRange"


async def test_alerts_are_listed_open_and_resolved(rig: Rig) -> None:
    await rig.app.client.set_paused("sync", True)
    await rig.app.client.enqueue("sync", {})
    assert (await rig.api.put("/api/queue/thresholds", json={"maxBacklog": 0}, headers=ADMIN)).status == 200
    await rig.app.monitor.check_alerts()
    body = await (await rig.api.get("/api/queue/alerts?status=open", headers=READ)).json()
    assert [(a["kind"], a["queue"], a["status"]) for a in body["alerts"]] == [("backlog", "sync", "open")]
    assert (await (await rig.api.get("/api/queue/alerts?status=resolved", headers=READ)).json())["alerts"] == []

    assert (await rig.api.put("/api/queue/thresholds", json={"maxBacklog": 1000}, headers=ADMIN)).status == 200
    await rig.app.monitor.check_alerts()
    resolved = await (await rig.api.get("/api/queue/alerts?status=resolved", headers=READ)).json()
    assert [(a["kind"], a["status"]) for a in resolved["alerts"]] == [("backlog", "resolved")]
    assert resolved["alerts"][0]["resolvedAt"] is not None
    assert len((await (await rig.api.get("/api/queue/alerts", headers=READ)).json())["alerts"]) == 1
    for query in ("status=closed", "limit=0", "limit=x"):
        assert (await rig.api.get(f"/api/queue/alerts?{query}", headers=READ)).status == 400


async def test_thresholds_are_read_and_changed_at_runtime(api: Api, db: Store) -> None:
    body = await (await api.get("/api/queue/thresholds", headers=READ)).json()
    assert body == {"maxBacklog": 1000, "maxFailureRate": 10.0, "maxProcessingTime": 60000.0, "maxDeadLetterJobs": 50}
    changed = await api.put(
        "/api/queue/thresholds",
        json={"maxBacklog": 2000, "maxFailureRate": 15},
        headers={**ADMIN, "x-admin-actor": "gina"},
    )
    assert changed.status == 200
    assert await changed.json() == {
        "maxBacklog": 2000,
        "maxFailureRate": 15.0,
        "maxProcessingTime": 60000.0,
        "maxDeadLetterJobs": 50,
    }
    assert (await (await api.get("/api/queue/thresholds", headers=READ)).json())["maxBacklog"] == 2000
    row = await db.pool.fetchrow("SELECT actor, action FROM fleetbox.audit_log ORDER BY id DESC LIMIT 1")
    assert (row["actor"], row["action"]) == ("gina", "monitor.thresholds")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "thresholds"),
        ({"max_backlog": 5}, "body"),
        ({"maxBacklog": -1}, "maxBacklog"),
        ({"maxBacklog": 1.5}, "maxBacklog"),
        ({"maxFailureRate": 101}, "maxFailureRate"),
        ({"maxProcessingTime": 0}, "maxProcessingTime"),
        ({"maxDeadLetterJobs": "50"}, "maxDeadLetterJobs"),
        ({"maxBacklog": True}, "maxBacklog"),
    ],
)
async def test_threshold_changes_are_checked_and_nothing_changes(
    api: Api, db: Store, body: dict[str, Any], field: str
) -> None:
    response = await api.put("/api/queue/thresholds", json=body, headers=ADMIN)
    assert response.status == 400
    assert (await response.json())["error"]["field"] == field
    assert await db.pool.fetchval("SELECT count(*) FROM fleetbox.monitor_thresholds") == 0
    assert await db.pool.fetchval("SELECT count(*) FROM fleetbox.audit_log") == 0


async def test_livez_and_readyz_answer_without_a_key(api: Api) -> None:
    live = await api.get("/livez")
    assert live.status == 200 and await live.json() == {"alive": True}
    ready = await api.get("/readyz")
    assert ready.status == 200
    assert await ready.json() == {"ready": True, "draining": False, "reasons": [], "failingTasks": {}}


def readiness_of(report: Readiness) -> Callable[[], Awaitable[Readiness]]:
    async def readiness() -> Readiness:
        return report

    return readiness


async def test_a_draining_appliance_is_healthy_to_orchestrators_but_not_ready(
    aiohttp_client: Any, client: Client, make_settings: Callable[..., Settings]
) -> None:
    draining = Readiness(False, ("draining: the appliance is stopping",), {}, True)
    app = app_for(make_settings(admin=admin_section()), client, readiness=readiness_of(draining))
    api: Api = await aiohttp_client(app)
    health = await api.get("/api/queue/health")
    assert health.status == 200
    body = await health.json()
    assert body["draining"] is True and body["ready"] is False and body["healthy"] is False
    ready = await api.get("/readyz")
    assert ready.status == 503 and (await ready.json())["draining"] is True


async def test_a_failing_critical_task_is_503_and_its_error_is_for_keyed_readers_only(
    aiohttp_client: Any, client: Client, make_settings: Callable[..., Settings]
) -> None:
    failing = Readiness(
        False, ("task fleetbox.dispatcher is failing",), {"fleetbox.dispatcher": "connection to 10.0.0.7 refused"}
    )
    app = app_for(make_settings(admin=admin_section()), client, readiness=readiness_of(failing))
    api: Api = await aiohttp_client(app)
    health = await api.get("/api/queue/health")
    assert health.status == 503
    assert "task fleetbox.dispatcher is failing" in (await health.json())["reasons"]
    public = await api.get("/readyz")
    assert public.status == 503
    assert (await public.json())["failingTasks"] == {"fleetbox.dispatcher": None}
    keyed = await (await api.get("/readyz", headers=READ)).json()
    assert keyed["failingTasks"] == {"fleetbox.dispatcher": "connection to 10.0.0.7 refused"}
    wrong = await (await api.get("/readyz", headers={"x-admin-key": "nope"})).json()
    assert wrong["failingTasks"] == {"fleetbox.dispatcher": None}
