"""Jobs through the admin API: enqueue, lists by status with paging, detail, failures, retry."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fleetbox.models import JobState
from fleetbox.store import Store
from tests.admin.conftest import ADMIN, OTHER, READ, WORK, Api, Rig
from tests.conftest import wait_for


async def count(db: Store, table: str) -> int:
    return int(await db.pool.fetchval(f"SELECT count(*) FROM fleetbox.{table}"))


# -- enqueue ---------------------------------------------------------------------------------


async def test_enqueue_creates_a_job_and_a_singleton_hit_returns_the_live_one(api: Api, db: Store) -> None:
    body = {"data": {"chatId": "c1"}, "priority": 3, "singletonKey": "chat-c1", "maxAttempts": 4}
    first = await api.post("/api/queue/teams-outbound/jobs", json=body, headers={**ADMIN, "x-admin-actor": "ivy"})
    assert first.status == 201
    created = await first.json()
    assert created == {"id": created["id"], "queue": "teams-outbound", "created": True}

    again = await api.post("/api/queue/teams-outbound/jobs", json=body, headers=ADMIN)
    assert again.status == 200
    assert await again.json() == {"id": created["id"], "queue": "teams-outbound", "created": False}

    detail = await (await api.get(f"/api/queue/jobs/{created['id']}", headers=READ)).json()
    assert detail["priority"] == 3 and detail["maxAttempts"] == 4 and detail["singletonKey"] == "chat-c1"
    assert detail["data"] == {"chatId": "c1"} and detail["state"] == "waiting" and detail["history"] == []
    rows = await db.pool.fetch("SELECT actor, action, target, details FROM fleetbox.audit_log ORDER BY id")
    assert [(r["actor"], r["action"], r["target"], r["details"]["created"]) for r in rows] == [
        ("ivy", "job.enqueue", f"job:{created['id']}", True),
        ("admin-api", "job.enqueue", f"job:{created['id']}", False),
    ]


async def test_enqueue_with_delay_or_run_at_schedules_the_job(api: Api) -> None:
    delayed = await (await api.post("/api/queue/sync/jobs", json={"data": {}, "delay": 60_000}, headers=ADMIN)).json()
    at = {"data": {}, "runAt": "2099-01-01T00:00:00Z"}
    timed = await (await api.post("/api/queue/sync/jobs", json=at, headers=ADMIN)).json()
    for job in (delayed, timed):
        detail = await (await api.get(f"/api/queue/jobs/{job['id']}", headers=READ)).json()
        assert detail["state"] == "scheduled"
    detail = await (await api.get(f"/api/queue/jobs/{timed['id']}", headers=READ)).json()
    assert detail["runAt"].startswith("2099-01-01T00:00:00")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"data": {}, "priority": 11}, "priority"),
        ({"data": {}, "priority": "5"}, "priority"),
        ({"data": {}, "priority": 5.5}, "priority"),
        ({"data": {}, "delay": -1}, "delay"),
        ({"data": {}, "delay": "soon"}, "delay"),
        ({"data": {}, "delay": 1, "runAt": "2099-01-01T00:00:00Z"}, "runAt"),
        ({"data": {}, "runAt": "tomorrow"}, "runAt"),
        ({"data": {}, "runAt": "2099-01-01T00:00:00"}, "runAt"),
        ({"data": {}, "runAt": 5}, "runAt"),
        ({"data": {}, "runAt": "0001-01-01T00:00:00+01:00"}, "runAt"),
        ({"data": {}, "singletonKey": ""}, "singletonKey"),
        ({"data": {}, "singletonKey": "x" * 256}, "singletonKey"),
        ({"data": {}, "maxAttempts": 0}, "maxAttempts"),
        ({"data": {}, "maxAttempts": True}, "maxAttempts"),
        ({"data": []}, "data"),
        ({"data": "text"}, "data"),
        ({"data": {"text": "a\u0000b"}}, "data"),
        ({"data": {"text": "\ud800"}}, "data"),
        ({"priority": 5}, "data"),
        ({"data": {}, "prio": 5}, "body"),
    ],
)
async def test_enqueue_refuses_bad_fields_by_name_and_writes_nothing(
    api: Api, db: Store, body: dict[str, Any], field: str
) -> None:
    response = await api.post(
        "/api/queue/sync/jobs", data=json.dumps(body), headers={**ADMIN, "content-type": "application/json"}
    )
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "invalid_input" and error["field"] == field, error
    assert error["message"].startswith(f"{field}: ")
    assert await count(db, "jobs") == 0


async def test_enqueue_on_an_unknown_queue_is_404_and_on_the_dead_letter_queue_400(api: Api, db: Store) -> None:
    unknown = await api.post("/api/queue/no-such-queue/jobs", json={"data": {}}, headers=ADMIN)
    assert unknown.status == 404
    assert (await unknown.json())["error"]["code"] == "unknown_queue"
    dead = await api.post("/api/queue/dead-letter/jobs", json={"data": {}}, headers=ADMIN)
    assert dead.status == 400
    assert "dead letters" in (await dead.json())["error"]["message"]
    assert await count(db, "jobs") == 0
    # JSON has one number type: 5.0 is the integer 5
    five = await api.post("/api/queue/sync/jobs", json={"data": {}, "priority": 5.0, "maxAttempts": 3.0}, headers=ADMIN)
    assert five.status == 201, await five.text()
    job = await api.get(f"/api/queue/jobs/{(await five.json())['id']}", headers=READ)
    assert (await job.json())["priority"] == 5 and (await job.json())["maxAttempts"] == 3


async def test_enqueue_body_errors(api: Api, db: Store, make_settings: Any) -> None:
    url = "/api/queue/sync/jobs"
    json_header = {**ADMIN, "content-type": "application/json"}
    cases: list[tuple[dict[str, str], Any, int, str]] = [
        (json_header, b"{not json", 400, "malformed_json"),
        (json_header, b'{"data": NaN}', 400, "malformed_json"),
        (json_header, b"\xff\xfe", 400, "malformed_json"),
        (json_header, b"[1, 2]", 400, "invalid_input"),
        (json_header, b"", 400, "invalid_input"),
        (json_header, b"[" * 100_000 + b"]" * 100_000, 400, "malformed_json"),
        ({**ADMIN, "content-type": "text/plain"}, b'{"data": {}}', 415, "unsupported_media_type"),
        (ADMIN, io.BytesIO(b'{"data": {}}'), 415, "unsupported_media_type"),
    ]
    for headers, data, status, code in cases:
        response = await api.post(url, data=data, headers=headers)
        assert response.status == status, (data, await response.text())
        assert (await response.json())["error"]["code"] == code
    # A payload over appliance.max_payload_bytes that still fits the body limit: the client's check.
    limit = make_settings().appliance.max_payload_bytes
    big = {"data": {"blob": "x" * (limit + 10)}}
    response = await api.post(url, data=io.BytesIO(json.dumps(big).encode()), headers=json_header)
    assert response.status == 400
    assert (await response.json())["error"]["field"] == "data"
    # A body over the limit itself: 413, from the declared length or while reading a chunked body.
    huge = b'{"data": {"blob": "' + b"x" * (limit + 200_000) + b'"}}'

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(huge), 65_536):
            yield huge[start : start + 65_536]

    for data in (io.BytesIO(huge), chunked()):
        response = await api.post(url, data=data, headers=json_header)
        assert response.status == 413
        assert (await response.json())["error"]["code"] == "payload_too_large"
    assert await count(db, "jobs") == 0


# -- lists -----------------------------------------------------------------------------------


async def test_jobs_are_listed_by_status(rig: Rig) -> None:
    c = rig.app.client
    ids: dict[str, int] = {}
    ids["succeeded"] = await rig.enqueue("ok")
    ids["dead"] = await rig.enqueue("permanent")
    ids["retrying"] = await rig.enqueue("transient")
    ids["running"] = await rig.enqueue("block")

    async def settled() -> bool:
        return {k: (await c.get_job(v)).state.value for k, v in ids.items()} == {k: k for k in ids}

    await wait_for(settled)
    await c.set_paused(WORK, True)  # nothing more is claimed from here on
    ids["waiting"] = await rig.enqueue("ok")
    ids["scheduled"] = await rig.enqueue("ok", delay=3_600_000)
    await c.set_paused(OTHER, True)
    to_clear = await rig.enqueue("ok", queue=OTHER)
    assert (await rig.api.delete(f"/api/queue/{OTHER}/clear?confirm=yes", headers=ADMIN)).status == 200

    async def listed(queue: str, status: str | None) -> list[int]:
        query = "" if status is None else f"?status={status}"
        response = await rig.api.get(f"/api/queue/{queue}/jobs{query}", headers=READ)
        assert response.status == 200, await response.text()
        body = await response.json()
        assert body["queue"] == queue and body["status"] == status and body["nextAfter"] is None
        return [j["id"] for j in body["jobs"]]

    for state in ("waiting", "scheduled", "retrying", "running", "succeeded", "dead"):
        assert await listed(WORK, state) == [ids[state]], state
    assert await listed(OTHER, "cleared") == [to_clear]
    assert await listed(WORK, "cleared") == []
    assert await listed(WORK, "pending") == sorted([ids["waiting"], ids["scheduled"], ids["retrying"]])
    # the spec's words, and ready (the old word for waiting), are aliases of the state names
    assert await listed(WORK, "ready") == [ids["waiting"]]
    assert await listed(WORK, "completed") == [ids["succeeded"]]
    assert await listed(WORK, "failed") == [ids["dead"]]
    live = [ids[s] for s in ("waiting", "scheduled", "retrying", "running")]
    assert await listed(WORK, None) == sorted(live)
    body = await (await rig.api.get(f"/api/queue/{WORK}/jobs", headers=READ)).json()
    assert {j["id"]: j["state"] for j in body["jobs"]} == {
        ids[s]: s for s in ("waiting", "scheduled", "retrying", "running")
    }
    rig.behaviour.release.set()


async def test_job_lists_page_with_after_and_offset(api: Api, client: Any) -> None:
    ids = [(await client.enqueue("sync", {"n": n})).id for n in range(7)]
    seen: list[int] = []
    after: int | None = None
    pages = 0
    while True:
        query = "?status=waiting&limit=3" + (f"&after={after}" if after else "")
        body = await (await api.get(f"/api/queue/sync/jobs{query}", headers=READ)).json()
        seen += [j["id"] for j in body["jobs"]]
        pages += 1
        after = body["nextAfter"]
        if after is None:
            break
        assert after == seen[-1]
    assert seen == ids and pages == 3
    body = await (await api.get("/api/queue/sync/jobs?offset=5&limit=10", headers=READ)).json()
    assert [j["id"] for j in body["jobs"]] == ids[5:] and body["offset"] == 5 and body["limit"] == 10


async def test_finished_job_lists_page_newest_first(rig: Rig) -> None:
    ids = [await rig.enqueue("ok") for _ in range(5)]

    async def all_done() -> bool:
        return [(await rig.app.client.get_job(i)).state for i in ids] == [JobState.SUCCEEDED] * len(ids)

    await wait_for(all_done)
    seen: list[int] = []
    after: int | None = None
    while True:
        query = "?status=succeeded&limit=2" + (f"&after={after}" if after else "")
        body = await (await rig.api.get(f"/api/queue/{WORK}/jobs{query}", headers=READ)).json()
        seen += [j["id"] for j in body["jobs"]]
        after = body["nextAfter"]
        if after is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen)) == 5
    finished = [(await rig.app.client.get_job(i)).finished_at for i in seen]
    assert finished == sorted(finished, reverse=True)
    # a cursor that is not in this list is refused rather than silently starting over
    response = await rig.api.get(f"/api/queue/{WORK}/jobs?status=dead&after={ids[0]}", headers=READ)
    assert response.status == 404 and (await response.json())["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=bogus", "status"),
        ("status=", "status"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("limit=1.5", "limit"),
        ("limit=%D9%A5", "limit"),  # an Arabic-Indic five: int() would take it
        ("limit=5&limit=6", "limit"),
        ("offset=-1", "offset"),
        ("offset=100001", "offset"),
        ("after=0", "after"),
        ("after=99999999999999999999", "after"),
    ],
)
async def test_job_list_parameters_are_checked(api: Api, query: str, field: str) -> None:
    response = await api.get(f"/api/queue/sync/jobs?{query}", headers=READ)
    assert response.status == 400
    assert (await response.json())["error"]["field"] == field


async def test_a_cursor_that_points_nowhere_is_404(api: Api) -> None:
    response = await api.get("/api/queue/sync/jobs?status=succeeded&after=424242", headers=READ)
    assert response.status == 404 and (await response.json())["error"]["code"] == "not_found"
    assert "424242" in (await response.json())["error"]["message"]


async def test_job_list_of_an_unknown_queue_is_404_and_of_a_name_no_queue_can_have_400(api: Api) -> None:
    response = await api.get("/api/queue/no-such-queue/jobs", headers=READ)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "unknown_queue"
    for queue in ("UPPER", "a%00b", "x" * 64, "-lead"):
        response = await api.get(f"/api/queue/{queue}/jobs", headers=READ)
        assert response.status == 400, queue
        assert (await response.json())["error"]["field"] == "queue"


# -- detail, failures, retry -----------------------------------------------------------------


async def test_job_detail_has_the_attempt_history_and_the_dead_letter(rig: Rig) -> None:
    job = await rig.enqueue("permanent")

    async def dead() -> bool:
        return (await rig.app.client.get_job(job)).state is JobState.DEAD

    await wait_for(dead)
    body = await (await rig.api.get(f"/api/queue/jobs/{job}", headers=READ)).json()
    assert body["state"] == "dead" and body["queue"] == WORK
    assert [a["outcome"] for a in body["history"]] == ["dead"]
    assert body["history"][0]["errorClass"] == "permanent" and "payload is wrong" in body["history"][0]["error"]
    assert body["deadLetter"]["jobId"] == job and body["deadLetter"]["status"] == "open"
    assert body["deadLetter"]["history"][0]["outcome"] == "dead"


async def test_a_dead_job_shows_why_and_its_dead_letter(rig: Rig, db: Store) -> None:
    job = await rig.enqueue("permanent")

    async def dead() -> bool:
        return (await rig.app.client.get_job(job)).state is JobState.DEAD

    await wait_for(dead)
    dead_id = await rig.app.service.dead_letters.of_job(job)
    body = await (await rig.api.get(f"/api/queue/jobs/{job}", headers=READ)).json()
    assert body["lastErrorClass"] == "permanent" and "payload is wrong" in body["lastError"]
    assert body["deadLetterId"] == dead_id == body["deadLetter"]["id"]
    # without its dead letter (pruned), the last failed attempt still says why
    await db.pool.execute("DELETE FROM fleetbox.dead_letters WHERE id = $1", dead_id)
    body = await (await rig.api.get(f"/api/queue/jobs/{job}", headers=READ)).json()
    assert body["lastErrorClass"] == "permanent" and "payload is wrong" in body["lastError"]
    assert body["deadLetterId"] is None and body["deadLetter"] is None
    # a job that is not dead has no dead letter and no error
    ok = await rig.enqueue("ok")

    async def succeeded() -> bool:
        return (await rig.app.client.get_job(ok)).state is JobState.SUCCEEDED

    await wait_for(succeeded)
    body = await (await rig.api.get(f"/api/queue/jobs/{ok}", headers=READ)).json()
    assert body["deadLetterId"] is None and body["lastError"] is None


async def test_job_detail_errors(api: Api) -> None:
    missing = await api.get("/api/queue/jobs/123456", headers=READ)
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
    for bad in ("abc", "0", "-4", "9223372036854775808", "1e3"):
        response = await api.get(f"/api/queue/jobs/{bad}", headers=READ)
        assert response.status == 400, bad
        assert (await response.json())["error"]["field"] == "jobId"


async def test_failed_lists_retrying_jobs_dead_letters_and_failed_attempts(rig: Rig) -> None:
    retrying = await rig.enqueue("transient")
    dead = await rig.enqueue("permanent")
    ok = await rig.enqueue("ok")
    c = rig.app.client

    async def settled() -> bool:
        states = [(await c.get_job(j)).state for j in (retrying, dead, ok)]
        return states == [JobState.RETRYING, JobState.DEAD, JobState.SUCCEEDED]

    await wait_for(settled)
    body = await (await rig.api.get(f"/api/queue/{WORK}/failed", headers=READ)).json()
    assert [j["id"] for j in body["retrying"]] == [retrying]
    assert [d["jobId"] for d in body["deadLetters"]] == [dead]
    assert sorted(a["jobId"] for a in body["recentFailures"]) == sorted([retrying, dead])
    assert {a["outcome"] for a in body["recentFailures"]} == {"retry", "dead"}
    other = await (await rig.api.get(f"/api/queue/{OTHER}/failed", headers=READ)).json()
    assert other == {"queue": OTHER, "retrying": [], "deadLetters": [], "recentFailures": [], "truncated": False}
    assert (await rig.api.get("/api/queue/nope/failed", headers=READ)).status == 404
    assert (await rig.api.get(f"/api/queue/{WORK}/failed?limit=0", headers=READ)).status == 400


async def test_retry_runs_a_retrying_job_now_and_requeues_a_dead_one(rig: Rig, db: Store) -> None:
    c = rig.app.client
    retrying = await rig.enqueue("transient")
    dead = await rig.enqueue("permanent")

    async def settled() -> bool:
        return [(await c.get_job(j)).state for j in (retrying, dead)] == [JobState.RETRYING, JobState.DEAD]

    await wait_for(settled)
    # the retrying job runs at once (its clock has not moved) and fails again: a second attempt
    response = await rig.api.post(
        f"/api/queue/{WORK}/retry/{retrying}", headers={**ADMIN, "x-admin-actor": "ops@example.com"}
    )
    assert response.status == 200, await response.text()
    assert await response.json() == {"queue": WORK, "retriedJobId": retrying, "jobId": retrying, "requeued": False}

    async def second_attempt() -> bool:
        return len((await c.get_job(retrying)).history) >= 2

    await wait_for(second_attempt)
    # the dead one comes back as a new job, linked to its dead letter
    response = await rig.api.post(f"/api/queue/{WORK}/retry/{dead}", headers=ADMIN)
    assert response.status == 200
    body = await response.json()
    assert body["requeued"] is True and body["jobId"] != dead
    new = await c.get_job(body["jobId"])
    assert new.queue == WORK and new.dead_letter_id is not None
    letter = await c.dead_letters.get(new.dead_letter_id)
    assert letter.status.value == "retried" and letter.retried_job_id == body["jobId"]
    actors = {r["actor"] for r in await db.pool.fetch("SELECT actor FROM fleetbox.audit_log")}
    assert "ops@example.com" in actors
    # again: the dead letter was already retried
    again = await rig.api.post(f"/api/queue/{WORK}/retry/{dead}", headers=ADMIN)
    assert again.status == 409 and (await again.json())["error"]["code"] == "conflict"


async def test_retry_refuses_jobs_that_are_not_failed_or_not_of_the_queue(rig: Rig) -> None:
    running = await rig.enqueue("block")
    await wait_for(lambda: running in rig.behaviour.running)
    await rig.app.client.set_paused(WORK, True)
    ready = await rig.enqueue("ok")
    for job in (running, ready):
        response = await rig.api.post(f"/api/queue/{WORK}/retry/{job}", headers=ADMIN)
        assert response.status == 409, job
        assert "only a job waiting for a retry or a dead one" in (await response.json())["error"]["message"]
    wrong_queue = await rig.api.post(f"/api/queue/{OTHER}/retry/{ready}", headers=ADMIN)
    assert wrong_queue.status == 404 and f"not on queue '{OTHER}'" in (await wrong_queue.json())["error"]["message"]
    assert (await rig.api.post(f"/api/queue/{WORK}/retry/987654", headers=ADMIN)).status == 404
    assert (await rig.api.post(f"/api/queue/{WORK}/retry/x", headers=ADMIN)).status == 400
    assert (await rig.api.post(f"/api/queue/nope/retry/{ready}", headers=ADMIN)).status == 404
    assert (await rig.app.client.get_job(ready)).state is JobState.WAITING
    rig.behaviour.release.set()


async def test_blocked_and_cancelled_jobs_are_listed_by_those_words(rig: Rig) -> None:
    """The README lists blocked and cancelled among the words a state filter takes; found from
    outside, both were refused (400), so a queue's blocked jobs could not be listed at all."""
    parent = await rig.enqueue("block", run_at=rig.clock.now() + dt.timedelta(hours=1))  # stays waiting
    children = [(await rig.app.client.enqueue(WORK, {"mode": "ok", "n": n}, depends_on=[parent])).id for n in range(3)]
    body = await (await rig.api.get(f"/api/queue/{WORK}/jobs?status=blocked&limit=2", headers=READ)).json()
    assert [(j["id"], j["state"]) for j in body["jobs"]] == [(children[0], "blocked"), (children[1], "blocked")]
    rest = await (
        await rig.api.get(f"/api/queue/{WORK}/jobs?status=blocked&after={body['nextAfter']}", headers=READ)
    ).json()
    assert [j["id"] for j in rest["jobs"]] == [children[2]]

    await rig.app.client.cancel_blocked_job(children[0], actor="ops")
    cancelled = await (await rig.api.get(f"/api/queue/{WORK}/jobs?status=cancelled", headers=READ)).json()
    assert [(j["id"], j["state"]) for j in cancelled["jobs"]] == [(children[0], "cancelled")]
    blocked = await (await rig.api.get(f"/api/queue/{WORK}/jobs?status=blocked", headers=READ)).json()
    assert [j["id"] for j in blocked["jobs"]] == children[1:]
    # the search across queues (the dashboard's Jobs page) takes both words too, and finds blocked
    # jobs among every state
    for status, want in (("blocked", children[:0:-1]), ("cancelled", [children[0]])):
        found = await (await rig.api.get(f"/api/queue/jobs?queue={WORK}&status={status}", headers=READ)).json()
        assert [(j["id"], j["state"]) for j in found["jobs"]] == [(i, status) for i in want]
    every = await (await rig.api.get(f"/api/queue/jobs?queue={WORK}", headers=READ)).json()
    assert {j["id"] for j in every["jobs"]} >= {parent, *children}
