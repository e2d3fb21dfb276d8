"""The stream's sampler and the REST calls of the terminal UI read their indexes, never a whole table
(except stream_depth, which counts the hot jobs table as health does and is rationed by its cost).

The data is test_indexes' (a few thousand rows per table, nearly all on one queue, the lists asked
for the rare queue), with audit rows added.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from fleetbox.store import Store
from fleetbox.store.sql import queries
from tests.admin.test_indexes import _scans, filled  # noqa: F401

NOW = dt.datetime.now(dt.UTC)
#: after the fixture's attempts, which all finished at "now": a recent range holds few of them
LATER = NOW + dt.timedelta(minutes=5)

CASES: list[tuple[str, tuple[Any, ...], set[str]]] = [
    ("stream_seconds", (LATER,), {"job_attempts_queue_finished"}),
    ("stream_p95", (LATER, 5000), {"job_attempts_queue_finished"}),
    ("stream_audit_after", (19_900, 1000), {"audit_log_pkey"}),
    ("stream_dead_after", (19_900, 1000), {"dead_letters_pkey"}),
    ("stream_dead_unreviewed", (), {"dead_letters_open_queue", "dead_letters_open"}),
    ("queue_errors", ("sync", NOW - dt.timedelta(hours=1), 100_000), {"job_attempts_failed"}),
    ("dead_letter_list", (None, None, None, None, NOW, 2**62, 51, "x"), {"dead_letters_failed"}),
]


async def test_the_stream_queries_use_their_indexes(filled: Store) -> None:  # noqa: F811
    wrong = []
    async with filled.pool.acquire() as conn:
        await conn.execute(
            """SET search_path = fleetbox;
               INSERT INTO audit_log (actor, action, target) SELECT 'op', 'queue.pause', 'sync'
                 FROM generate_series(1, 20000);
               INSERT INTO jobs_archive (id, queue, priority, state, data, attempts, created_at, run_at,
                                         finished_at, archived_at)
               SELECT 500000 + i, 'sync', 5, 'succeeded', '{}', 1, now(), now(), now(), now()
                 FROM generate_series(1, 20000) i;
               -- operators keep the open dead letters few: most were retried or discarded
               UPDATE dead_letters SET status = 'retried' WHERE id % 100 <> 0;
               ANALYZE audit_log; ANALYZE dead_letters; ANALYZE jobs_archive;"""
        )
        for name, args, indexes in CASES:
            plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {queries()[name]}", *args)
            plan = json.loads(plan) if isinstance(plan, str) else plan
            # queues has a handful of rows; "of None" is a scan of a subquery's result, not a table
            scans = [s for s in _scans(plan[0]["Plan"]) if s not in ("seq scan of queues", "seq scan of None")]
            if any(s.startswith("seq scan") for s in scans) or not indexes & set(scans):
                wrong.append((name, scans))
    assert wrong == [], wrong
