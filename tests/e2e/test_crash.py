"""An appliance killed with SIGKILL mid-job: another one runs the job once its lease expires."""

from __future__ import annotations

import datetime as dt
import signal
from collections.abc import Callable
from pathlib import Path

import asyncpg

from fleetbox.client import Client
from fleetbox.models import JobState, Outcome
from tests.conftest import wait_for
from tests.e2e.conftest import E2E_APPLIANCE, FleetboxProcess, log_entries, write_config

QUEUE = "e2e-crash"


async def test_a_job_whose_appliance_is_killed_runs_once_elsewhere_after_the_lease(
    start_appliance: Callable[..., FleetboxProcess],
    client: Client,
    pg: asyncpg.Connection,
    tmp_path: Path,
    log_dir: Path,
) -> None:
    lease = E2E_APPLIANCE["lease_seconds"]
    config = write_config(
        tmp_path / "fleetbox.e2e.toml",
        queues={QUEUE: {"tier": "high", "handler": "tests.e2e.handlers:gated"}},
    )
    gate = tmp_path / "gate"

    a = start_appliance("a", config)
    a_worker = (await a.wait_ready())["worker_id"]
    job = await client.enqueue(QUEUE, {"gate": str(gate)})
    await wait_for(lambda: len(log_entries(log_dir, "start", job.id)) == 1, timeout=15)
    assert log_entries(log_dir, "start", job.id)[0]["pid"] == a.pid

    # Let A hold the job past one lease, so only its heartbeats keep the lease alive.
    claimed_at = await pg.fetchval("SELECT claimed_at FROM jobs WHERE id = $1", job.id)

    async def lease_extended() -> bool:
        until = await pg.fetchval("SELECT lease_until FROM jobs WHERE id = $1", job.id)
        return until is not None and until > claimed_at + dt.timedelta(seconds=lease + 0.5)

    await wait_for(lease_extended, timeout=15)

    killed_at = a.signal(signal.SIGKILL)
    assert await a.wait_exit(timeout=10) == -signal.SIGKILL
    row = await pg.fetchrow("SELECT state::text, worker_id, lease_until FROM jobs WHERE id = $1", job.id)
    assert row["state"] == "running" and row["worker_id"] == a_worker
    lease_until = row["lease_until"].timestamp()
    assert lease_until > killed_at, "A's lease had run out before it was killed: nothing was tested"
    assert lease_until <= killed_at + lease + 0.5

    b = start_appliance("b", config)
    b_worker = (await b.wait_ready())["worker_id"]
    gate.touch()  # A is gone; B's attempt may finish as soon as it starts

    async def succeeded() -> bool:
        return (await client.get_job(job.id)).state is JobState.SUCCEEDED

    await wait_for(succeeded, timeout=lease + 20)

    info = await client.get_job(job.id)
    assert [(at.attempt, at.outcome, at.worker_id) for at in info.history] == [
        (1, Outcome.LEASE_EXPIRED, a_worker),
        (2, Outcome.SUCCEEDED, b_worker),
    ]
    lost = info.history[0]
    assert lost.error_class == "lease_expired"
    assert lost.finished_at.timestamp() >= lease_until, "the lease was reaped before it expired"

    starts = log_entries(log_dir, "start", job.id)
    ends = log_entries(log_dir, "end", job.id)
    assert [(e["pid"], e["attempt"]) for e in starts] == [(a.pid, 1), (b.pid, 2)]
    assert [(e["pid"], e["attempt"]) for e in ends] == [(b.pid, 2)], "the handler must complete exactly once"
    b_start = starts[1]["t"]
    assert b_start >= lease_until, "B started the job while A's lease was still alive"
    assert b_start > killed_at

    b.signal(signal.SIGTERM)
    assert await b.wait_exit(timeout=20) == 0
