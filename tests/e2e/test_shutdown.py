"""Graceful shutdown of a real appliance process on SIGTERM and SIGINT."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from fleetbox.client import Client
from fleetbox.models import JobState, Outcome
from tests.conftest import wait_for
from tests.e2e.conftest import FleetboxProcess, log_entries, write_config

QUEUE = "e2e-shutdown"
GRACE = 10.0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_stops_claiming_and_lets_the_running_job_finish(
    sig: signal.Signals,
    start_appliance: Callable[..., FleetboxProcess],
    client: Client,
    tmp_path: Path,
    log_dir: Path,
) -> None:
    config = write_config(
        tmp_path / "fleetbox.e2e.toml",
        queues={QUEUE: {"tier": "medium", "handler": "tests.e2e.handlers:gated"}},
        appliance={"shutdown_grace_seconds": GRACE},
    )
    gate = tmp_path / "gate"
    app = start_appliance("app", config, "--no-migrate")
    await app.wait_ready()
    running = await client.enqueue(QUEUE, {"gate": str(gate)})
    await wait_for(lambda: len(log_entries(log_dir, "start", running.id)) == 1, timeout=15)

    signalled_at = app.signal(sig)
    await app.wait_event("shutdown_waiting", timeout=10)
    # The dispatcher and listener are stopped now: a new job (with its NOTIFY) stays waiting.
    late = await client.enqueue(QUEUE, {"gate": str(gate)})
    assert app.proc.poll() is None, "the process must wait for its running job"
    gate.touch()

    assert await app.wait_exit(timeout=GRACE + 10) == 0, app.describe()
    ends = log_entries(log_dir, "end", running.id)
    assert len(ends) == 1 and ends[0]["t"] < signalled_at + GRACE
    info = await client.get_job(running.id)
    assert info.state is JobState.SUCCEEDED
    assert [h.outcome for h in info.history] == [Outcome.SUCCEEDED]

    waiting = await client.get_job(late.id)
    assert waiting.state is JobState.WAITING and waiting.attempts == 0 and waiting.history == ()
    assert log_entries(log_dir, "start", late.id) == []
    assert app.find_event("appliance_stopped") is not None


async def test_a_job_still_running_after_the_grace_period_is_interrupted_and_recorded(
    start_appliance: Callable[..., FleetboxProcess],
    client: Client,
    tmp_path: Path,
    log_dir: Path,
) -> None:
    grace = 1.0
    config = write_config(
        tmp_path / "fleetbox.e2e.toml",
        queues={QUEUE: {"tier": "low", "handler": "tests.e2e.handlers:gated"}},
        appliance={"shutdown_grace_seconds": grace},
    )
    app = start_appliance("app", config)
    await app.wait_ready()
    job = await client.enqueue(QUEUE, {"gate": str(tmp_path / "never-opened")})
    await wait_for(lambda: len(log_entries(log_dir, "start", job.id)) == 1, timeout=15)

    signalled_at = app.signal(signal.SIGTERM)
    assert await app.wait_exit(timeout=grace + 15) == 0, app.describe()
    assert app.find_event("shutdown_interrupted") is not None

    info = await client.get_job(job.id)
    assert info.state is JobState.RETRYING
    assert log_entries(log_dir, "end", job.id) == []
    [attempt] = info.history
    assert attempt.outcome is Outcome.RETRY
    assert attempt.error_class == "transient" and "interrupted" in (attempt.error or "")
    assert attempt.finished_at.timestamp() >= signalled_at + grace - 0.1
