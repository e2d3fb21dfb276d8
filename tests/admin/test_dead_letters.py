"""Dead letters through the admin API: list, review, retry (one and many), discard."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fleetbox.models import JobState
from fleetbox.store import Store
from tests.admin.conftest import ADMIN, OTHER, READ, WORK, Api, Rig
from tests.conftest import wait_for


async def dead_jobs(rig: Rig, *specs: tuple[str, dict[str, Any]]) -> list[int]:
    """Enqueue permanent failures (queue, extra enqueue args) and wait until each is a dead letter;
    returns their dead-letter ids in the order given."""
    jobs = [
        (await rig.app.client.enqueue(queue, {"mode": "permanent", "n": n}, **kw)).id
        for n, (queue, kw) in enumerate(specs)
    ]

    async def all_dead() -> bool:
        return [(await rig.app.client.get_job(j)).state for j in jobs] == [JobState.DEAD] * len(jobs)

    await wait_for(all_dead)
    return [await rig.app.service.dead_letters.of_job(j) for j in jobs]


async def test_dead_letters_are_listed_newest_first_with_filters_and_paging(rig: Rig) -> None:
    ids = await dead_jobs(rig, (WORK, {}), (WORK, {}), (WORK, {}), (OTHER, {}))
    await rig.app.client.dead_letters.review(ids[0], reviewed_by="carol")

    async def listed(query: str = "") -> list[int]:
        response = await rig.api.get(f"/api/queue/dead-letter{query}", headers=READ)
        assert response.status == 200, await response.text()
        return [d["id"] for d in (await response.json())["deadLetters"]]

    everything = await listed()
    assert sorted(everything) == sorted(ids)
    failed = [(await rig.app.client.dead_letters.get(i)).failed_at for i in everything]
    assert failed == sorted(failed, reverse=True)
    assert await listed("?reviewed=true") == await listed("?reviewed=yes") == [ids[0]]
    assert sorted(await listed("?reviewed=false")) == sorted(await listed("?reviewed=no")) == sorted(ids[1:])
    assert await listed(f"?queue={OTHER}") == [ids[3]]
    assert sorted(await listed("?errorClass=permanent")) == sorted(ids)
    assert await listed("?errorClass=transient") == []
    assert sorted(await listed("?status=open")) == sorted(ids)
    assert await listed("?status=retried") == []

    body = await (await rig.api.get("/api/queue/dead-letter?limit=3", headers=READ)).json()
    first = [d["id"] for d in body["deadLetters"]]
    assert first == everything[:3] and body["nextBefore"] == first[-1]
    body = await (await rig.api.get(f"/api/queue/dead-letter?limit=3&before={first[-1]}", headers=READ)).json()
    assert [d["id"] for d in body["deadLetters"]] == everything[3:] and body["nextBefore"] is None

    letter = (await (await rig.api.get(f"/api/queue/dead-letter?queue={OTHER}", headers=READ)).json())["deadLetters"][0]
    assert letter["queue"] == OTHER and letter["data"] is None
    assert json.loads(letter["dataPreview"]) == {"mode": "permanent", "n": 3}
    assert letter["errorClass"] == "permanent" and letter["status"] == "open" and letter["reviewed"] is False
    assert [h["outcome"] for h in letter["history"]] == ["dead"]


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("reviewed=maybe", 400, "reviewed"),
        ("reviewed=true&reviewed=false", 400, "reviewed"),
        ("status=gone", 400, "status"),
        ("before=0", 400, "before"),
        ("before=424242", 404, None),
        ("limit=501", 400, "limit"),
        ("errorClass=" + "e" * 101, 400, "errorClass"),
        # found from outside: a class that does not exist answered "0 matching"
        ("errorClass=validation", 400, "errorClass"),
        ("queue=no-such-queue", 404, "queue"),
    ],
)
async def test_dead_letter_list_parameters_are_checked(api: Api, query: str, status: int, field: str) -> None:
    response = await api.get(f"/api/queue/dead-letter?{query}", headers=READ)
    assert response.status == status
    assert (await response.json())["error"].get("field") == field


async def test_review_by_job_id_or_by_dead_letter_id(rig: Rig, db: Store) -> None:
    (dead_id,) = await dead_jobs(rig, (WORK, {}))
    job_id = (await rig.app.client.dead_letters.get(dead_id)).job_id
    body = {"reviewedBy": "admin@example.com", "resolutionNotes": "Fixed upstream API issue"}
    # the spec's form: the path names the job
    response = await rig.api.post(f"/api/queue/dead-letter/{job_id}/review", json=body, headers=ADMIN)
    assert response.status == 200, await response.text()
    letter = await response.json()
    assert letter["id"] == dead_id and letter["reviewed"] is True and letter["reviewedBy"] == "admin@example.com"
    assert letter["resolutionNotes"] == "Fixed upstream API issue" and letter["status"] == "open"
    # by the dead letter's own id, explicitly; the last review wins
    path = f"/api/queue/dead-letter/dl-{dead_id}/review"
    again = await rig.api.post(path, json={"reviewedBy": "dave"}, headers=ADMIN)
    assert again.status == 200
    assert (await again.json())["reviewedBy"] == "dave" and (await again.json())["resolutionNotes"] is None
    trail = await db.pool.fetch(
        "SELECT actor, action FROM fleetbox.audit_log WHERE target = $1 ORDER BY id", f"dead:{dead_id}"
    )
    assert [(r["actor"], r["action"]) for r in trail] == [("admin@example.com", "dead.review"), ("dave", "dead.review")]
    # The job's detail carries that history too, notes and all (the terminal UI's Review tab).
    detail = await (await rig.api.get(f"/api/queue/jobs/{job_id}", headers=READ)).json()
    assert [(a["actor"], a["action"], a["details"].get("notes")) for a in detail["operatorActions"]] == [
        ("admin@example.com", "dead.review", "Fixed upstream API issue"),
        ("dave", "dead.review", None),
    ]
    # A caller that names itself (the dashboard's dashboard:<name>, the TUI's operator) is the
    # audit log's actor, as for a retry or discard; the reviewer it typed is in the details.
    # Found from outside: reviewedBy alone put any name on the audit entry.
    named = await rig.api.post(
        path, json={"reviewedBy": "carol@example.com"}, headers={**ADMIN, "x-admin-actor": "dashboard:alice"}
    )
    assert named.status == 200 and (await named.json())["reviewedBy"] == "carol@example.com"
    last = await db.pool.fetchrow(
        "SELECT actor, details FROM fleetbox.audit_log WHERE target = $1 ORDER BY id DESC LIMIT 1", f"dead:{dead_id}"
    )
    assert last["actor"] == "dashboard:alice" and last["details"]["reviewed_by"] == "carol@example.com"


async def crossed(rig: Rig, db: Store) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two dead letters whose ids cross: B's own id is A's job id. Returns (job, dead) of A and B."""
    await db.pool.execute("ALTER TABLE fleetbox.jobs ALTER COLUMN id RESTART WITH 500")
    (dead_a,) = await dead_jobs(rig, (WORK, {}))
    job_a = (await rig.app.client.dead_letters.get(dead_a)).job_id
    await db.pool.execute(f"ALTER TABLE fleetbox.dead_letters ALTER COLUMN id RESTART WITH {job_a}")
    (dead_b,) = await dead_jobs(rig, (WORK, {}))
    job_b = (await rig.app.client.dead_letters.get(dead_b)).job_id
    assert dead_b == job_a and job_b != dead_a and dead_a != job_a
    return (job_a, dead_a), (job_b, dead_b)


