"""The embedded default: with no database configured, fleetbox runs its own PostgreSQL, and that
server lives exactly as long as the fleetbox processes using it (or until ``fleetbox db stop``)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetbox.store.sql import migrations
from tests.conftest import wait_for
from tests.e2e.conftest import CONFIG_VARS, FleetboxProcess, child_env, fleetbox_script, write_config

ALL_MIGRATIONS = [v for v, _, _ in migrations()]

Fleetbox = Callable[..., subprocess.CompletedProcess[str]]


def postmaster_pid(data_dir: Path) -> int | None:
    """The pid of the server running in ``data_dir`` (None: none is)."""
    try:
        pid = int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """The embedded server's home; a server left running by a failed test is stopped.

    Not under pytest's tmp_path: as root the server runs as its own user, which must be able to
    traverse every directory above its data (pytest's are private to root).
    """
    base = Path(tempfile.mkdtemp(prefix="fleetbox-embedded-"))
    base.chmod(0o711)
    path = base / "data"
    yield path
    pid = postmaster_pid(path)
    if pid is not None:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGINT)  # fast shutdown
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def fleetbox(tmp_path: Path, data_dir: Path) -> Fleetbox:
    """Run the console script with ``--data-dir`` and no database configured."""
    env = child_env(tmp_path)
    assert not any(k.startswith("FLEETBOX_") or k in CONFIG_VARS for k in env)

    def run(*args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [fleetbox_script(), *args, "--data-dir", str(data_dir)],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if expect is not None:
            assert result.returncode == expect, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
        return result

    return run


def test_with_no_database_configured_the_cli_uses_an_embedded_postgresql(fleetbox: Fleetbox, data_dir: Path) -> None:
    def used(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
        assert f"embedded PostgreSQL in {data_dir / 'pgdata'}" in result.stderr, result.stderr
        return result

    assert f"applied migrations {ALL_MIGRATIONS}" in used(fleetbox("migrate")).stdout
    job_id = int(used(fleetbox("enqueue", "sync", "--data", "{}")).stdout)
    depth = {d["queue"]: d for d in json.loads(used(fleetbox("queues", "--json")).stdout)}
    assert depth["sync"]["waiting"] == 1 and job_id >= 1
    assert (data_dir / "pgdata" / "PG_VERSION").is_file()
    # Each one-shot command's server stopped when the command exited.
    assert postmaster_pid(data_dir) is None
    # The server's files are private to it, and the data directory cannot be listed by others.
    assert stat.S_IMODE((data_dir / "pgdata").stat().st_mode) == 0o700
    assert stat.S_IMODE(data_dir.stat().st_mode) & 0o066 == 0
    for path in data_dir.iterdir():
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_the_dsn_printed_for_the_embedded_server_is_the_one_the_readme_shows(
    fleetbox: Fleetbox, data_dir: Path
) -> None:
    printed = fleetbox("db", "start").stdout
    dsn = f"postgresql://postgres@/postgres?host={data_dir / 'pgdata'}"
    assert dsn in printed
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert "postgresql://postgres@/postgres?host=" in readme
    fleetbox("db", "stop")


def test_db_start_keeps_one_server_for_every_command_until_db_stop(fleetbox: Fleetbox, data_dir: Path) -> None:
    assert fleetbox("db", "status", expect=1).stdout.splitlines()[1].split() == ["server:", "stopped"]
    fleetbox("db", "start")
    pid = postmaster_pid(data_dir)
    assert pid is not None
    fleetbox("migrate")
    fleetbox("enqueue", "sync", "--data", "{}")
    assert postmaster_pid(data_dir) == pid  # not stopped by the commands, nor restarted
    status = fleetbox("db", "status").stdout
    assert f"running (pid {pid})" in status and "until fleetbox db stop" in status
    assert "stopped" in fleetbox("db", "stop").stdout
    assert postmaster_pid(data_dir) is None
    assert "stopped" in fleetbox("db", "status", expect=1).stdout


def test_a_server_that_cannot_start_says_why_in_one_line(fleetbox: Fleetbox, data_dir: Path) -> None:
    fleetbox("migrate")
    with (data_dir / "pgdata" / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("\nshared_buffers = lots\n")
    for args in (["queues"], ["db", "start"]):
        result = fleetbox(*args, expect=3)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"fleetbox: error: could not start the embedded PostgreSQL in {data_dir}")
        assert "shared_buffers" in lines[0], lines[0]
    assert postmaster_pid(data_dir) is None


async def test_run_owns_its_server_restarts_it_if_it_dies_and_stops_it_on_exit(
    spawn: Callable[..., FleetboxProcess], fleetbox: Fleetbox, data_dir: Path, tmp_path: Path, log_dir: Path
) -> None:
    config = write_config(
        tmp_path / "embedded.toml",
        queues={"e2e-embedded": {"tier": "high", "handler": "tests.e2e.handlers:record"}},
        appliance={"data_dir": str(data_dir)},
    )
    app = spawn("app", "run", "--config", str(config))
    await app.wait_ready(timeout=60)
    first = postmaster_pid(data_dir)
    assert first is not None

    os.kill(first, signal.SIGKILL)  # the server dies under the appliance
    restarted = await app.wait_event("embedded_database_restarted", timeout=60)
    second = postmaster_pid(data_dir)
    assert second is not None and second != first and restarted["pid"] == second

    # The appliance works on the new server: a job enqueued now runs.
    job = int(fleetbox("enqueue", "e2e-embedded", "--data", "{}", "--config", str(config)).stdout)

    def ran() -> bool:
        return any(
            json.loads(line)["job"] == job
            for path in log_dir.glob("*.log")
            for line in path.read_text(encoding="utf-8").splitlines()
            if '"end"' in line
        )

    await wait_for(ran, timeout=60)
    # db stop while the appliance uses the server leaves it running.
    assert "still used by process" in fleetbox("db", "stop").stdout
    assert postmaster_pid(data_dir) == second

    app.signal(signal.SIGTERM)
    assert await app.wait_exit(timeout=60) == 0, app.describe()
    assert postmaster_pid(data_dir) is None, "the embedded server outlived fleetbox run"


def test_no_directory_above_the_data_is_opened_up_for_the_server(tmp_path: Path) -> None:
    """As root the server runs as its own user; fleetbox never widens a directory's permissions
    for it, and says which directory it cannot reach instead. As another user it just works."""
    private = Path(tempfile.mkdtemp(prefix="fleetbox-private-"))
    try:
        private.chmod(0o700)
        data_dir = private / "data"
        result = subprocess.run(
            [fleetbox_script(), "migrate", "--data-dir", str(data_dir)],
            cwd=tmp_path,
            env=child_env(tmp_path),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert "Traceback" not in result.stderr
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        if os.geteuid() == 0:
            assert result.returncode == 3, result.stderr
            assert f"runs as the system user fleetbox-pg, which cannot reach {private} (mode 0700)" in result.stderr
        else:
            assert result.returncode == 0, result.stderr
            pid = postmaster_pid(data_dir)
            assert pid is None  # stopped with the command
    finally:
        shutil.rmtree(private, ignore_errors=True)


async def test_a_one_shot_command_stopped_by_sigterm_stops_the_server_it_started(
    data_dir: Path, tmp_path: Path
) -> None:
    proc = _waiting_for_stdin(data_dir, tmp_path)
    try:
        # the command started the server and now waits for its payload on stdin
        await wait_for(lambda: postmaster_pid(data_dir) is not None and _holds(data_dir, proc.pid), timeout=60)
        proc.send_signal(signal.SIGTERM)
        await wait_for(lambda: proc.poll() is not None, timeout=60)
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode()
        assert "Traceback" not in stderr, stderr
        assert postmaster_pid(data_dir) is None, "the server outlived the command that started it"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        for stream in (proc.stdin, proc.stderr):
            if stream is not None:
                stream.close()


def _waiting_for_stdin(data_dir: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """``fleetbox enqueue --data -`` with its stdin held open: a one-shot command that waits."""
    return subprocess.Popen(
        [fleetbox_script(), "enqueue", "sync", "--data", "-", "--data-dir", str(data_dir)],
        cwd=cwd,
        env=child_env(cwd),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _holds(data_dir: Path, pid: int) -> bool:
    try:
        return pid in json.loads((data_dir / "embedded-holders.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return False
