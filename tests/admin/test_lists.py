"""Lean, bounded lists: rows carry a preview and the size of their payload, the payload itself only
with ``include=payload``; a page ends before 8 MiB and its cursor continues after the last row
sent; a payload that cannot be shown is described, never sent, and never breaks a page."""

from __future__ import annotations

import json
from typing import Any

from fleetbox.client import Client
from fleetbox.store import Store
from tests.admin.conftest import READ, WORK, Api, Rig
from tests.admin.test_dead_letters import dead_jobs

#: a payload of about 1 MB: nine of them do not fit in one 8 MiB page
BIG = 1_000_000 - 100


def text(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


async def get(api: Api, path: str) -> dict[str, Any]:
    response = await api.get(path, headers=READ)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_job_rows_carry_a_preview_and_the_size_and_the_payload_only_on_request(api: Api, client: Client) -> None:
    data = {"text": "é" * 300}
    job = (await client.enqueue("sync", data)).id
    (row,) = (await get(api, "/api/queue/sync/jobs"))["jobs"]
    assert row["id"] == job and row["data"] is None
    assert row["dataPreview"] == text(data)[:200] and row["dataSize"] == len(text(data).encode())
    assert row["dataSize"] > 600 and len(row["dataPreview"]) == 200
    (full,) = (await get(api, "/api/queue/sync/jobs?include=payload"))["jobs"]
    assert full["data"] == data and full["dataSize"] == row["dataSize"]
    # the detail always has it
    assert (await get(api, f"/api/queue/jobs/{job}"))["data"] == data
    bad = await api.get("/api/queue/sync/jobs?include=everything", headers=READ)
    assert bad.status == 400 and (await bad.json())["error"]["field"] == "include"


async def test_dead_letter_rows_are_lean_unless_asked(rig: Rig) -> None:
    (dead_id,) = await dead_jobs(rig, (WORK, {}))
    (row,) = (await get(rig.api, "/api/queue/dead-letter"))["deadLetters"]
    assert row["id"] == dead_id and row["data"] is None
    assert json.loads(row["dataPreview"]) == {"mode": "permanent", "n": 0}
    (full,) = (await get(rig.api, "/api/queue/dead-letter?include=payload"))["deadLetters"]
    assert full["data"] == {"mode": "permanent", "n": 0}
    failed = await get(rig.api, f"/api/queue/{WORK}/failed")
    assert failed["deadLetters"][0]["data"] is None and failed["truncated"] is False
    failed = await get(rig.api, f"/api/queue/{WORK}/failed?include=payload")
    assert failed["deadLetters"][0]["data"] == {"mode": "permanent", "n": 0}


async def test_a_job_page_ends_before_8_mib_and_the_cursor_continues_after_the_last_row(
    api: Api, client: Client
) -> None:
    ids = [(await client.enqueue("sync", {"n": n, "blob": "x" * BIG})).id for n in range(10)]
    seen: list[int] = []
    after: int | None = None
    while True:
        response = await api.get(
            "/api/queue/sync/jobs?include=payload&limit=50" + (f"&after={after}" if after else ""), headers=READ
        )
        assert len(await response.read()) < 8 * 1024 * 1024
        body = await response.json()
        assert body["jobs"] and all(j["data"]["blob"] == "x" * BIG for j in body["jobs"])
        seen += [j["id"] for j in body["jobs"]]
        after = body["nextAfter"]
        if after is None:
            break
        assert after == seen[-1] and len(body["jobs"]) < 10
    assert seen == ids
    # without the payloads the whole list is one small page
    lean = await api.get("/api/queue/sync/jobs?limit=50", headers=READ)
    assert len(await lean.read()) < 64 * 1024 and (await lean.json())["nextAfter"] is None


async def test_a_dead_letter_page_ends_before_8_mib_and_the_cursor_continues(rig: Rig, db: Store) -> None:
    ids = await dead_jobs(rig, *[(WORK, {}) for _ in range(10)])
    await db.pool.execute(
        "UPDATE fleetbox.dead_letters SET data = data || jsonb_build_object('blob', repeat('y', $1))", BIG
    )
    seen: list[int] = []
    before: int | None = None
    while True:
        response = await rig.api.get(
            "/api/queue/dead-letter?include=payload&limit=50" + (f"&before={before}" if before else ""), headers=READ
        )
        assert len(await response.read()) < 8 * 1024 * 1024
        body = await response.json()
        seen += [d["id"] for d in body["deadLetters"]]
        before = body["nextBefore"]
        if before is None:
            break
        assert before == seen[-1] and len(body["deadLetters"]) < 10
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))


async def test_payloads_that_cannot_be_shown_are_described_on_every_list_and_detail(
    api: Api, client: Client, db: Store
) -> None:
    shallow = (await client.enqueue("sync", {"n": 0})).id
    deep = (await client.enqueue("sync", {"n": 1})).id
    deeper = (await client.enqueue("sync", {"n": 2})).id
    # stored around fleetbox's limits, as an old version or a hand-written INSERT could
    for job_id, levels in ((deep, 900), (deeper, 3000)):
        nested = '{"a":' * levels + "1" + "}" * levels
        await db.pool.execute(f"UPDATE fleetbox.jobs SET data = '{nested}'::jsonb WHERE id = $1", job_id)
    for query in ("", "?include=payload"):
        rows = {j["id"]: j for j in (await get(api, f"/api/queue/sync/jobs{query}"))["jobs"]}
        assert set(rows) == {shallow, deep, deeper}
        for job_id in (deep, deeper):
            assert rows[job_id]["dataPreview"].startswith("(payload not shown: ")
            if query:
                assert rows[job_id]["data"]["undecodable"] is True and rows[job_id]["data"]["reason"]
    for job_id in (deep, deeper):
        detail = await get(api, f"/api/queue/jobs/{job_id}")
        assert detail["data"]["undecodable"] is True and "nested" in detail["data"]["reason"]
