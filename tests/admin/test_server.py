"""The admin API served by a real appliance on its own port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from fleetbox.admin import AdminServer
from fleetbox.app import Appliance
from fleetbox.client import Client
from fleetbox.config import Settings
from fleetbox.errors import ConfigError
from fleetbox.models import Job
from fleetbox.store import Store
from tests.admin.conftest import ADMIN, ADMIN_KEY, READ, READ_KEY, admin_section, app_for
from tests.conftest import wait_for


async def test_a_running_appliance_serves_the_api_on_its_admin_port(
    appliance_factory: Callable[..., Awaitable[Appliance]],
) -> None:
    ran: list[int] = []

    async def handle(job: Job) -> None:
        ran.append(job.id)

    app = await appliance_factory(
        handlers={"reports": handle}, queues={"reports": {"tier": "low"}}, admin=admin_section()
    )
    assert app.admin is not None and app.admin.port > 0
    base = app.admin.url
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/queue/health", headers=READ) as response:
            assert response.status == 200
            assert response.headers["x-fleetbox-appliance"] == app.worker_id
            assert (await response.json())["queues"]["reports"]["isRunning"] is True
        async with http.post(
            f"{base}/api/queue/reports/jobs", json={"data": {"fleetId": 7}}, headers=ADMIN
        ) as response:
            assert response.status == 201
            job_id = (await response.json())["id"]

        async def succeeded() -> bool:
            async with http.get(f"{base}/api/queue/jobs/{job_id}", headers=READ) as r:
                return bool((await r.json())["state"] == "succeeded")

        await wait_for(succeeded)
        assert ran == [job_id]
        async with http.get(f"{base}/api/queue/jobs/{job_id}", headers=READ) as response:
            history = (await response.json())["history"]
            assert [(a["attempt"], a["outcome"], a["workerId"]) for a in history] == [(1, "succeeded", app.worker_id)]
        async with http.post(f"{base}/api/queue/reports/pause", headers=ADMIN) as response:
            assert response.status == 200
        assert [q.name for q in await app.client.queues() if q.paused] == ["reports"]
        async with http.get(f"{base}/api/queue/openapi.json") as response:
            assert "/api/queue/{queue}/jobs" in (await response.json())["paths"]
    await app.stop()
    assert app.admin is None
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", int(base.rsplit(":", 1)[1]))


async def test_a_taken_port_stops_the_start_naming_the_setting(make_settings: Callable[..., Settings]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = Appliance(make_settings(admin=admin_section(port=port)))
        with pytest.raises(ConfigError, match=rf"admin\.port: cannot listen on 127\.0\.0\.1:{port}"):
            await app.start()
    assert app.admin is None and not any(app.supervisor.running(n) for n in app.supervisor.tasks)  # all stopped again


async def test_admin_enabled_false_serves_nothing(appliance_factory: Callable[..., Awaitable[Appliance]]) -> None:
    app = await appliance_factory(admin={"enabled": False})
    assert app.admin is None


async def test_a_malformed_request_is_refused_without_logging_its_headers(
    db: Store, make_settings: Callable[..., Settings], logs: pytest.LogCaptureFixture
) -> None:
    server = AdminServer(app_for(make_settings(admin=admin_section()), Client(db)), host="127.0.0.1", port=0)
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        request = f"GET /api/queue/stats HTTP/1.1\r\nHost: x\r\nx-admin-key: {ADMIN_KEY}\r\nbad\x01: {READ_KEY}\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        answer = await reader.read()
        writer.close()
        # aiohttp answers a request it cannot parse itself (plain text, to that sender only)
        assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    texts = [logs.text, *(repr(vars(r)) for r in logs.records)]
    assert not any(ADMIN_KEY in t or READ_KEY in t for t in texts)
    assert any(getattr(r, "event", None) == "admin_bad_request" for r in logs.records)


async def test_the_server_reports_its_bound_port(db: Store, make_settings: Callable[..., Settings]) -> None:
    server = AdminServer(app_for(make_settings(admin=admin_section()), Client(db)), host="127.0.0.1", port=0)
    assert server.port == 0
    await server.start()
    try:
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/api/queue/health") as response:
            assert response.status == 200
    finally:
        await server.stop()
    await server.stop()  # twice is harmless
