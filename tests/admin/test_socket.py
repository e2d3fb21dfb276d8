"""The control socket: the admin application on an owner-only unix socket, where no key is needed.

Every test uses a short socket path under /tmp (Linux keeps a unix socket's path in 108 bytes;
pytest's tmp_path can be longer).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from fleetbox.app import Appliance
from fleetbox.client import Client
from fleetbox.config import AdminSettings
from fleetbox.errors import ConfigError
from fleetbox.protocol import OPERATOR_HEADER
from tests.admin.conftest import ADMIN, WORK, Behaviour, admin_section

#: any host: over a unix socket it only fills the Host header
BASE = "http://fleetbox"

StartAppliance = Callable[..., Awaitable[Appliance]]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path, for socket files."""
    path = Path(tempfile.mkdtemp(prefix="fb-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def unix_session(path: Path) -> aiohttp.ClientSession:
    """An HTTP client that talks to the control socket at ``path``."""
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path)))


async def start_with_socket(factory: StartAppliance, path: Path, behaviour: Behaviour, **sections: Any) -> Appliance:
    """An appliance with queues work (low tier) and its control socket at ``path``."""
    return await factory(
        handlers={WORK: behaviour.handle},
        queues={WORK: {"tier": "low"}},
        pools={"low": 2},
        admin=admin_section(socket_enabled=True, socket_path=str(path)),
        **sections,
    )


@pytest.fixture
async def served(appliance_factory: StartAppliance, short_dir: Path) -> AsyncIterator[tuple[Appliance, Path]]:
    behaviour = Behaviour()
    path = short_dir / "admin.sock"
    app = await start_with_socket(appliance_factory, path, behaviour)
    yield app, path
    behaviour.release.set()


async def test_the_socket_is_owner_only_and_needs_no_key_while_tcp_does(served: tuple[Appliance, Path]) -> None:
    app, path = served
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert app.admin is not None
    async with unix_session(path) as local, local.get(f"{BASE}/api/queue/stats") as response:
        assert response.status == 200
        assert WORK in (await response.json())["queues"]
    async with aiohttp.ClientSession() as tcp:
        async with tcp.get(f"{app.admin.url}/api/queue/stats") as response:
            assert response.status == 401
        # A header saying "operator" proves nothing on TCP: only the transport decides.
        async with tcp.post(f"{app.admin.url}/api/queue/{WORK}/pause", headers={OPERATOR_HEADER: "mallory"}) as r:
            assert r.status == 401
    assert not [q for q in await app.client.queues() if q.paused]


async def test_the_operator_header_is_the_audit_actor_and_the_uid_is_the_default(
    served: tuple[Appliance, Path],
) -> None:
    app, path = served
    async with unix_session(path) as local:
        async with local.post(f"{BASE}/api/queue/{WORK}/pause", headers={OPERATOR_HEADER: "alice"}) as response:
            assert response.status == 200
            assert (await response.json())["pausedBy"] == "alice"
        async with local.post(f"{BASE}/api/queue/{WORK}/resume") as response:
            assert response.status == 200
        async with local.post(f"{BASE}/api/queue/{WORK}/pause") as response:
            assert (await response.json())["pausedBy"] == f"socket:{os.getuid()}"
        async with local.post(
            f"{BASE}/api/queue/{WORK}/resume", headers={OPERATOR_HEADER: "alice", "x-admin-actor": "bob"}
        ) as response:
            # both sent: the operator's login name (what the terminal UI sends) is the actor
            assert response.status == 200
        async with local.post(f"{BASE}/api/queue/{WORK}/pause", headers={OPERATOR_HEADER: "a\x85b"}) as response:
            assert response.status == 400 and (await response.json())["error"]["field"] == OPERATOR_HEADER
    rows = await app.store.pool.fetch(
        "SELECT actor, action FROM fleetbox.audit_log WHERE target = $1 ORDER BY id", WORK
    )
    assert [(r["actor"], r["action"]) for r in rows] == [
        ("alice", "queue.pause"),
        (f"socket:{os.getuid()}", "queue.resume"),
        (f"socket:{os.getuid()}", "queue.pause"),
        ("alice", "queue.resume"),
    ]


async def test_the_socket_is_removed_on_stop_and_its_new_directory_is_owner_only(
    appliance_factory: StartAppliance, short_dir: Path
) -> None:
    path = short_dir / "run" / "admin.sock"
    behaviour = Behaviour()
    app = await start_with_socket(appliance_factory, path, behaviour)
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    await app.stop()
    assert not path.exists()


async def test_a_second_appliance_on_the_same_socket_is_refused_and_the_first_keeps_it(
    appliance_factory: StartAppliance, served: tuple[Appliance, Path]
) -> None:
    _app, path = served
    with pytest.raises(ConfigError, match=str(path)) as refused:
        await start_with_socket(appliance_factory, path, Behaviour())
    assert "another fleetbox process" in str(refused.value)
    async with unix_session(path) as local, local.get(f"{BASE}/api/queue/health") as response:
        assert response.status == 200


async def test_a_stale_socket_is_replaced(appliance_factory: StartAppliance, short_dir: Path) -> None:
    path = short_dir / "admin.sock"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(path))  # bound, never listening, then the process "died"
    left.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    await start_with_socket(appliance_factory, path, Behaviour())
    async with unix_session(path) as local, local.get(f"{BASE}/api/queue/health") as response:
        assert response.status == 200
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def test_a_socket_someone_answers_on_is_not_taken(appliance_factory: StartAppliance, short_dir: Path) -> None:
    path = short_dir / "admin.sock"
    accepted: list[int] = []

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()
        await writer.wait_closed()

    other = await asyncio.start_unix_server(answer, path=str(path))
    try:
        with pytest.raises(ConfigError, match="another process answers") as refused:
            await start_with_socket(appliance_factory, path, Behaviour())
        assert str(path) in str(refused.value)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)  # still there, still theirs
        _reader, writer = await asyncio.open_unix_connection(str(path))
        writer.close()
        await writer.wait_closed()
        assert accepted  # it answered us, as it answered the appliance
    finally:
        other.close()
        await other.wait_closed()


async def test_a_file_in_the_way_is_refused(appliance_factory: StartAppliance, short_dir: Path) -> None:
    path = short_dir / "admin.sock"
    path.write_text("not a socket")
    with pytest.raises(ConfigError, match="not a socket"):
        await start_with_socket(appliance_factory, path, Behaviour())
    assert path.read_text() == "not a socket"


def test_a_socket_path_longer_than_linux_allows_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="107 bytes"):
        AdminSettings(socket_path=Path("/tmp/" + "x" * 110))
    assert AdminSettings(socket_enabled=False).control_socket(Path("/data")) is None
    assert AdminSettings().control_socket(Path("/data")) == Path("/data/admin.sock")


async def test_the_cli_and_the_socket_see_the_same_queues(served: tuple[Appliance, Path], dsn: str) -> None:
    """A change made with fleetbox.Client (what the CLI uses) shows over the socket."""
    _app, path = served
    async with Client.connect(dsn) as other:
        await other.set_paused(WORK, True, actor="cli")
    async with unix_session(path) as local, local.get(f"{BASE}/api/queue/health") as response:
        assert (await response.json())["queues"][WORK]["isRunning"] is False
    async with unix_session(path) as local, local.post(f"{BASE}/api/queue/{WORK}/resume", headers=ADMIN) as r:
        assert r.status == 200  # a key sent anyway is not in the way
