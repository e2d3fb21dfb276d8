"""Graph delivery with real appliance processes: a large upload resumed after kill -9, and
simulator mode (``fleetbox run`` with no Graph credentials) end to end."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from fleetbox.client import Client
from fleetbox.graph.attachments import CHUNK_BYTES
from fleetbox.graph.simulator import GraphSimulator
from fleetbox.models import JobState
from tests.conftest import wait_for
from tests.e2e.conftest import E2E_APPLIANCE, REPO, FleetboxProcess, child_env, toml_text

TEAM = "5f3ad8e1-3c1b-4f0e-9a57-2a1c0e6b7d21"
CHANNEL = "19:c0ffee@thread.tacv2"


@pytest.fixture
async def sim() -> AsyncIterator[GraphSimulator]:
    async with GraphSimulator() as simulator:
        yield simulator


def graph_config(path: Path, sim: GraphSimulator | None) -> Path:
    sections: dict[str, dict[str, Any]] = {
        "appliance": {**E2E_APPLIANCE, "data_dir": str(path.parent / "data")},
        "admin": {"port": 0, "socket_enabled": False},
    }
    if sim is not None:
        sections["graph"] = {
            "simulate": False,
            "tenant_id": sim.tenant,
            "client_id": sim.client_id,
            "client_secret": sim.client_secret,
            "authority_host": sim.authority_host,
            "base_url": sim.base_url,
            "ca_bundle": str(sim.ca_pem_path),
            "files_dir": str(path.parent / "files"),
        }
    path.write_text(toml_text(sections), encoding="utf-8")
    return path


def accepted_puts(sim: GraphSimulator) -> list[Any]:
    """The fragments Graph stored, also one whose client was killed while waiting for the answer."""
    return [r for r in sim.requests if r.method == "PUT" and r.path.startswith("/_upload/") and r.status in (201, 202)]


def first_byte(content_range: str) -> int:
    return int(content_range.split()[1].split("-")[0])


async def test_a_large_upload_resumes_where_graph_says_after_the_appliance_is_killed(
    start_appliance: Callable[..., FleetboxProcess], client: Client, sim: GraphSimulator, tmp_path: Path
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    data = os.urandom(4 * CHUNK_BYTES + 12345)
    (files / "video").write_bytes(data)
    config = graph_config(tmp_path / "fleetbox.e2e.toml", sim)
    # Every chunk takes a second and a half at Graph: time to kill A while one is in flight.
    sim.slow(r"PUT /_upload/", 1.5, times=1000)

    a = start_appliance("a", config)
    await a.wait_ready()
    job = await client.enqueue_attachment_upload(
        {
            "fileId": "video",
            "fileName": "video.mp4",
            "fileSize": len(data),
            "contentType": "video/mp4",
            "operation": "upload",
            "source": "teams",
            "teamId": TEAM,
            "channelId": CHANNEL,
        }
    )
    await wait_for(lambda: len(accepted_puts(sim)) == 1, timeout=30)
    a.signal(signal.SIGKILL)
    assert await a.wait_exit(timeout=10) == -signal.SIGKILL
    sim.clear_faults()

    b = start_appliance("b", config)
    await b.wait_ready()

    async def done() -> bool:
        return (await client.get_job(job.id)).state is JobState.SUCCEEDED

    await wait_for(done, timeout=40)
    [item] = [f for f in sim.drive_items.values() if f.name == "video.mp4"]
    assert item.data == data
    # Graph keeps a fragment that arrived whole even if its client died waiting for the answer (A's
    # chunk in flight at the kill, when it got there before the kill), and B learns where to go on only
    # from the session's nextExpectedRanges: so every chunk is stored exactly once, in order, whether
    # A's last chunk or B's copy of it was the one stored.
    ranges = sorted((r.headers["content-range"] for r in accepted_puts(sim)), key=first_byte)
    assert len(ranges) == len(set(ranges)) == 5
    assert [first_byte(r) for r in ranges] == [i * CHUNK_BYTES for i in range(5)]
    assert [r.delivered for r in accepted_puts(sim)].count(False) <= 1  # at most A's chunk in flight
    assert len([r for r in sim.requests if r.route.endswith(":/createUploadSession")]) == 1
    assert [r.method for r in sim.requests if r.path.startswith("/_upload/") and r.method == "GET"] == ["GET"]


async def test_with_nothing_configured_the_graph_queues_run_on_the_simulator(
    start_appliance: Callable[..., FleetboxProcess], client: Client, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    process = start_appliance("sim", graph_config(tmp_path / "fleetbox.e2e.toml", None))
    ready = await process.wait_ready()
    simulated = process.find_event("graph_simulated")
    assert simulated is not None and "nothing leaves this machine" in simulated["message"]
    port = (await process.wait_event("admin_listening"))["port"]
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/api/queue/health") as resp:
        health = await resp.json()
    assert health["graph"]["mode"] == "simulated"
    assert "nothing leaves this machine" in health["graph"]["note"]

    # The README's Teams example, as written there, works in simulator mode.
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    example = re.search(r'enqueue_teams_message\(\{"chatId": "([^"]+)"', readme)
    assert example is not None
    chat = await client.enqueue_teams_message({"chatId": example.group(1), "content": "Truck 7 is late"})
    mail = await client.enqueue_outlook_email({"to": ["ops@contoso.example"], "subject": "Late", "body": "Truck 7"})
    for job in (chat, mail):

        async def succeeded(job_id: int = job.id) -> bool:
            return (await client.get_job(job_id)).state is JobState.SUCCEEDED

        await wait_for(succeeded, timeout=30)
    assert ready["worker_id"]
    assert await pg.fetchval("SELECT count(*) FROM graph_effects") == 2


async def test_config_show_has_the_graph_scope_from_the_environment(cli: Any, log_dir: Path) -> None:
    env = child_env(log_dir, FLEETBOX_GRAPH__SCOPE="api://contoso-graph-gateway/.default")
    result = cli("config", "show", env=env, with_dsn=False)
    assert result.returncode == 0, result.stderr
    [row] = [line for line in result.stdout.splitlines() if line.startswith("graph.scope")]
    assert "api://contoso-graph-gateway/.default" in row and "[environment]" in row
