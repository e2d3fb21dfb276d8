"""Two appliance processes on one database, and jobs enqueued from SQL."""

from __future__ import annotations

import itertools
import signal
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import asyncpg

from fleetbox.client import Client, NewJob
from fleetbox.models import JobState, Outcome
from tests.conftest import wait_for
from tests.e2e.conftest import FleetboxProcess, log_entries, read_log, write_config

QUEUE = "e2e-shared"
JOBS = 300


async def test_two_processes_run_every_job_exactly_once(
    start_appliance: Callable[..., FleetboxProcess],
    client: Client,
    pg: asyncpg.Connection,
    tmp_path: Path,
    log_dir: Path,
) -> None:
    config = write_config(
        tmp_path / "fleetbox.e2e.toml",
        queues={QUEUE: {"tier": "high", "handler": "tests.e2e.handlers:record"}},
        pools={"high": 8},
        appliance={"claim_batch": 4},
    )
    apps = [start_appliance(name, config) for name in ("a", "b")]
    for app in apps:
        await app.wait_ready()

    results = await client.enqueue_many(NewJob(queue=QUEUE, data={"n": i, "sleep": 0.005}) for i in range(JOBS))
    ids = {r.id for r in results}
    assert len(ids) == JOBS

    async def all_done() -> bool:
        done = await pg.fetchval("SELECT count(*) FROM jobs_done WHERE queue = $1", QUEUE)
        return bool(done == JOBS)

    await wait_for(all_done, timeout=90)

    assert await pg.fetchval("SELECT count(*) FROM jobs WHERE queue = $1", QUEUE) == 0
    states = await pg.fetch("SELECT state, count(*) FROM jobs_done WHERE queue = $1 GROUP BY state", QUEUE)
    assert {r["state"]: r["count"] for r in states} == {"succeeded": JOBS}
    attempts = await pg.fetch("SELECT job_id, attempt, outcome FROM job_attempts WHERE queue = $1", QUEUE)
    assert sorted(r["job_id"] for r in attempts) == sorted(ids)
    assert {(r["attempt"], r["outcome"]) for r in attempts} == {(1, "succeeded")}

    runs: dict[int, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: {"start": [], "end": []})
    for entry in read_log(log_dir):
        runs[entry["job"]][entry["event"]].append((entry["pid"], entry["t"]))
    assert set(runs) == ids
    overlapping = []
    for job_id, run in runs.items():
        assert len(run["start"]) == 1 and len(run["end"]) == 1, f"job {job_id} ran {run}"
        intervals = sorted(zip(run["start"], run["end"], strict=True), key=lambda se: se[0][1])
        for (_, prev_end), (next_start, _) in itertools.pairwise(intervals):
            if next_start[1] < prev_end[1]:
                overlapping.append(job_id)
        [((start_pid, start_t), (end_pid, end_t))] = intervals
        assert start_pid == end_pid and start_t <= end_t
    assert overlapping == []
    assert {pid for run in runs.values() for pid, _ in run["start"]} <= {app.pid for app in apps}

    for app in apps:
        app.signal(signal.SIGTERM)
    for app in apps:
        assert await app.wait_exit(timeout=20) == 0, app.describe()


async def test_a_job_enqueued_with_the_sql_function_is_run_by_an_appliance(
    start_appliance: Callable[..., FleetboxProcess],
    client: Client,
    dsn: str,
    tmp_path: Path,
    log_dir: Path,
) -> None:
    config = write_config(
        tmp_path / "fleetbox.e2e.toml",
        queues={"e2e-sql": {"tier": "medium", "handler": "tests.e2e.handlers:record"}},
    )
    app = start_appliance("app", config)
    await app.wait_ready()  # the appliance registers its queues at start

    conn = await asyncpg.connect(dsn)  # a plain connection: no fleetbox code, default search_path
    try:
        row = await conn.fetchrow("SELECT * FROM fleetbox.enqueue('e2e-sql', '{\"x\":1}'::jsonb)")
    finally:
        await conn.close()
    assert row["created"] is True
    job_id = row["job_id"]

    async def succeeded() -> bool:
        return (await client.get_job(job_id)).state is JobState.SUCCEEDED

    await wait_for(succeeded, timeout=20)
    [start] = log_entries(log_dir, "start", job_id)
    [end] = log_entries(log_dir, "end", job_id)
    assert start["pid"] == end["pid"] == app.pid
    assert start["data"] == {"x": 1} and start["queue"] == "e2e-sql"
    info = await client.get_job(job_id)
    assert info.data == {"x": 1}
    assert [h.outcome for h in info.history] == [Outcome.SUCCEEDED]

    app.signal(signal.SIGTERM)
    assert await app.wait_exit(timeout=20) == 0, app.describe()
