"""The REST calls the terminal UI makes besides the stream: dead-letter filters with totals and
keyset paging, bulk retry by the same filter, and a queue's recent errors by class."""

from __future__ import annotations

import datetime as dt

import pytest

from fleetbox.service.dead_letters import COUNT_CAP
from fleetbox.store import Store
from tests.admin.conftest import ADMIN, READ, Api

NOW = dt.datetime.now(dt.UTC)


async def letters(db: Store, *specs: tuple[str, str, str]) -> list[int]:
    """Dead letters (queue, error class, error message), the first the oldest; their ids."""
    ids = []
    for n, (queue, error_class, error) in enumerate(specs):
        ids.append(
            await db.pool.fetchval(
                """INSERT INTO fleetbox.dead_letters (job_id, queue, priority, data, error_class, error, attempts,
                                                       history, job_created_at, failed_at)
                   VALUES ($1, $2, 5, '{}', $3, $4, 1, '[]', now(), $5) RETURNING id""",
                10_000 + n,
                queue,
                error_class,
                error,
                NOW - dt.timedelta(seconds=len(specs) - n),
            )
        )
    return ids


async def page(api: Api, query: str) -> dict[str, object]:
    response = await api.get(f"/api/queue/dead-letter?{query}", headers=READ)
    assert response.status == 200, await response.text()
    body: dict[str, object] = await response.json()
    return body


async def test_dead_letters_filter_by_text_class_queue_and_review_with_totals(api: Api, db: Store) -> None:
    ids = await letters(
        db,
        ("sync", "permanent", "Mailbox NOT found"),
        ("sync", "transient", "socket timeout"),
        ("attachments", "permanent", "mailbox quota exceeded"),
        ("sync", "permanent", "bad payload"),
    )
    await db.pool.execute("UPDATE fleetbox.dead_letters SET reviewed_at = now() WHERE id = $1", ids[3])

    def listed(body: dict[str, object]) -> list[int]:
        return [d["id"] for d in body["deadLetters"]]  # type: ignore[attr-defined]

    body = await page(api, "q=mailbox")
    assert listed(body) == [ids[2], ids[0]] and (body["total"], body["totalCapped"]) == (2, False)
    body = await page(api, "q=MAILBOX&queue=sync")
    assert listed(body) == [ids[0]] and body["total"] == 1
    body = await page(api, "errorClass=permanent&reviewed=false")
    assert listed(body) == [ids[2], ids[0]] and body["total"] == 2
    body = await page(api, "q=no such text")
    assert (listed(body), body["total"], body["nextBefore"]) == ([], 0, None)
    # Keyset paging through a filter: every page has the same total, the pages never overlap.
    first = await page(api, "errorClass=permanent&limit=2")
    assert listed(first) == [ids[3], ids[2]] and first["total"] == 3 and first["nextBefore"] == ids[2]
    second = await page(api, f"errorClass=permanent&limit=2&before={ids[2]}")
    assert listed(second) == [ids[0]] and second["total"] == 3 and second["nextBefore"] is None


async def test_the_total_stops_counting_at_the_cap(api: Api, db: Store) -> None:
    await db.pool.execute(
        """INSERT INTO fleetbox.dead_letters (job_id, queue, priority, data, error_class, error, attempts, history,
                                              job_created_at)
           SELECT i, 'sync', 5, '{}', 'permanent', 'x', 1, '[]', now() FROM generate_series(1, $1::int) i""",
        COUNT_CAP + 5,
    )
    body = await page(api, "limit=1")
    assert (body["total"], body["totalCapped"]) == (COUNT_CAP, True)


@pytest.mark.parametrize(("query", "field"), [("q=", "q"), ("q=" + "x" * 201, "q"), ("q=a&q=b", "q")])
async def test_a_bad_text_filter_names_it(api: Api, query: str, field: str) -> None:
    response = await api.get(f"/api/queue/dead-letter?{query}", headers=READ)
    assert response.status == 400
    assert (await response.json())["error"]["field"] == field


async def test_bulk_retry_takes_the_text_filter_too(api: Api, db: Store) -> None:
    ids = await letters(db, ("sync", "permanent", "Mailbox not found"), ("sync", "permanent", "bad payload"))
    response = await api.post("/api/queue/dead-letter/retry", json={"q": "mailbox", "expectedCount": 2}, headers=ADMIN)
    assert response.status == 409  # one matches, not two: nothing retried
    response = await api.post("/api/queue/dead-letter/retry", json={"q": "mailbox", "expectedCount": 1}, headers=ADMIN)
    assert response.status == 200, await response.text()
    assert [r["deadLetterId"] for r in (await response.json())["retried"]] == [ids[0]]
    statuses = await db.pool.fetch("SELECT id, status FROM fleetbox.dead_letters ORDER BY id")
    assert [(r["id"], r["status"]) for r in statuses] == [(ids[0], "retried"), (ids[1], "open")]


async def test_recent_errors_are_grouped_by_class(api: Api, db: Store) -> None:
    await db.pool.executemany(
        """INSERT INTO fleetbox.job_attempts (job_id, attempt, queue, started_at, finished_at, duration_ms, outcome,
                                               error_class, error)
           VALUES ($1, 1, $2, $3, $3, 5, $4, $5, $6)""",
        [
            (1, "sync", NOW - dt.timedelta(minutes=5), "retry", "transient", "timeout a"),
            (2, "sync", NOW - dt.timedelta(minutes=2), "retry", "transient", "timeout b"),
            (3, "sync", NOW - dt.timedelta(minutes=1), "dead", "permanent", "bad payload"),
            (4, "sync", NOW - dt.timedelta(minutes=1), "succeeded", None, None),
            (5, "sync", NOW - dt.timedelta(minutes=3), "lease_expired", None, None),
            (6, "sync", NOW - dt.timedelta(hours=3), "retry", "rate_limit", "429"),
            (7, "attachments", NOW - dt.timedelta(minutes=1), "retry", "transient", "elsewhere"),
        ],
    )
    response = await api.get("/api/queue/sync/errors", headers=READ)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["queue"], body["minutes"]) == ("sync", 60)
    assert [(e["errorClass"], e["count"], e["lastMessage"]) for e in body["errors"]] == [
        ("transient", 2, "timeout b"),
        ("permanent", 1, "bad payload"),
        ("lease_expired", 1, None),
    ]
    last = dt.datetime.fromisoformat(body["errors"][0]["lastAt"])
    assert abs((last - (NOW - dt.timedelta(minutes=2))).total_seconds()) < 0.01
    body = await (await api.get("/api/queue/sync/errors?minutes=240", headers=READ)).json()
    assert [e["errorClass"] for e in body["errors"]][-1] == "rate_limit"
    for query, status, field in (("minutes=0", 400, "minutes"), ("minutes=1441", 400, "minutes")):
        response = await api.get(f"/api/queue/sync/errors?{query}", headers=READ)
        assert response.status == status and (await response.json())["error"]["field"] == field
    response = await api.get("/api/queue/nope/errors", headers=READ)
    assert response.status == 404