@pytest.mark.parametrize("action", ["review", "retry", "discard"])
async def test_a_bare_path_id_is_the_job_id_even_when_it_is_also_a_dead_letter_id(
    rig: Rig, db: Store, action: str
) -> None:
    (job_a, dead_a), (_job_b, dead_b) = await crossed(rig, db)
    body = {"reviewedBy": "erin"} if action == "review" else None
    response = await rig.api.post(f"/api/queue/dead-letter/{job_a}/{action}", json=body, headers=ADMIN)
    assert response.status == 200, await response.text()
    a, b = [await rig.app.client.dead_letters.get(d) for d in (dead_a, dead_b)]
    changed = {
        "review": lambda d: d.reviewed,
        "retry": lambda d: d.status.value == "retried",
        "discard": lambda d: d.status.value == "discarded",
    }[action]
    assert changed(a) and not changed(b)
    # dl-<id> names B by its own id (the number that is A's job id)
    response = await rig.api.post(f"/api/queue/dead-letter/dl-{dead_b}/{action}", json=body, headers=ADMIN)
    assert response.status == 200, await response.text()
    assert changed(await rig.app.client.dead_letters.get(dead_b))


@pytest.mark.parametrize(
    ("ref", "body", "status", "field"),
    [
        ("{dead}", {}, 400, "reviewedBy"),
        ("{dead}", {"reviewedBy": "   "}, 400, "reviewedBy"),
        ("{dead}", {"reviewedBy": 7}, 400, "reviewedBy"),
        ("{dead}", {"reviewedBy": "x" * 201}, 400, "reviewedBy"),
        ("{dead}", {"reviewedBy": "a", "resolutionNotes": "n" * 10_001}, 400, "resolutionNotes"),
        ("{dead}", {"reviewedBy": "a", "resolutionNotes": ""}, 400, "resolutionNotes"),
        ("{dead}", {"reviewedBy": "a", "notes": "typo"}, 400, "body"),
        ("{dead}", {"reviewedBy": "a\u0000b"}, 400, "reviewedBy"),
        ("987654", {"reviewedBy": "a"}, 404, None),
        ("dl-987654", {"reviewedBy": "a"}, 404, None),
        ("job-987654", {"reviewedBy": "a"}, 400, "jobId"),
        ("job-{job}", {"reviewedBy": "a"}, 400, "jobId"),
        ("abc", {"reviewedBy": "a"}, 400, "jobId"),
        ("dl-abc", {"reviewedBy": "a"}, 400, "jobId"),
        ("dl-", {"reviewedBy": "a"}, 400, "jobId"),
        ("0", {"reviewedBy": "a"}, 400, "jobId"),
        ("1" * 19, {"reviewedBy": "a"}, 400, "jobId"),
        ("dl-" + "1" * 19, {"reviewedBy": "a"}, 400, "jobId"),
    ],
)
async def test_review_errors(
    rig: Rig, db: Store, ref: str, body: dict[str, Any], status: int, field: str | None
) -> None:
    (dead_id,) = await dead_jobs(rig, (WORK, {}))
    job_id = (await rig.app.client.dead_letters.get(dead_id)).job_id
    path = ref.format(dead=f"dl-{dead_id}", job=job_id)
    response = await rig.api.post(f"/api/queue/dead-letter/{path}/review", json=body, headers=ADMIN)
    assert response.status == status, await response.text()
    assert (await response.json())["error"].get("field") == field
    assert (await rig.app.client.dead_letters.get(dead_id)).reviewed_at is None
    assert await db.pool.fetchval("SELECT count(*) FROM fleetbox.audit_log") == 0


