"""Keys: every endpoint of the route table against missing, wrong, read-only and unconfigured keys."""

from __future__ import annotations

from typing import Any

import pytest

from fleetbox.admin.auth import Access, KeyThrottle, ThrottleRule
from fleetbox.admin.routes import Route
from fleetbox.admin.server import api_routes
from fleetbox.config import AdminSettings
from fleetbox.store import Store
from tests.admin.conftest import ADMIN, ADMIN_KEY, READ, READ_KEY, Api, ApiFactory

ROUTES = api_routes(AdminSettings())
WRONG = {"x-admin-key": "wrong-key-for-tests-00000000"}
BODIES: dict[str, Any] = {
    "updateThresholds": {"maxBacklog": 5},
    "retryDeadLetters": {"expectedCount": 0},
    "reviewDeadLetters": {"expectedCount": 0, "reviewedBy": "x"},
    "discardDeadLetters": {"expectedCount": 0},
    "enqueueJob": {"data": {}},
    "reviewDeadLetter": {"reviewedBy": "x"},
    "putSchedule": {"name": "nightly", "cron": "@daily", "queue": "sync"},
}


def url(route: Route) -> str:
    path = route.path.replace("{queue}", "sync").replace("{jobId}", "1")
    path = path.replace("{name}", "nightly").replace("{label}", "fast")
    return path + ("?confirm=yes" if route.operation_id == "clearQueue" else "")


async def call(api: Api, route: Route, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    body = BODIES.get(route.operation_id)
    kwargs: dict[str, Any] = {"headers": headers or {}}
    if body is not None:
        kwargs["json"] = body
    response = await api.request(route.method, url(route), **kwargs)
    if response.content_type != "application/json":  # /metrics answers in the Prometheus text format
        return response.status, {"text": await response.text()}
    payload = await response.json()
    return response.status, payload


async def nothing_changed(db: Store) -> None:
    counts = await db.pool.fetchrow(
        """SELECT (SELECT count(*) FROM fleetbox.audit_log) AS audit, (SELECT count(*) FROM fleetbox.jobs) AS jobs,
                  (SELECT count(*) FROM fleetbox.queues WHERE paused) AS paused,
                  (SELECT count(*) FROM fleetbox.monitor_thresholds) AS thresholds"""
    )
    assert dict(counts) == {"audit": 0, "jobs": 0, "paused": 0, "thresholds": 0}


def by_access(*levels: Access) -> list[Route]:
    return [r for r in ROUTES if r.access in levels]


async def test_a_missing_key_is_401_and_a_wrong_key_403_on_every_endpoint(api_factory: ApiFactory, db: Store) -> None:
    # one wrong key per endpoint: more than the default throttle lets through at once
    api = await api_factory(key_throttle=KeyThrottle(ThrottleRule(burst=1000)))
    for route in by_access(Access.READ, Access.ADMIN):
        for headers, expected in (
            ({}, (401, "missing_key")),
            ({"x-admin-key": ""}, (401, "missing_key")),
            (WRONG, (403, "invalid_key")),
        ):
            status, body = await call(api, route, headers)
            assert (status, body["error"]["code"]) == expected, (route.method, route.path, headers)
    await nothing_changed(db)


async def test_the_read_key_cannot_change_state(api: Api, db: Store) -> None:
    for route in by_access(Access.ADMIN):
        status, body = await call(api, route, READ)
        assert (status, body["error"]["code"]) == (403, "read_only_key"), (route.method, route.path)
    await nothing_changed(db)


#: What a read answers with a good key on an empty database (200 unless named here).
READ_ANSWERS = {
    "streamQueues": 426,
    "getJob": 404,
    "getJobDependencies": 404,
    "getDeadLetter": 404,
    "getSchedule": 404,
}


async def test_reads_take_either_key(api: Api) -> None:
    for route in by_access(Access.READ):
        for headers in (READ, ADMIN):
            status, body = await call(api, route, headers)
            assert status == READ_ANSWERS.get(route.operation_id, 200), (route.path, headers, body)


async def test_without_any_key_configured_everything_but_public_reads_is_refused(
    api_factory: ApiFactory, db: Store
) -> None:
    api = await api_factory(key=None, read_key=None)
    for route in by_access(Access.READ, Access.ADMIN):
        for headers in ({}, ADMIN, WRONG):
            status, body = await call(api, route, headers)
            assert (status, body["error"]["code"]) == (403, "admin_key_not_configured"), (route.path, headers)
            assert "no admin key is configured" in body["error"]["message"]
    for route in by_access(Access.PUBLIC):
        assert (await call(api, route))[0] == 200
    await nothing_changed(db)


async def test_a_read_key_alone_opens_reads_but_no_admin_operation(api_factory: ApiFactory, db: Store) -> None:
    api = await api_factory(key=None)
    for route in by_access(Access.ADMIN):
        status, body = await call(api, route, READ)
        assert (status, body["error"]["code"]) == (403, "admin_key_not_configured"), route.path
    for route in by_access(Access.READ):
        assert (await call(api, route, READ))[0] == READ_ANSWERS.get(route.operation_id, 200), route.path
    await nothing_changed(db)


async def test_public_endpoints_need_no_key(api: Api) -> None:
    assert {(r.method, r.path) for r in by_access(Access.PUBLIC)} == {
        ("GET", "/api/queue/health"),
        ("GET", "/api/queue/openapi.json"),
        ("GET", "/metrics"),
        ("GET", "/livez"),
        ("GET", "/readyz"),
    }
    for route in by_access(Access.PUBLIC):
        assert (await call(api, route))[0] == 200


async def test_keys_are_never_logged_or_echoed(api: Api, logs: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    for route in ROUTES:
        for headers in (ADMIN, READ, WRONG, {"x-admin-key": ADMIN_KEY + "x"}):
            response = await api.request(route.method, url(route), headers=headers, json=BODIES.get(route.operation_id))
            seen.append(await response.text())
            seen.append(str(response.headers))
    logged = [logs.text] + [repr(vars(r)) for r in logs.records] + [r.getMessage() for r in logs.records]
    for secret in (ADMIN_KEY, READ_KEY, WRONG["x-admin-key"]):
        assert not any(secret in text for text in logged + seen), secret
