"""Every list of the admin API is served by its index, never by a scan of a whole table.

The data: a few thousand rows per table, nearly all of them on one queue, and the lists asked for
the rare queue (the case where a plan without the right index walks the whole table).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from fleetbox.store import Store
from fleetbox.store.sql import queries

NOW = dt.datetime.now(dt.UTC)
TOP = (dt.datetime.max.replace(tzinfo=dt.UTC), 2**63 - 1)

#: (query, parameters, the indexes of which the plan must use one)
CASES: list[tuple[str, tuple[Any, ...], set[str]]] = [
    ("admin_jobs_waiting", ("sync", "waiting", NOW, 0, 0, 51), {"jobs_waiting_queue"}),
    ("admin_jobs_waiting", ("sync", "scheduled", NOW, 0, 0, 51), {"jobs_waiting_queue"}),
    ("admin_jobs_waiting", ("sync", "pending", NOW, 100, 10, 51), {"jobs_waiting_queue"}),
    ("admin_jobs_retrying", ("sync", 0, 0, 51), {"jobs_retrying_queue"}),
    ("admin_jobs_running", ("sync", 0, 0, 51), {"jobs_lease"}),
    ("admin_jobs_live", ("sync", NOW, 0, 0, 51), {"jobs_waiting_queue"}),
    ("admin_jobs_succeeded", ("sync", *TOP, 0, 51), {"jobs_done_queue_finished"}),
    ("admin_jobs_unsucceeded", ("sync", "dead", *TOP, 0, 51), {"jobs_done_unsucceeded"}),
    ("admin_jobs_unsucceeded", ("sync", "cleared", NOW, 5, 0, 51), {"jobs_done_unsucceeded"}),
    ("admin_failed_attempts", ("sync", 51), {"job_attempts_failed"}),
    ("dead_letter_list", (None, None, None, None, *TOP, 51, None), {"dead_letters_failed"}),
    ("dead_letter_list", (None, True, None, None, NOW, 10, 51, None), {"dead_letters_failed"}),
    ("dead_letter_list", ("sync", None, None, None, *TOP, 51, None), {"dead_letters_queue", "dead_letters_failed"}),
    ("admin_dead_letters_open_of_queue", ("sync", 51), {"dead_letters_queue", "dead_letters_open_queue"}),
    ("admin_job_done_cursor", (1, "sync", "succeeded"), {"jobs_done_pkey"}),
    ("admin_dead_letter_cursor", (1,), {"dead_letters_pkey"}),
]


@pytest.fixture
async def filled(db: Store) -> Store:
    """A few thousand rows in every table the lists read, analysed."""
    await db.pool.execute(
        """
        SET search_path = fleetbox;
        INSERT INTO jobs (queue, tier, priority, run_at, data, attempt, state, lease_until, worker_id)
        SELECT CASE WHEN i % 100 = 0 THEN 'sync' ELSE 'attachments' END, 3, 5,
               now() + (i % 2) * interval '1 hour', '{}', i % 5 / 4,
               CASE WHEN i % 50 = 1 THEN 'running'::job_state ELSE 'waiting' END,
               CASE WHEN i % 50 = 1 THEN now() + interval '1 minute' END, NULL
          FROM generate_series(1, 20000) i;
        INSERT INTO jobs_done (id, queue, priority, state, data, attempts, created_at, run_at, finished_at)
        SELECT 100000 + i, CASE WHEN i % 100 = 0 THEN 'sync' ELSE 'attachments' END, 5,
               (ARRAY['succeeded', 'dead', 'cleared'])[1 + i % 3], '{}', 1, now(), now(),
               now() - i * interval '1 second'
          FROM generate_series(1, 20000) i;
        INSERT INTO job_attempts (job_id, attempt, queue, started_at, finished_at, duration_ms, outcome)
        SELECT 100000 + i, 1, CASE WHEN i % 100 = 0 THEN 'sync' ELSE 'attachments' END, now(), now(), 1,
               CASE WHEN i % 4 = 0 THEN 'dead' ELSE 'succeeded' END
          FROM generate_series(1, 20000) i;
        INSERT INTO dead_letters (job_id, queue, priority, data, error_class, error, attempts, history,
                                  job_created_at, failed_at, reviewed_at)
        SELECT 200000 + i, CASE WHEN i % 100 = 0 THEN 'sync' ELSE 'attachments' END, 5, '{}', 'permanent',
               'x', 1, '[]', now(), now() - i * interval '1 second', CASE WHEN i % 10 = 0 THEN now() END
          FROM generate_series(1, 20000) i;
        ANALYZE;
        """
    )
    return db


def _scans(node: dict[str, Any]) -> list[str]:
    found = (
        [node.get("Index Name") or f"seq scan of {node.get('Relation Name')}"] if "Scan" in node["Node Type"] else []
    )
    for child in node.get("Plans", []):
        found += _scans(child)
    return found


async def test_every_list_uses_its_index(filled: Store) -> None:
    wrong = []
    async with filled.pool.acquire() as conn:
        await conn.execute("SET search_path = fleetbox")
        for name, args, indexes in CASES:
            plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {queries()[name]}", *args)
            plan = json.loads(plan) if isinstance(plan, str) else plan
            scans = _scans(plan[0]["Plan"])
            if any(s.startswith("seq scan") for s in scans) or not indexes & set(scans):
                wrong.append((name, args[:2], scans))
    assert wrong == []