async def test_retry_and_discard_one_dead_letter(rig: Rig) -> None:
    first, second = await dead_jobs(rig, (WORK, {}), (WORK, {}))
    retried = await rig.api.post(f"/api/queue/dead-letter/dl-{first}/retry", headers=ADMIN)
    assert retried.status == 200
    body = await retried.json()
    assert body["deadLetterId"] == first
    job = await rig.app.client.get_job(body["jobId"])
    assert job.queue == WORK and job.dead_letter_id == first
    for action in ("retry", "discard"):
        response = await rig.api.post(f"/api/queue/dead-letter/dl-{first}/{action}", headers=ADMIN)
        assert response.status == 409, action
        assert (await response.json())["error"]["code"] == "conflict"

    job_of_second = (await rig.app.client.dead_letters.get(second)).job_id
    discarded = await rig.api.post(f"/api/queue/dead-letter/{job_of_second}/discard", headers=ADMIN)
    assert discarded.status == 200
    letter = await discarded.json()
    assert letter["id"] == second and letter["status"] == "discarded" and letter["discardedAt"] is not None
    for action in ("retry", "discard"):
        assert (await rig.api.post(f"/api/queue/dead-letter/dl-{second}/{action}", headers=ADMIN)).status == 409
    for ref in ("424242", "dl-424242"):
        assert (await rig.api.post(f"/api/queue/dead-letter/{ref}/discard", headers=ADMIN)).status == 404
        assert (await rig.api.post(f"/api/queue/dead-letter/{ref}/retry", headers=ADMIN)).status == 404


