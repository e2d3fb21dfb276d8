"""Pause, resume and clear through the admin API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fleetbox.app import Appliance
from fleetbox.models import Job, JobState
from fleetbox.store import Store
from tests.admin.conftest import ADMIN, READ, WORK, Api, Rig, admin_section, app_for
from tests.conftest import wait_for


async def audit(db: Store) -> list[dict[str, Any]]:
    rows = await db.pool.fetch("SELECT actor, action, target, details FROM fleetbox.audit_log ORDER BY id")
    return [dict(r) for r in rows]


async def test_pause_and_resume_are_stored_audited_and_logged(
    api: Api, db: Store, logs: pytest.LogCaptureFixture
) -> None:
    who = {**ADMIN, "x-admin-actor": "alice@example.com"}
    paused = await api.post("/api/queue/teams-outbound/pause", headers=who)
    assert paused.status == 200
    body = await paused.json()
    assert body["name"] == "teams-outbound" and body["tier"] == "high" and body["paused"] is True
    assert body["pausedBy"] == "alice@example.com" and body["pausedAt"] is not None
    assert await db.pool.fetchval("SELECT paused FROM fleetbox.queues WHERE name = 'teams-outbound'") is True
    health = await (await api.get("/api/queue/health")).json()
    assert health["queues"]["teams-outbound"]["isRunning"] is False

    resumed = await api.post("/api/queue/teams-outbound/resume", headers=ADMIN)
    assert resumed.status == 200
    body = await resumed.json()
    assert body["paused"] is False and body["pausedBy"] is None
    assert await db.pool.fetchval("SELECT paused FROM fleetbox.queues WHERE name = 'teams-outbound'") is False

    rows = await audit(db)
    assert [(r["actor"], r["action"], r["target"]) for r in rows] == [
        ("alice@example.com", "queue.pause", "teams-outbound"),
        ("admin-api", "queue.resume", "teams-outbound"),
    ]
    events = [(r.event, r.actor) for r in logs.records if getattr(r, "event", "").startswith("audit.queue")]
    assert events == [("audit.queue.pause", "alice@example.com"), ("audit.queue.resume", "admin-api")]


async def test_pause_errors(api: Api, db: Store) -> None:
    assert (await api.post("/api/queue/no-such/pause", headers=ADMIN)).status == 404
    dead = await api.post("/api/queue/dead-letter/pause", headers=ADMIN)
    assert dead.status == 400 and "cannot be paused" in (await dead.json())["error"]["message"]
    for actor in ("x" * 201, "a\tb"):
        response = await api.post("/api/queue/sync/pause", headers={**ADMIN, "x-admin-actor": actor})
        assert response.status == 400 and (await response.json())["error"]["field"] == "x-admin-actor"
    assert await db.pool.fetchval("SELECT count(*) FROM fleetbox.queues WHERE paused") == 0
    assert await audit(db) == []


async def test_pause_stops_claiming_on_every_appliance_and_running_jobs_finish(
    appliance_factory: Callable[..., Awaitable[Appliance]], aiohttp_client: Any, db: Store
) -> None:
    """Two appliances on one database. Paused through one appliance's API, the queue is skipped by
    both: marker jobs enqueued after the paused jobs on the same tier run (one on each appliance,
    each holding its only slot until the other has one), so both claimed past the paused jobs."""
    release = asyncio.Event()
    running: set[int] = set()
    markers: dict[str, int] = {}
    both = asyncio.Event()
    finished: list[int] = []

    def handler_for(name: str) -> Callable[[Job], Awaitable[None]]:
        async def handle(job: Job) -> None:
            if job.data.get("mode") == "block":
                running.add(job.id)
                await release.wait()
            elif job.data.get("mode") == "marker":
                markers[name] = job.id
                if len(markers) == 2:
                    both.set()
                await both.wait()
            finished.append(job.id)

        return handle

    apps = []
    for name in ("a", "b"):
        apps.append(
            await appliance_factory(
                handlers={WORK: handler_for(name), "markers": handler_for(name)},
                queues={WORK: {"tier": "low"}, "markers": {"tier": "low"}},
                pools={"low": 1},
                admin=admin_section(),
            )
        )
    a, b = apps
    api: Api = await aiohttp_client(app_for(a.settings, a.client, a.monitor))
    # a job runs on one appliance while the queue is paused
    blocked = (await a.client.enqueue(WORK, {"mode": "block"})).id
    await wait_for(lambda: blocked in running)
    assert (await api.post(f"/api/queue/{WORK}/pause", headers=ADMIN)).status == 200
    waiting = [(await b.client.enqueue(WORK, {"n": n})).id for n in range(4)]
    for n in range(2):
        await b.client.enqueue("markers", {"mode": "marker", "n": n})
    # the appliance running the blocked job has no free slot: it finishes the job, then takes a marker
    release.set()
    await wait_for(lambda: len(markers) == 2)
    assert set(markers) == {"a", "b"}
    await wait_for(lambda: blocked in finished)
    states = [(await a.client.get_job(j)).state for j in waiting]
    assert states == [JobState.WAITING] * 4  # claimed by neither appliance
    assert not any(j in finished for j in waiting)

    assert (await api.post(f"/api/queue/{WORK}/resume", headers=ADMIN)).status == 200

    async def all_done() -> bool:
        return [(await a.client.get_job(j)).state for j in waiting] == [JobState.SUCCEEDED] * 4

    await wait_for(all_done)


async def test_clear_removes_waiting_jobs_and_never_running_ones(rig: Rig, db: Store) -> None:
    c = rig.app.client
    running = [await rig.enqueue("block") for _ in range(2)]  # the low pool's two slots
    await wait_for(lambda: set(running) <= rig.behaviour.running)
    ready = [await rig.enqueue("ok") for _ in range(3)]
    scheduled = await rig.enqueue("ok", delay=3_600_000)
    other = await rig.enqueue("ok", queue="sync")

    missing = await rig.api.delete(f"/api/queue/{WORK}/clear", headers=ADMIN)
    assert missing.status == 400 and (await missing.json())["error"]["field"] == "confirm"
    wrong = await rig.api.delete(f"/api/queue/{WORK}/clear?confirm=true", headers=ADMIN)
    assert wrong.status == 400
    assert [(await c.get_job(j)).state for j in ready] == [JobState.WAITING] * 3

    response = await rig.api.delete(f"/api/queue/{WORK}/clear?confirm=yes", headers={**ADMIN, "x-admin-actor": "bob"})
    assert response.status == 200
    assert await response.json() == {"queue": WORK, "cleared": 4}
    for job in [*ready, scheduled]:
        assert (await c.get_job(job)).state is JobState.CLEARED
    assert [(await c.get_job(j)).state for j in running] == [JobState.RUNNING] * 2
    assert (await c.get_job(other)).state is JobState.WAITING  # another queue is untouched
    listed = await (await rig.api.get(f"/api/queue/{WORK}/jobs?status=cleared", headers=READ)).json()
    assert sorted(j["id"] for j in listed["jobs"]) == sorted([*ready, scheduled])
    rows = await audit(db)
    assert rows[-1]["actor"] == "bob" and rows[-1]["action"] == "queue.clear" and rows[-1]["details"] == {"cleared": 4}

    # the running jobs finish normally
    rig.behaviour.release.set()

    async def finished() -> bool:
        return [(await c.get_job(j)).state for j in running] == [JobState.SUCCEEDED] * 2

    await wait_for(finished)
    again = await rig.api.delete(f"/api/queue/{WORK}/clear?confirm=yes", headers=ADMIN)
    assert await again.json() == {"queue": WORK, "cleared": 0}
    assert (await rig.api.delete("/api/queue/no-such/clear?confirm=yes", headers=ADMIN)).status == 404
