"""SIGHUP makes a running appliance read its config file again."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import FleetboxProcess, write_config


async def test_sighup_applies_a_valid_file_and_keeps_running_on_a_broken_one(
    start_appliance: Callable[..., FleetboxProcess], tmp_path: Path
) -> None:
    path = tmp_path / "fleetbox.e2e.toml"
    queues = {"e2e-reload": {"tier": "low", "handler": "tests.e2e.handlers:record"}}
    write_config(path, queues=queues, pools={"low": 1})
    app = start_appliance("app", path, "--no-migrate")
    await app.wait_ready()

    path.write_text(path.read_text() + "\n[broken\n")
    app.signal(signal.SIGHUP)
    failed = await app.wait_event("config_reload_failed", timeout=15)
    assert "TOML" in failed["error"]

    write_config(path, queues=queues, pools={"low": 4})
    app.signal(signal.SIGHUP)
    await app.wait_event("config_reloaded", timeout=15)

    assert app.proc.poll() is None  # still running after both
    app.signal(signal.SIGTERM)
    assert await app.wait_exit(timeout=30) == 0
