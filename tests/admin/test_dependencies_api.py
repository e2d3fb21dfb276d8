"""GET /api/queue/jobs/{jobId}/dependencies: a job's parents and children over HTTP (what the TUI
and the dashboard draw), through the service layer's one read of the graph."""

from __future__ import annotations

from tests.admin.conftest import ADMIN, READ, Api


async def _enqueue(api: Api, queue: str, after: list[int] | None = None, on_failure: str | None = None) -> int:
    body: dict[str, object] = {"data": {"n": 1}}
    if after:
        body["dependsOn"] = after
    if on_failure:
        body["onFailure"] = on_failure
    response = await api.post(f"/api/queue/{queue}/jobs", json=body, headers=ADMIN)
    assert response.status == 201, await response.text()
    return int((await response.json())["id"])


async def test_parents_and_children_where_each_is_now(api: Api) -> None:
    upload = await _enqueue(api, "attachments")
    mail = await _enqueue(api, "outlook-outbound", [upload], "hold")
    report = await _enqueue(api, "sync", [mail])
    answer = await api.get(f"/api/queue/jobs/{mail}/dependencies", headers=READ)
    assert answer.status == 200, await answer.text()
    assert await answer.json() == {
        "jobId": mail,
        "parents": [{"jobId": upload, "state": "waiting", "edge": None, "step": None}],
        "children": [{"jobId": report, "state": "blocked", "edge": None, "step": None}],
        "hasResult": False,
        "result": None,
        "cancellation": None,
    }
    alone = await (await api.get(f"/api/queue/jobs/{upload}/dependencies", headers=READ)).json()
    assert [c["jobId"] for c in alone["children"]] == [mail] and alone["parents"] == []


async def test_a_cancelled_job_says_why_and_bad_ids_are_refused(api: Api) -> None:
    parent = await _enqueue(api, "webhooks")
    child = await _enqueue(api, "sync", [parent])
    cleared = await api.delete("/api/queue/webhooks/clear?confirm=yes", headers={**ADMIN, "x-admin-actor": "alice"})
    assert cleared.status == 200
    doc = await (await api.get(f"/api/queue/jobs/{child}/dependencies", headers=READ)).json()
    assert doc["parents"] == [{"jobId": parent, "state": "cleared", "edge": "failed", "step": None}]
    cancellation = doc["cancellation"]
    assert (cancellation["parentId"], cancellation["actor"]) == (parent, None)
    assert f"job {parent}" in cancellation["reason"]

    missing = await api.get("/api/queue/jobs/987654321/dependencies", headers=READ)
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
    bad = await api.get("/api/queue/jobs/abc/dependencies", headers=READ)
    assert bad.status == 400
    assert (await api.get(f"/api/queue/jobs/{child}/dependencies")).status == 401  # no key
