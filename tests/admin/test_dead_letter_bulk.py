"""The dead-letter detail, the grouping by error, and bulk review and discard of every dead letter
matching a filter (counted under lock: a count that drifted is 409 and changes nothing)."""

from __future__ import annotations

from typing import Any

import pytest

from fleetbox.store import Store
from tests.admin.conftest import ADMIN, OTHER, READ, WORK, Rig
from tests.admin.test_dead_letters import dead_jobs


async def audit(db: Store) -> list[tuple[str, str, str]]:
    rows = await db.pool.fetch("SELECT actor, action, target FROM fleetbox.audit_log ORDER BY id")
    return [(r["actor"], r["action"], r["target"]) for r in rows]


async def states(rig: Rig, ids: list[int]) -> list[tuple[str, bool]]:
    letters = [await rig.app.client.dead_letters.get(i) for i in ids]
    return [(d.status.value, d.reviewed) for d in letters]


async def test_the_detail_has_the_payload_in_full_and_every_operator_action(rig: Rig) -> None:
    (dead_id,) = await dead_jobs(rig, (WORK, {}))
    job_id = (await rig.app.client.dead_letters.get(dead_id)).job_id
    await rig.api.post(f"/api/queue/dead-letter/{job_id}/review", json={"reviewedBy": "ana"}, headers=ADMIN)
    for ref in (str(job_id), f"dl-{dead_id}"):
        response = await rig.api.get(f"/api/queue/dead-letter/{ref}", headers=READ)
        assert response.status == 200, await response.text()
        body = await response.json()
        assert body["id"] == dead_id and body["jobId"] == job_id
        assert body["data"] == {"mode": "permanent", "n": 0}
        assert [(a["actor"], a["action"]) for a in body["operatorActions"]] == [("ana", "dead.review")]
    for ref, status in (("424242", 404), ("dl-424242", 404), ("dl-0", 400), ("1" * 19, 400)):
        response = await rig.api.get(f"/api/queue/dead-letter/{ref}", headers=READ)
        assert response.status == status, ref
    # the bulk paths take POST only: another method is 405 naming what is allowed
    for path in ("retry", "review", "discard"):
        response = await rig.api.get(f"/api/queue/dead-letter/{path}", headers=READ)
        assert response.status == 405 and response.headers["Allow"] == "POST", path
        assert (await response.json())["error"]["code"] == "method_not_allowed"


async def test_groups_count_dead_letters_by_error_class_and_message(rig: Rig, db: Store) -> None:
    ids = await dead_jobs(rig, (WORK, {}), (WORK, {}), (OTHER, {}), (OTHER, {}))
    await db.pool.execute(
        "UPDATE fleetbox.dead_letters SET error_class = 'validation', error = 'bad address' WHERE id = $1", ids[3]
    )
    body = await (await rig.api.get("/api/queue/dead-letter/groups", headers=READ)).json()
    groups = {(g["errorClass"], g["message"]): g for g in body["groups"]}
    permanent = next(g for (cls, _m), g in groups.items() if cls == "permanent")
    assert permanent["count"] == 3 and sorted(permanent["queues"]) == sorted([WORK, OTHER])
    assert groups[("validation", "bad address")]["count"] == 1
    assert groups[("validation", "bad address")]["queues"] == [OTHER]
    assert body["groups"][0] is not None and body["groups"][0]["count"] == 3  # largest first
    filtered = await (await rig.api.get(f"/api/queue/dead-letter/groups?queue={WORK}", headers=READ)).json()
    assert [(g["errorClass"], g["count"]) for g in filtered["groups"]] == [("permanent", 2)]
    texts = await (await rig.api.get("/api/queue/dead-letter/groups?q=ADDRESS", headers=READ)).json()
    assert [g["count"] for g in texts["groups"]] == [1]
    assert (await rig.api.get("/api/queue/dead-letter/groups?queue=nope", headers=READ)).status == 404
    assert (await rig.api.get("/api/queue/dead-letter/groups?reviewed=maybe", headers=READ)).status == 400


async def test_bulk_review_acts_on_every_match_only_when_the_count_is_the_one_expected(rig: Rig, db: Store) -> None:
    ids = await dead_jobs(rig, (WORK, {}), (WORK, {}), (OTHER, {}))
    body: dict[str, Any] = {"queue": WORK, "reviewedBy": "bo", "resolutionNotes": "known outage"}
    drifted = await rig.api.post("/api/queue/dead-letter/review", json={**body, "expectedCount": 3}, headers=ADMIN)
    assert drifted.status == 409 and "not the expected 3" in (await drifted.json())["error"]["message"]
    assert await states(rig, ids) == [("open", False)] * 3 and await audit(db) == []
    done = await rig.api.post("/api/queue/dead-letter/review", json={**body, "expectedCount": 2}, headers=ADMIN)
    assert done.status == 200, await done.text()
    result = await done.json()
    assert result["matched"] == 2 and sorted(result["changed"]) == sorted(ids[:2]) and result["skipped"] == []
    assert await states(rig, ids) == [("open", True), ("open", True), ("open", False)]
    assert sorted(await audit(db)) == sorted(("bo", "dead.review", f"dead:{i}") for i in ids[:2])
    letter = await rig.app.client.dead_letters.get(ids[0])
    assert letter.reviewed_by == "bo" and letter.resolution_notes == "known outage"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expectedCount": 0}, "reviewedBy"),
        ({"expectedCount": 0, "reviewedBy": "  "}, "reviewedBy"),
        ({"reviewedBy": "bo"}, "expectedCount"),
        ({"reviewedBy": "bo", "expectedCount": -1}, "expectedCount"),
        ({"reviewedBy": "bo", "expectedCount": 0, "status": "open"}, "body"),
        ({"reviewedBy": "bo", "expectedCount": 0, "reviewed": "yes"}, "reviewed"),
    ],
)
async def test_bulk_review_body_is_checked(rig: Rig, db: Store, body: dict[str, Any], field: str) -> None:
    response = await rig.api.post("/api/queue/dead-letter/review", json=body, headers=ADMIN)
    assert response.status == 400 and (await response.json())["error"]["field"] == field
    assert await audit(db) == []


async def test_bulk_discard_names_the_actor_and_refuses_a_drifted_count(rig: Rig, db: Store) -> None:
    ids = await dead_jobs(rig, (WORK, {}), (OTHER, {}))
    path = "/api/queue/dead-letter/discard"
    drifted = await rig.api.post(path, json={"expectedCount": 1}, headers=ADMIN)
    assert drifted.status == 409 and await states(rig, ids) == [("open", False)] * 2
    actor = {**ADMIN, "x-admin-actor": "cy"}
    done = await rig.api.post(path, json={"queue": OTHER, "expectedCount": 1}, headers=actor)
    assert done.status == 200, await done.text()
    assert await done.json() == {"matched": 1, "changed": [ids[1]], "skipped": []}
    assert await states(rig, ids) == [("open", False), ("discarded", False)]
    assert await audit(db) == [("cy", "dead.discard", f"dead:{ids[1]}")]
    # discarded ones are not open: nothing matches any more
    again = await rig.api.post(path, json={"queue": OTHER, "expectedCount": 0}, headers=ADMIN)
    assert await again.json() == {"matched": 0, "changed": [], "skipped": []}
    assert (await rig.api.post(path, json={"queue": "nope", "expectedCount": 0}, headers=ADMIN)).status == 404
    assert (await rig.api.post(path, json={"expectedCount": 0}, headers=READ)).status == 403