async def test_bulk_retry_checks_the_count_under_lock_and_changes_nothing_on_a_mismatch(rig: Rig, db: Store) -> None:
    ids = await dead_jobs(rig, (WORK, {}), (WORK, {}), (WORK, {}), (OTHER, {}))
    await rig.app.client.dead_letters.review(ids[0], reviewed_by="erin")
    await rig.app.client.set_paused(WORK, True)  # retried jobs wait (run, they would fail again)
    jobs_before = await db.pool.fetchval("SELECT count(*) FROM fleetbox.jobs")
    audit_before = await db.pool.fetchval("SELECT count(*) FROM fleetbox.audit_log")

    mismatch = await rig.api.post(
        "/api/queue/dead-letter/retry", json={"queue": WORK, "expectedCount": 2}, headers=ADMIN
    )
    assert mismatch.status == 409
    assert "3 open dead letters match the filter, not the expected 2" in (await mismatch.json())["error"]["message"]
    assert await db.pool.fetchval("SELECT count(*) FROM fleetbox.jobs") == jobs_before
    assert await db.pool.fetchval("SELECT count(*) FROM fleetbox.audit_log") == audit_before
    assert {(await rig.app.client.dead_letters.get(i)).status.value for i in ids} == {"open"}

    # the unreviewed ones of the work queue
    filtered = {"queue": WORK, "reviewed": False, "errorClass": "permanent", "expectedCount": 2}
    response = await rig.api.post(
        "/api/queue/dead-letter/retry", json=filtered, headers={**ADMIN, "x-admin-actor": "frank"}
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["matched"] == 2 and body["skipped"] == []
    assert sorted(r["deadLetterId"] for r in body["retried"]) == sorted(ids[1:3])
    for r in body["retried"]:
        letter = await rig.app.client.dead_letters.get(r["deadLetterId"])
        assert letter.status.value == "retried" and letter.retried_job_id == r["jobId"]
        assert (await rig.app.client.get_job(r["jobId"])).dead_letter_id == r["deadLetterId"]
    trail = await db.pool.fetch("SELECT actor, action, target FROM fleetbox.audit_log WHERE actor = 'frank'")
    assert sorted(r["target"] for r in trail) == sorted(f"dead:{i}" for i in ids[1:3])
    assert {r["action"] for r in trail} == {"dead.retry"}
    # nothing left that matches: expecting 0 is a successful no-op
    empty = await rig.api.post("/api/queue/dead-letter/retry", json={**filtered, "expectedCount": 0}, headers=ADMIN)
    assert await empty.json() == {"matched": 0, "retried": [], "skipped": []}


async def test_bulk_retry_leaves_a_dead_letter_open_when_its_singleton_key_is_taken(rig: Rig) -> None:
    # one after the other: while the first job lives, a second enqueue with its key returns it
    ids = [
        *await dead_jobs(rig, (WORK, {"singleton_key": "k1"})),
        *await dead_jobs(rig, (WORK, {"singleton_key": "k1"})),
    ]
    assert len(set(ids)) == 2
    await rig.app.client.set_paused(WORK, True)  # the retried job keeps the key while it waits
    response = await rig.api.post(
        "/api/queue/dead-letter/retry", json={"queue": WORK, "expectedCount": 2}, headers=ADMIN
    )
    assert response.status == 200
    body = await response.json()
    assert body["matched"] == 2 and len(body["retried"]) == 1 and len(body["skipped"]) == 1
    assert {body["retried"][0]["deadLetterId"], body["skipped"][0]} == set(ids)
    assert (await rig.app.client.dead_letters.get(body["skipped"][0])).status.value == "open"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({}, 400, "expectedCount"),
        ({"expectedCount": -1}, 400, "expectedCount"),
        ({"expectedCount": 10_001}, 400, "expectedCount"),
        ({"expectedCount": "3"}, 400, "expectedCount"),
        ({"expectedCount": 1, "reviewed": "yes"}, 400, "reviewed"),
        ({"expectedCount": 1, "queue": ""}, 400, "queue"),
        ({"expectedCount": 1, "errorClass": 5}, 400, "errorClass"),
        ({"expectedCount": 1, "limit": 5}, 400, "body"),
        ({"expectedCount": 1, "queue": "no-such"}, 404, "queue"),
    ],
)
async def test_bulk_retry_body_is_checked(api: Api, body: dict[str, Any], status: int, field: str) -> None:
    response = await api.post("/api/queue/dead-letter/retry", json=body, headers=ADMIN)
    assert response.status == status
    assert (await response.json())["error"]["field"] == field


async def test_bulk_retry_refuses_more_than_ten_thousand_at_once(api: Api, db: Store) -> None:
    await db.pool.execute(
        """INSERT INTO fleetbox.dead_letters (job_id, queue, priority, data, error_class, error, attempts, history,
                                             job_created_at)
           SELECT i, 'sync', 5, '{}', 'permanent', 'x', 1, '[]', now() FROM generate_series(1, 10001) i"""
    )
    response = await api.post("/api/queue/dead-letter/retry", json={"expectedCount": 10_000}, headers=ADMIN)
    assert response.status == 409
    assert "more than 10000" in (await response.json())["error"]["message"]
    assert await db.pool.fetchval("SELECT count(*) FROM fleetbox.dead_letters WHERE status = 'open'") == 10_001
