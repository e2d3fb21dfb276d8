"""The embedded default: with no database configured, fleetbox runs its own PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetbox.store.sql import migrations
from tests.e2e.conftest import CONFIG_VARS, child_env, fleetbox_script

ALL_MIGRATIONS = [v for v, _, _ in migrations()]


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """The embedded server's home; a server left running by a failed command is stopped."""
    path = tmp_path / "data"
    yield path
    pidfile = path / "pgdata" / "postmaster.pid"
    if pidfile.exists():
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGINT)  # fast shutdown


def test_with_no_database_configured_the_cli_uses_an_embedded_postgresql(tmp_path: Path, data_dir: Path) -> None:
    env = child_env(tmp_path)
    assert not any(k.startswith("FLEETBOX_") or k in CONFIG_VARS for k in env)

    def fleetbox(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [fleetbox_script(), *args, "--data-dir", str(data_dir)], cwd=tmp_path, env=env,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert f"embedded PostgreSQL in {data_dir / 'pgdata'}" in result.stderr, result.stderr
        return result

    assert f"applied migrations {ALL_MIGRATIONS}" in fleetbox("migrate").stdout
    job_id = int(fleetbox("enqueue", "sync", "--data", "{}").stdout)
    depth = {d["queue"]: d for d in json.loads(fleetbox("queues", "--json").stdout)}
    assert depth["sync"]["ready"] == 1 and job_id >= 1
    assert (data_dir / "pgdata" / "PG_VERSION").is_file()
    # Each command's server stopped when the command exited (pgserver's "stop" cleanup).
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()
