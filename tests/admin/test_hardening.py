"""Hardening of the admin API: the control socket's lock file, what headers say and to whom, and
the throttle on wrong keys."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fleetbox.admin import ApplianceInfo, build_app
from fleetbox.admin.auth import KeyThrottle, ThrottleRule
from fleetbox.admin.errors import TooManyWrongKeys
from fleetbox.client import Client
from fleetbox.config import Settings
from fleetbox.errors import ConfigError
from tests.admin.conftest import ADMIN, READ, Api, Behaviour, admin_section
from tests.admin.conftest import test_monitor as monitor_for
from tests.admin.test_socket import BASE, StartAppliance, short_dir, start_with_socket, unix_session  # noqa: F401
from tests.conftest import wait_for

WRONG = {"x-admin-key": "wrong-key-for-tests-00000000"}


async def throttled_api(aiohttp_client: Any, client: Client, settings: Settings, rule: ThrottleRule) -> Api:
    app = build_app(
        service=client.service,
        monitor=monitor_for(client),
        settings=settings,
        appliance_info=ApplianceInfo("test", "test:1:abc", "0.1.0"),
        key_throttle=KeyThrottle(rule),
    )
    api: Api = await aiohttp_client(app)
    return api


async def test_a_symlinked_lock_file_is_refused_and_not_followed(
    appliance_factory: StartAppliance,
    short_dir: Path,  # noqa: F811
) -> None:
    path = short_dir / "admin.sock"
    target = short_dir / "elsewhere"
    os.symlink(target, f"{path}.lock")
    with pytest.raises(ConfigError, match="symlink") as refused:
        await start_with_socket(appliance_factory, path, Behaviour())
    assert str(path) in str(refused.value)
    assert not target.exists() and not path.exists()


async def test_a_lock_file_that_is_not_a_regular_file_of_this_user_is_refused(
    appliance_factory: StartAppliance,
    short_dir: Path,  # noqa: F811
) -> None:
    path = short_dir / "admin.sock"
    os.mkfifo(f"{path}.lock", 0o600)
    with pytest.raises(ConfigError, match="not a regular file owned by this user"):
        await start_with_socket(appliance_factory, path, Behaviour())
    assert not path.exists()


async def test_no_server_header_and_the_appliance_header_only_for_keyed_or_socket_callers(
    appliance_factory: StartAppliance,
    short_dir: Path,  # noqa: F811
) -> None:
    path = short_dir / "admin.sock"
    app = await start_with_socket(appliance_factory, path, Behaviour())
    assert app.admin is not None
    base = app.admin.url
    async with aiohttp.ClientSession() as http:
        for url, headers, status, tagged in (
            ("/api/queue/health", {}, 200, False),
            ("/livez", {}, 200, False),
            ("/api/queue/health", WRONG, 200, False),
            ("/api/queue/stats", {}, 401, False),
            ("/api/queue/stats", WRONG, 403, False),
            ("/no/such/path", READ, 404, False),
            ("/api/queue/dead-letter/retry", READ, 405, False),
            ("/api/queue/health", READ, 200, True),
            ("/api/queue/stats", ADMIN, 200, True),
        ):
            async with http.get(base + url, headers=headers) as response:
                assert response.status == status, (url, headers)
                assert "Server" not in response.headers, (url, headers)
                assert ("x-fleetbox-appliance" in response.headers) is tagged, (url, headers)
    async with unix_session(path) as local, local.get(f"{BASE}/api/queue/stats") as response:
        assert response.status == 200 and "Server" not in response.headers
        assert response.headers["x-fleetbox-appliance"] == app.worker_id


async def test_wrong_keys_are_throttled_per_address_and_keyless_requests_are_not(
    aiohttp_client: Any, client: Client, make_settings: Callable[..., Settings]
) -> None:
    api = await throttled_api(aiohttp_client, client, make_settings(admin=admin_section()), ThrottleRule(3, 3600))
    for _ in range(3):
        assert (await api.get("/api/queue/stats", headers=WRONG)).status == 403
    refused = await api.get("/api/queue/stats", headers=WRONG)
    assert refused.status == 429 and refused.headers["Retry-After"] == "3600"
    assert (await refused.json())["error"]["code"] == "too_many_wrong_keys"
    # while throttled no key is compared: the right one cannot be told from a wrong one
    assert (await api.get("/api/queue/stats", headers=ADMIN)).status == 429
    assert (await api.get("/api/queue/health", headers=READ)).status == 429
    # requests without a key are not affected
    assert (await api.get("/api/queue/stats")).status == 401
    assert (await api.get("/api/queue/health")).status == 200


async def test_a_throttled_address_gets_in_again_once_its_bucket_drains(
    aiohttp_client: Any, client: Client, make_settings: Callable[..., Settings]
) -> None:
    api = await throttled_api(aiohttp_client, client, make_settings(admin=admin_section()), ThrottleRule(1, 0.2))
    assert (await api.get("/api/queue/stats", headers=WRONG)).status == 403
    assert (await api.get("/api/queue/stats", headers=WRONG)).status == 429

    async def admitted() -> bool:
        return (await api.get("/api/queue/stats", headers=READ)).status == 200

    await wait_for(admitted, timeout=5)


async def test_the_throttle_counts_each_address_on_its_own() -> None:
    throttle = KeyThrottle(ThrottleRule(2, 3600))
    for _ in range(2):
        throttle.admit("10.0.0.1")
        await throttle.wrong("10.0.0.1")
    with pytest.raises(TooManyWrongKeys):
        throttle.admit("10.0.0.1")
    throttle.admit("10.0.0.2")  # another address is not held back
    small = KeyThrottle(ThrottleRule(1, 3600), max_addresses=2)
    for address in ("a", "b", "c"):
        await small.wrong(address)
    small.admit("a")  # forgotten: at most two addresses are remembered
    with pytest.raises(TooManyWrongKeys):
        small.admit("c")


#: requests aiohttp's parser refuses before the application sees them
MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nI am not a header\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",  # TLS to a plain port
    b"GET /api/queue/health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
]


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Send bytes to the admin port; everything it answers until it closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read(-1)
    finally:
        writer.close()


async def test_a_malformed_request_is_answered_400_by_the_parser_without_the_appliance_identity(
    appliance_factory: StartAppliance,
) -> None:
    app = await appliance_factory(admin=admin_section())
    assert app.admin is not None and app.admin.port is not None
    for data in MALFORMED:
        answer = await raw_exchange(app.admin.port, data)
        head, _, body = answer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
        assert status_line.split(" ")[1] == "400", (data, answer[:300])
        assert "x-fleetbox-appliance" not in headers and app.worker_id.encode() not in answer
        assert b"Traceback" not in body
        # Known limit (README, security notes): aiohttp answers these itself, before any hook of the
        # application runs, and names itself in a Server header there; no supported setting drops it.
        assert headers.get("server", "").startswith("Python/"), headers
    # A well-formed request reaches the application, which drops the header.
    answer = await raw_exchange(app.admin.port, b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and b"\r\nserver:" not in answer.lower()
