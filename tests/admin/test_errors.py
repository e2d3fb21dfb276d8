"""Errors: every one answered with the JSON error body and the status of fleetbox.admin.errors."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from fleetbox.admin.errors import (
    BodyTooLarge,
    MalformedBody,
    MissingKey,
    NoKeyConfigured,
    ReadOnlyKey,
    UnsupportedMediaType,
    WrongKey,
    classify,
    error_middleware,
)
from fleetbox.errors import (
    ConfigError,
    Conflict,
    DatabaseError,
    FleetboxError,
    InvalidInput,
    NotFound,
    SchemaNotReady,
    UnknownQueue,
)
from fleetbox.store import Store
from tests.admin.conftest import ADMIN, READ, Api


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (MissingKey(), 401, "missing_key"),
        (WrongKey(), 403, "invalid_key"),
        (ReadOnlyKey(), 403, "read_only_key"),
        (NoKeyConfigured(), 403, "admin_key_not_configured"),
        (UnknownQueue("q"), 404, "unknown_queue"),
        (NotFound(), 404, "not_found"),
        (BodyTooLarge("x"), 413, "payload_too_large"),
        (UnsupportedMediaType("x"), 415, "unsupported_media_type"),
        (MalformedBody("x"), 400, "malformed_json"),
        (InvalidInput("x", field="f"), 400, "invalid_input"),
        (Conflict(), 409, "conflict"),
        (SchemaNotReady(), 503, "schema_not_ready"),
        (DatabaseError(), 503, "database_unavailable"),
        (ConfigError(), 422, "invalid_configuration"),  # only the reload endpoint reads configuration
        (FleetboxError(), 500, "internal_error"),
    ],
)
def test_each_error_class_has_one_status(error: FleetboxError, status: int, code: str) -> None:
    assert classify(error) == (status, code)


async def test_unknown_paths_and_methods_get_the_json_error_body(api: Api) -> None:
    for path in ("/", "/api/queue", "/api/queue/sync", "/api/queue/sync/jobs/extra", "/api/queue/jobs/1/x"):
        response = await api.get(path, headers=READ)
        assert response.status == 404, path
        assert (await response.json())["error"] == {"code": "not_found", "message": f"no such endpoint: GET {path}"}
    for method, path in (
        ("DELETE", "/api/queue/health"),
        ("PUT", "/api/queue/sync/jobs"),
        ("HEAD", "/api/queue/stats"),
    ):
        response = await api.request(method, path, headers=ADMIN)
        assert response.status == 405, (method, path)
        assert "Allow" in response.headers
        if method != "HEAD":
            assert (await response.json())["error"]["code"] == "method_not_allowed"


async def test_error_bodies_are_compact_json_like_every_answer(api: Api) -> None:
    """The README: answers are compact JSON. Found from outside: error bodies had spaces."""
    for response in (
        await api.get("/api/queue/stats"),  # no key
        await api.get("/api/queue/no-such-queue/jobs", headers=READ),
        await api.get("/api/queue/sync/jobs?status=gone", headers=READ),
    ):
        text = await response.text()
        assert (
            response.status >= 400 and text.startswith('{"error":{"code":"') and ", " not in text.split('"message"')[0]
        )
        assert '": ' not in text and '", "' not in text, text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/queue/a%00b/jobs", 400),
        ("/api/queue/%ED%A0%80/jobs", 400),
        ("/api/queue/%2F/jobs", 400),
        ("/api/queue/sync/jobs?status=%00", 400),
        ("/api/queue/dead-letter?errorClass=%00", 400),
        ("/api/queue/dead-letter?errorClass=%ED%A0%80", 400),  # no error class is spelt so
        ("/api/queue/dead-letter?queue=%00", 400),
        ("/api/queue/jobs/%00", 400),
    ],
)
async def test_text_that_postgresql_cannot_store_never_reaches_it(api: Api, path: str, status: int) -> None:
    response = await api.get(path, headers=READ)
    assert response.status == status, await response.text()


async def test_the_actor_header_is_checked(api: Api, db: Store) -> None:
    response = await api.post(
        "/api/queue/sync/pause", headers=[*ADMIN.items(), ("x-admin-actor", "a"), ("x-admin-actor", "b")]
    )
    assert response.status == 400
    assert (await response.json())["error"]["field"] == "x-admin-actor"
    assert await db.pool.fetchval("SELECT count(*) FROM fleetbox.queues WHERE paused") == 0


async def test_an_unexpected_exception_is_500_without_detail(
    aiohttp_client: Any, logs: pytest.LogCaptureFixture
) -> None:
    async def broken(_request: web.Request) -> web.Response:
        raise RuntimeError("secret detail")

    async def database_down(_request: web.Request) -> web.Response:
        raise DatabaseError("database error: UniqueViolationError: Key (data)=(secret detail)")

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/broken", broken)
    app.router.add_get("/db", database_down)
    client = await aiohttp_client(app)
    response = await client.get("/broken")
    assert response.status == 500
    body = await response.json()
    assert body["error"]["code"] == "internal_error" and "secret" not in body["error"]["message"]
    assert any(getattr(r, "event", None) == "admin_internal_error" for r in logs.records)
    response = await client.get("/db")
    assert response.status == 503
    assert "secret" not in await response.text()
