"""Fixtures for end-to-end tests: real ``fleetbox`` processes against the test database.

Appliances run as ``python -m fleetbox run`` with a TOML config written by the test; their
handlers (``tests/e2e/handlers.py``) log each start and finish to ``$E2E_LOG_DIR``. Readiness
and shutdown are read from the JSON log lines on the process's stderr (kept in a file, so a
full pipe can never stall the child). Every process a test starts is killed at teardown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import asyncpg
import pytest

from tests.conftest import wait_for

REPO = Path(__file__).resolve().parents[2]

#: Variables that configure fleetbox; a child process must see only what the test gives it.
CONFIG_VARS = (
    "DATABASE_URL",
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_USER",
    "DB_PASSWORD",
    "ADMIN_KEY",
    "QUEUE_ARCHIVE_HOURS",
    "QUEUE_DELETE_DAYS",
    "QUEUE_MONITOR_INTERVAL",
)

#: Short intervals so that lease expiry and shutdown happen within seconds.
E2E_APPLIANCE: dict[str, Any] = {
    "lease_seconds": 2.0,
    "heartbeat_seconds": 0.5,
    "poll_seconds": 0.2,
    "reap_seconds": 0.5,
    "shutdown_grace_seconds": 10.0,
    "completion_flush_ms": 1.0,
}


def child_env(log_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment for a fleetbox child: no fleetbox settings leak in from ours."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FLEETBOX_") and k not in CONFIG_VARS and k != "E2E_LOG_DIR"
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    if log_dir is not None:
        env["E2E_LOG_DIR"] = str(log_dir)
    env.update(extra)
    return env


def fleetbox_script() -> str:
    """The installed ``fleetbox`` console script of the interpreter running the tests."""
    script = Path(sys.executable).parent / "fleetbox"
    assert script.is_file(), f"the fleetbox console script is not installed next to {sys.executable}"
    return str(script)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    raise TypeError(f"cannot write {value!r} as TOML")


def toml_text(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """``{"appliance": {...}, 'queues."e2e"': {...}}`` as TOML (flat tables only)."""
    lines: list[str] = []
    for table, values in sections.items():
        lines.append(f"[{table}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    return "\n".join(lines)


def write_config(
    path: Path,
    *,
    queues: Mapping[str, Mapping[str, Any]],
    appliance: Mapping[str, Any] | None = None,
    pools: Mapping[str, Any] | None = None,
) -> Path:
    """A TOML config with the e2e intervals, the given custom queues and pool sizes."""
    sections: dict[str, Mapping[str, Any]] = {
        "appliance": {**E2E_APPLIANCE, "data_dir": str(path.parent / "data"), **(appliance or {})},
        # an ephemeral port (logged as the event admin_listening): processes never compete for 8080;
        # no control socket, since processes started from one config share its data_dir
        "admin": {"port": 0, "socket_enabled": False},
        # no Graph processors (nor their simulator) where a test does not use them
        "graph": {"enabled": False},
    }
    if pools:
        sections["pools"] = pools
    for name, settings in queues.items():
        sections[f'queues."{name}"'] = settings
    path.write_text(toml_text(sections), encoding="utf-8")
    return path


def read_log(log_dir: Path) -> list[dict[str, Any]]:
    """Every start/finish line the handlers wrote, in time order."""
    entries = []
    for path in sorted(log_dir.glob("*.log")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entries.append(json.loads(line))
    return sorted(entries, key=lambda e: e["t"])


def log_entries(log_dir: Path, event: str, job_id: int | None = None) -> list[dict[str, Any]]:
    return [e for e in read_log(log_dir) if e["event"] == event and (job_id is None or e["job"] == job_id)]


@dataclass
class FleetboxProcess:
    """A running ``fleetbox`` child with its output in files.

    The ``wait_*`` methods take a deadline (``timeout``) like ``tests.conftest.wait_for``: they
    poll a condition, and the deadline is what turns a hang into a failure.
    """

    name: str
    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    files: list[IO[bytes]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """The JSON log records written so far (other stderr lines are skipped)."""
        found = []
        for line in self.stderr().splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line still being written
        return found

    def find_event(self, event: str) -> dict[str, Any] | None:
        return next((e for e in self.events() if e.get("event") == event), None)

    def describe(self) -> str:
        return f"{self.name} (pid {self.pid}, exit {self.proc.poll()}); stderr:\n{self.stderr()[-4000:]}"

    async def wait_event(self, event: str, *, timeout: float = 30.0) -> dict[str, Any]:  # noqa: ASYNC109
        """Wait for a log record with this event name; fail at once if the process exits."""

        def seen() -> bool:
            if self.find_event(event) is not None:
                return True
            if self.proc.poll() is not None:
                raise AssertionError(f"{event!r} never logged before the process exited: {self.describe()}")
            return False

        try:
            await wait_for(seen, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.describe()}") from None
        found = self.find_event(event)
        assert found is not None
        return found

    async def wait_ready(self, *, timeout: float = 30.0) -> dict[str, Any]:  # noqa: ASYNC109
        return await self.wait_event("appliance_started", timeout=timeout)

    async def wait_exit(self, *, timeout: float = 30.0) -> int:  # noqa: ASYNC109
        try:
            await wait_for(lambda: self.proc.poll() is not None, timeout=timeout)
        except AssertionError:
            raise AssertionError(f"the process did not exit within {timeout}s: {self.describe()}") from None
        return self.proc.returncode

    def signal(self, sig: signal.Signals) -> float:
        """Send a signal; returns the wall-clock time it was sent."""
        sent = time.time()
        self.proc.send_signal(sig)
        return sent

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        for f in self.files:
            f.close()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    """Where the e2e handlers write their start/finish lines."""
    path = tmp_path / "handler-log"
    path.mkdir()
    return path


@pytest.fixture
def spawn(tmp_path: Path, log_dir: Path) -> Iterator[Callable[..., FleetboxProcess]]:
    """Start ``python -m fleetbox ARGS`` in the background; every process is killed at teardown.

    ``spawn(name, *args, env=None)``; cwd is the test's tmp dir (so no stray fleetbox.toml is
    read) and PYTHONPATH holds the repository (so ``tests.e2e.handlers`` imports).
    """
    started: list[FleetboxProcess] = []

    def start(name: str, *args: str, env: Mapping[str, str] | None = None) -> FleetboxProcess:
        out = tmp_path / f"{name}.stdout"
        err = tmp_path / f"{name}.stderr"
        stdout, stderr = out.open("wb"), err.open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetbox", *args],
            cwd=tmp_path,
            env=dict(env) if env is not None else child_env(log_dir),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        started.append(FleetboxProcess(name, proc, out, err, [stdout, stderr]))
        return started[-1]

    yield start
    for p in started:
        p.close()


@pytest.fixture
def start_appliance(spawn: Callable[..., FleetboxProcess], dsn: str) -> Callable[..., FleetboxProcess]:
    """``start_appliance(name, config_path, *extra_args)``: ``fleetbox run`` on the test database."""

    def start(name: str, config: Path, *extra: str) -> FleetboxProcess:
        return spawn(name, "run", "--dsn", dsn, "--config", str(config), *extra)

    return start


@pytest.fixture
def cli(dsn: str, tmp_path: Path, log_dir: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the ``fleetbox`` console script and wait for it.

    ``cli(*args, env=None, with_dsn=True)``; ``--dsn`` for the test database is appended unless
    ``with_dsn`` is False.
    """

    def run(
        *args: str, env: Mapping[str, str] | None = None, with_dsn: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        argv = [fleetbox_script(), *args]
        if with_dsn:
            argv += ["--dsn", dsn]
        return subprocess.run(
            argv,
            cwd=tmp_path,
            env=dict(env) if env is not None else child_env(log_dir),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture
async def pg(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to the test database (search_path: the fleetbox schema)."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "fleetbox"})
    try:
        yield conn
    finally:
        await conn.close()
