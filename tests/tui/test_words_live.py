"""One word per job state on every face (issue 12 item 11): a due job that no worker has taken is
``waiting`` in the CLI, the HTTP API's JSON, /metrics, the live stream and the TUI, all read from
one real appliance (real PostgreSQL, its real control socket, the real ``fleetbox`` command), and
the filters still take the spec's ``pending`` and the old word ``ready``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from fleetbox.app import Appliance
from fleetbox.models import JobState
from fleetbox.protocol import STREAM_PATH
from fleetbox.tui.screens.queues import QueuesScreen
from tests.admin.conftest import WORK, Behaviour
from tests.admin.test_socket import BASE, short_dir, start_with_socket, unix_session  # noqa: F401
from tests.e2e.conftest import child_env, fleetbox_script
from tests.tui.test_live import SIZE, live, live_app, shown

StartAppliance = Callable[..., Awaitable[Appliance]]
WORD = JobState.WAITING.value


async def fleetbox(dsn: str, socket: Path, cwd: Path, *args: str) -> str:
    """Run the ``fleetbox`` command (without blocking the appliance's loop); its standard output."""
    process = await asyncio.create_subprocess_exec(
        fleetbox_script(),
        *args,
        "--dsn",
        dsn,
        cwd=cwd,
        env=child_env(FLEETBOX_ADMIN__SOCKET_PATH=str(socket)),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, (args, err.decode())
    return out.decode()


async def test_a_waiting_job_has_one_word_on_every_face(
    appliance_factory: StartAppliance,
    short_dir: Path,  # noqa: F811
    dsn: str,
    tmp_path: Path,
) -> None:
    path = short_dir / "admin.sock"
    # counted afresh for every request: the schedule's first count may come before the enqueue
    appliance = await start_with_socket(appliance_factory, path, Behaviour(), monitor={"depth_cache_seconds": 0})
    await appliance.client.set_paused(WORK, True)  # nothing claims it: the job stays waiting
    job = (await appliance.client.enqueue(WORK, {"mode": "ok"})).id
    later = (await appliance.client.enqueue(WORK, {"mode": "ok"}, delay=3_600_000)).id

    async with unix_session(path) as http:

        async def get(route: str) -> Any:
            async with http.get(BASE + route) as response:
                assert response.status == 200, (route, await response.text())
                return await (response.json() if response.content_type == "application/json" else response.text())

        # the HTTP API: queue figures, health, a job, its lists (and their aliases)
        health = await get("/api/queue/health")
        stats = await get("/api/queue/stats")
        for figures in (health["queues"][WORK], stats["queues"][WORK]):
            assert (figures[WORD], figures["scheduled"], figures["backlog"]) == (1, 1, 2)
            assert "ready" not in figures
        assert stats["totals"][WORD] == 1 and "ready" not in stats["totals"]
        assert (await get(f"/api/queue/jobs/{job}"))["state"] == WORD
        for status in (WORD, "ready"):
            listed = (await get(f"/api/queue/{WORK}/jobs?status={status}"))["jobs"]
            assert [(j["id"], j["state"]) for j in listed] == [(job, WORD)], status
        pending = (await get(f"/api/queue/{WORK}/jobs?status=pending"))["jobs"]
        assert [(j["id"], j["state"]) for j in pending] == [(job, WORD), (later, JobState.SCHEDULED.value)]

        # /metrics: the label is the same word, and no series says "ready"
        families = {f.name: f for f in text_string_to_metric_families(await get("/metrics"))}
        states = {
            s.labels["state"]: s.value for s in families["fleetbox_queue_jobs"].samples if s.labels["queue"] == WORK
        }
        assert states == {WORD: 1, "scheduled": 1, "retrying": 0, "running": 0}

        # the live stream's queue row
        async with http.ws_connect(BASE + STREAM_PATH) as ws, asyncio.timeout(20):
            row: dict[str, Any] = {}
            while row.get(WORD) != 1:  # the hello's snapshot may be a sample from before the enqueue
                frame = await ws.receive_json()
                tick = frame.get("snapshot") if frame["type"] == "hello" else frame
                if frame["type"] in ("hello", "tick"):
                    [row] = [q for q in tick["queues"] if q["name"] == WORK]
        assert (row[WORD], row["scheduled"]) == (1, 1) and "ready" not in row

    # the TUI over the control socket: the column is named by the word and shows the job
    app = live_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        assert shown(app, WORD) == "1"
        screen = app.screen_stack[0]
        assert isinstance(screen, QueuesScreen)
        table = screen.table
        labels = [str(c.label) for c in table.columns.values()]
        assert WORD.upper() in labels and "READY" not in labels

    # the CLI: `fleetbox jobs` (and its filters), `fleetbox job`, `fleetbox queues`, `fleetbox status`
    async def run(*args: str) -> str:
        return await fleetbox(dsn, path, tmp_path, *args)

    rows = [json.loads(line) for line in (await run("jobs", WORK, "--json")).splitlines()]
    assert [(r["id"], r["state"]) for r in rows] == [(job, WORD), (later, "scheduled")]
    for word in (WORD, "ready", "READY"):
        assert [
            json.loads(line)["id"] for line in (await run("jobs", WORK, "--state", word, "--json")).splitlines()
        ] == [job], word
    pending_ids = [
        json.loads(line)["id"] for line in (await run("jobs", WORK, "--state", "pending", "--json")).splitlines()
    ]
    assert pending_ids == [job, later]
    assert f"{job} {WORD} " in " ".join((await run("jobs", WORK)).split())
    assert json.loads(await run("job", str(job)))["state"] == WORD
    assert {q["queue"]: q for q in json.loads(await run("queues", "--json"))}[WORK][WORD] == 1
    status = json.loads(await run("status", "--json"))
    assert status["queues"][WORK][WORD] == 1
    header, *lines = (await run("status")).splitlines()[-1 - len(status["queues"]) :]
    assert header.split()[:5] == ["queue", "state", "backlog", WORD, "sched"]
    [mine] = [line.split() for line in lines if line.split()[0] == WORK]
    assert mine[1:4] == ["paused", "2", "1"]
