"""/api/schedules and /api/queue/{queue}/retry-variants: cron schedules and retry experiments
managed over HTTP, through the one service layer (audited, checked like an enqueue)."""

from __future__ import annotations

from tests.admin.conftest import ADMIN, READ, Api


async def test_a_schedule_is_created_listed_shown_paused_resumed_run_and_removed(api: Api) -> None:
    body = {
        "name": "nightly",
        "cron": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "queue": "sync",
        "data": {"scope": "all"},
        "overlap": "skip",
        "alertAfterSeconds": 93600,
    }
    created = await api.post("/api/schedules", json=body, headers={**ADMIN, "x-admin-actor": "alice"})
    assert created.status == 200, await created.text()
    doc = await created.json()
    assert (doc["name"], doc["overlap"], doc["source"], doc["updatedBy"]) == ("nightly", "skip", "api", "alice")
    assert len(doc["next"]) == 5 and doc["runs"] == []

    listed = await (await api.get("/api/schedules", headers=READ)).json()
    assert [s["name"] for s in listed["schedules"]] == ["nightly"]
    shown = await (await api.get("/api/schedules/nightly?next=366", headers=READ)).json()
    assert [t["dst"] for t in shown["next"]].count("skipped-forward") == 1

    paused = await (await api.post("/api/schedules/nightly/pause", headers=ADMIN)).json()
    assert paused["enabled"] is False and paused["next"] == []
    resumed = await (await api.post("/api/schedules/nightly/resume", headers=ADMIN)).json()
    assert resumed["enabled"] is True and resumed["nextRunAt"] is not None
    run = await (await api.post("/api/schedules/nightly/run", headers=ADMIN)).json()
    job = await (await api.get(f"/api/queue/jobs/{run['jobId']}", headers=READ)).json()
    assert (job["queue"], job["data"]) == ("sync", {"scope": "all"})

    assert (await api.post("/api/schedules/nightly/run", headers=READ)).status == 403  # a read key cannot act
    removed = await api.delete("/api/schedules/nightly", headers=ADMIN)
    assert await removed.json() == {"name": "nightly", "removed": True}
    missing = await api.get("/api/schedules/nightly", headers=READ)
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"


async def test_a_bad_schedule_is_a_400_naming_the_field_and_changes_nothing(api: Api) -> None:
    for bad, field in (
        ({"cron": "61 * * * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"priority": 11}, "priority"),
        ({"overlap": "sometimes"}, "overlap"),
        ({"colour": "red"}, "body"),
    ):
        body = {"name": "nightly", "cron": "0 * * * *", "queue": "sync", **bad}
        response = await api.post("/api/schedules", json=body, headers=ADMIN)
        assert response.status == 400, (bad, await response.text())
        assert (await response.json())["error"]["field"] == field, bad
    unknown = await api.post("/api/schedules", json={"name": "n", "cron": "@daily", "queue": "nope"}, headers=ADMIN)
    assert unknown.status == 404
    assert (await (await api.get("/api/schedules", headers=READ)).json())["schedules"] == []


async def test_a_queue_without_variants_reports_one_variant_and_promoting_an_unknown_one_is_404(api: Api) -> None:
    report = await (await api.get("/api/queue/sync/retry-variants", headers=READ)).json()
    assert report["queue"] == "sync" and report["mode"] == "none"
    assert [(v["label"], v["weight"]) for v in report["variants"]] == [("default", 1.0)]
    assert report["verdict"] == "no experiment: one variant"
    promoted = await api.post("/api/queue/sync/retry-variants/fast/promote", headers=ADMIN)
    assert promoted.status == 404
    assert (await api.get("/api/queue/nope/retry-variants", headers=READ)).status == 404


async def test_a_job_enqueued_with_depends_on_waits_blocked_for_its_parents(api: Api) -> None:
    parent = await (await api.post("/api/queue/sync/jobs", json={"data": {"n": 1}}, headers=ADMIN)).json()
    child = await api.post(
        "/api/queue/notifications/jobs",
        json={"data": {}, "dependsOn": [parent["id"]], "onFailure": "hold"},
        headers=ADMIN,
    )
    assert child.status == 201, await child.text()
    job = await (await api.get(f"/api/queue/jobs/{(await child.json())['id']}", headers=READ)).json()
    assert job["state"] == "blocked"
    unknown = await api.post("/api/queue/sync/jobs", json={"data": {}, "dependsOn": [999999]}, headers=ADMIN)
    assert unknown.status == 400 and (await unknown.json())["error"]["field"] == "dependsOn"
    with_key = await api.post(
        "/api/queue/sync/jobs", json={"data": {}, "dependsOn": [parent["id"]], "singletonKey": "k"}, headers=ADMIN
    )
    assert with_key.status == 400 and (await with_key.json())["error"]["field"] == "singletonKey"
    bad = await api.post("/api/queue/sync/jobs", json={"data": {}, "onFailure": "maybe"}, headers=ADMIN)
    assert bad.status == 400 and (await bad.json())["error"]["field"] == "onFailure"
