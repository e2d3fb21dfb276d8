"""GET /api/queue/jobs: jobs of every queue and state by payload containment and by error text
(the dashboard's job search)."""

from __future__ import annotations

import datetime as dt
import json

from fleetbox.models import JobState
from fleetbox.rules import MAX_PAYLOAD_FILTER
from tests.admin.conftest import ADMIN, OTHER, READ, WORK, Rig
from tests.conftest import wait_for


async def search(rig: Rig, expect: int = 200, **query: str) -> dict[str, object]:
    response = await rig.api.get("/api/queue/jobs", params=query, headers=READ)
    body = await response.json()
    assert response.status == expect, body
    return body  # type: ignore[no-any-return]


def ids(body: dict[str, object]) -> list[int]:
    return [job["id"] for job in body["jobs"]]  # type: ignore[attr-defined, index]


async def test_payload_containment_across_queues_and_states_newest_first(rig: Rig) -> None:
    u1 = (await rig.app.client.enqueue(WORK, {"mode": "block", "userId": "u1", "tags": ["a", "b"]})).id
    u10 = (await rig.app.client.enqueue(OTHER, {"mode": "ok", "userId": "u10"})).id
    u1_again = (await rig.app.client.enqueue(OTHER, {"mode": "ok", "userId": "u1", "n": {"deep": 1}})).id

    async def settled() -> bool:
        done = (await rig.app.client.service.jobs.get(u1_again)).state is JobState.SUCCEEDED
        return done and u1 in rig.behaviour.running

    await wait_for(settled, timeout=10)

    found = await search(rig, data=json.dumps({"userId": "u1"}))
    assert ids(found) == [u1_again, u1]  # one running, one succeeded; not u10 (containment, not text)
    assert {j["state"] for j in found["jobs"]} == {"running", "succeeded"}  # type: ignore[attr-defined]
    assert ids(await search(rig, data='{"tags": ["b"]}')) == [u1]
    assert ids(await search(rig, data='{"n": {"deep": 1}}')) == [u1_again]
    assert ids(await search(rig, data='{"userId": "u1"}', queue=WORK)) == [u1]
    assert ids(await search(rig, data='{"userId": "nobody"}')) == []
    assert u10 in ids(await search(rig))


async def test_error_text_finds_a_dead_job_and_a_retrying_one(rig: Rig) -> None:
    dead = await rig.enqueue("permanent")
    retrying = await rig.enqueue("transient", queue=OTHER)
    ok = await rig.enqueue("ok")

    async def settled() -> bool:
        states = {(await rig.app.client.service.jobs.get(i)).state for i in (dead, retrying, ok)}
        return states == {JobState.DEAD, JobState.RETRYING, JobState.SUCCEEDED}

    await wait_for(settled, timeout=10)
    assert ids(await search(rig, error="PAYLOAD IS WRONG")) == [dead]  # case-insensitive
    assert ids(await search(rig, error="upstream hiccup")) == [retrying]
    assert ids(await search(rig, error="hiccup", data='{"mode": "transient"}')) == [retrying]


async def test_pages_continue_with_before(rig: Rig) -> None:
    made = [(await rig.app.client.enqueue(OTHER, {"page": True, "mode": "block"})).id for _ in range(5)]
    first = await search(rig, data='{"page": true}', limit="2")
    assert ids(first) == made[::-1][:2]
    second = await search(rig, data='{"page": true}', limit="2", before=str(first["nextBefore"]))
    third = await search(rig, data='{"page": true}', limit="2", before=str(second["nextBefore"]))
    assert ids(first) + ids(second) + ids(third) == made[::-1]
    assert third["nextBefore"] is None


async def test_bad_filters_are_400s_naming_the_field(rig: Rig) -> None:
    cases = {
        "not json": "data",
        "[1, 2]": "data",
        '"text"': "data",
        '{"a": NaN}': "data",
        json.dumps({"k": "x" * MAX_PAYLOAD_FILTER}): "data",
    }
    for value, field in cases.items():
        body = await search(rig, 400, data=value)
        assert body["error"]["field"] == field, (value, body)  # type: ignore[index]
    assert (await search(rig, 400, error=""))["error"]["field"] == "error"  # type: ignore[index]
    assert (await search(rig, 400, before="0"))["error"]["field"] == "before"  # type: ignore[index]
    assert (await search(rig, 404, queue="no-such-queue"))["error"]["code"] == "unknown_queue"  # type: ignore[index]
    response = await rig.api.get("/api/queue/jobs", params={"data": "{}"})
    assert response.status == 401  # a read needs a key
    assert (await rig.api.get("/api/queue/jobs", params={"data": "{}"}, headers=ADMIN)).status == 200


async def test_state_and_creation_time_narrow_the_search(rig: Rig) -> None:
    running = await rig.enqueue("block")
    done = await rig.enqueue("ok", queue=OTHER)
    later = await rig.enqueue("ok", queue=OTHER, delay=3_600_000)

    async def settled() -> bool:
        return (
            await rig.app.client.service.jobs.get(done)
        ).state is JobState.SUCCEEDED and running in rig.behaviour.running

    await wait_for(settled, timeout=10)
    assert ids(await search(rig, status="running")) == [running]
    assert ids(await search(rig, status="succeeded")) == [done]
    assert ids(await search(rig, status="completed")) == [done]  # the job lists' alias
    assert ids(await search(rig, status="scheduled")) == [later]
    assert ids(await search(rig, status="pending")) == [later]
    assert ids(await search(rig, status="dead")) == []
    created = (await rig.app.client.service.jobs.get(later)).created_at
    assert ids(await search(rig, since=created.isoformat())) == [later]
    assert ids(await search(rig, since=(created + dt.timedelta(seconds=1)).isoformat())) == []
    assert (await search(rig, 400, since="yesterday"))["error"]["field"] == "since"  # type: ignore[index]
    assert (await search(rig, 400, since="2026-01-01T00:00:00"))["error"]["field"] == "since"  # type: ignore[index]
    assert (await search(rig, 400, status="lost"))["error"]["field"] == "status"  # type: ignore[index]
