"""The fault scenarios users of PostgreSQL job queues meet, each with two appliance processes under
a steady load of a few hundred jobs a second, on a PostgreSQL server of the scenario's own.

Each scenario: a baseline, the fault, the recovery, then an audit: every enqueue that was
acknowledged ended ``succeeded``; no two runs of one job overlapped, so no job was started again
while a lease on it lived (a run ends at its end or cancel line, or when its process was killed);
without a crash no job ran to its end twice, and a crash repeats only the few jobs whose outcome was
not yet committed when the process died; throughput came back. The
time it took and the recovered rate (as a ratio of the baseline) are printed; only generous bounds
are asserted, the figures go to docs/reliability.md.

These are slow (minutes): they are marked ``reliability`` and run in a CI step of their own
(``pytest -m reliability``); the README's test command leaves them out.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from fleetbox.client import Client, NewJob
from fleetbox.config import Settings
from fleetbox.errors import DatabaseError
from fleetbox.store import Store
from fleetbox.store.migrations import migrate
from fleetbox.worker.registry import build_registry, register_queues
from tests.conftest import wait_for
from tests.e2e.conftest import FleetboxProcess, child_env, toml_text
from tests.reliability.cluster import Cluster

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(600)]

QUEUE = "rel"
#: jobs enqueued per second while a scenario runs
RATE = 200
BASELINE_SECONDS = 10
#: the appliances' timing: a lease shorter than the longest outage here, so every recovery path
#: (reaper, heartbeat, outcome write after an outage) is exercised
APPLIANCE = {
    "lease_seconds": 10.0,
    "heartbeat_seconds": 2.0,
    "poll_seconds": 0.5,
    "reap_seconds": 1.0,
    "shutdown_grace_seconds": 5.0,
    "completion_flush_ms": 5.0,
}


@dataclass
class Scenario:
    """Two appliances, a load, a journal and the clock of every kill."""

    root: Path
    cluster: Cluster
    dsn: str
    journal: Path
    config: Path
    processes: dict[str, FleetboxProcess] = field(default_factory=dict)
    acked: set[int] = field(default_factory=set)
    #: pid -> when it was killed (time.time())
    killed: dict[int, float] = field(default_factory=dict)
    _stop_load: asyncio.Event = field(default_factory=asyncio.Event)
    _load: asyncio.Task[None] | None = None
    _files: list[Any] = field(default_factory=list)

    # -- processes ---------------------------------------------------------------------------

    def start(self, name: str) -> FleetboxProcess:
        out, err = self.root / f"{name}.{len(self.processes)}.out", self.root / f"{name}.{len(self.processes)}.err"
        stdout, stderr = out.open("wb"), err.open("wb")
        self._files += [stdout, stderr]
        env = child_env(None, RELIABILITY_JOURNAL=str(self.journal))
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetbox", "run", "--no-migrate", "--dsn", self.dsn, "--config", str(self.config)],
            cwd=self.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        self.processes[name] = FleetboxProcess(name, proc, out, err)
        return self.processes[name]

    def kill(self, name: str) -> None:
        process = self.processes[name]
        self.killed[process.pid] = time.time()
        process.proc.send_signal(signal.SIGKILL)
        process.proc.wait(timeout=30)

    # -- load --------------------------------------------------------------------------------

    def start_load(self) -> None:
        self._load = asyncio.get_running_loop().create_task(self._produce())

    async def stop_load(self) -> None:
        self._stop_load.set()
        if self._load is not None:
            await self._load

    async def _produce(self) -> None:
        async with Client.connect(self.dsn) as client:
            chunk = RATE // 20
            while not self._stop_load.is_set():
                began = time.monotonic()
                try:
                    async with asyncio.timeout(5):
                        results = await client.enqueue_many(NewJob(queue=QUEUE, data={}) for _ in range(chunk))
                    self.acked.update(r.id for r in results)
                except (DatabaseError, TimeoutError):
                    pass  # not acknowledged: the caller would try again; the audit counts only acks
                await asyncio.sleep(max(0.0, 0.05 - (time.monotonic() - began)))

    # -- reading the journal -----------------------------------------------------------------

    def lines(self) -> list[dict[str, Any]]:
        if not self.journal.exists():
            return []
        return [json.loads(line) for line in self.journal.read_text().splitlines() if line.strip()]

    def rate(self, seconds: float) -> float:
        """Jobs that ended per second over the last ``seconds``."""
        since = time.time() - seconds
        return sum(1 for line in self.lines() if line["e"] == "end" and line["t"] >= since) / seconds

    async def measure(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return self.rate(seconds)

    async def recovered(self, baseline: float, *, within: float) -> float:
        """Seconds until the rate over 3 s is back to half the baseline."""
        began = time.monotonic()
        while time.monotonic() - began < within:
            await asyncio.sleep(1)
            if self.rate(3) >= baseline / 2:
                return time.monotonic() - began
        raise AssertionError(f"throughput did not come back within {within} s (baseline {baseline:.0f}/s)")

    # -- the audit ---------------------------------------------------------------------------

    async def audit(
        self, name: str, baseline: float, recovery: float, after: float, *, crashes: bool
    ) -> dict[str, Any]:
        """``crashes``: processes were killed, so a job whose handler had ended but whose outcome
        was not yet committed when its process died runs again (the at-least-once window every
        job system has: the handler's work and the queue's record cannot commit together). Such
        jobs are counted; no two runs of one job may ever overlap (a job is never started again
        while a lease on it lives), and without crashes no job may complete twice."""
        await self.stop_load()
        sql = await asyncpg.connect(self.dsn, server_settings={"search_path": "fleetbox"})
        try:

            async def all_done() -> bool:
                done = await sql.fetchval(
                    "SELECT count(*) FROM jobs_done WHERE state = 'succeeded' AND id = ANY($1::bigint[])",
                    list(self.acked),
                )
                return bool(done == len(self.acked))

            await wait_for(all_done, timeout=180, interval=0.5)
            lost = await sql.fetchval(
                "SELECT count(*) FROM unnest($1::bigint[]) AS a(id) "
                "WHERE NOT EXISTS (SELECT 1 FROM jobs_done d WHERE d.id = a.id AND d.state = 'succeeded')",
                list(self.acked),
            )
        finally:
            await sql.close()
        runs: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for line in self.lines():
            runs[line["job"]].append(line)
        twice = overlapping = 0
        for lines in runs.values():
            if sum(1 for line in lines if line["e"] == "end") > 1:
                twice += 1
            overlapping += _overlaps(lines, self.killed)
        figures = {
            "scenario": name,
            "acknowledged": len(self.acked),
            "lost": lost,
            "completed_twice": twice,
            "overlapping_runs": overlapping,
            "baseline_jobs_s": round(baseline, 1),
            "recovery_seconds": round(recovery, 1),
            "recovered_ratio": round(after / baseline, 2) if baseline else None,
        }
        print(f"\nRELIABILITY {json.dumps(figures)}")
        report = os.environ.get("RELIABILITY_REPORT")
        if report:  # CI prints these (its test workers' output is not shown)
            with Path(report).open("a", encoding="utf-8") as f:  # noqa: ASYNC230 — one short line
                f.write(json.dumps(figures) + "\n")
        assert (lost, overlapping) == (0, 0), figures
        if not crashes:
            assert twice == 0, figures
        else:  # the window is a few milliseconds per crash: a handful of jobs, never a backlog
            assert twice <= 20 * len(self.killed), figures
        for process in self.processes.values():  # no appliance exits because of a fault
            assert process.proc.poll() is None, process.describe()
        assert after >= baseline / 3, figures  # generous: the machine is shared
        return figures


def _overlaps(lines: list[dict[str, Any]], killed: dict[int, float]) -> int:
    """Runs of one job that overlap: each run is a start and its end, its cancel, or its kill."""
    runs: list[tuple[float, float]] = []
    open_runs: dict[tuple[int, int], float] = {}
    for line in sorted(lines, key=lambda line: line["t"]):
        key = (line["pid"], line["attempt"])
        if line["e"] == "start":
            open_runs[key] = line["t"]
        elif key in open_runs:
            runs.append((open_runs.pop(key), line["t"]))
    for (pid, _attempt), started in open_runs.items():
        runs.append((started, killed.get(pid, float("inf"))))  # never ended: its process was killed
    runs.sort()
    return sum(1 for a, b in itertools.pairwise(runs) if b[0] < a[1])


@contextlib.contextmanager
def scenario_dir() -> Iterator[Path]:
    """A directory the postgres user can reach (pytest's own tmp directories are private to root)."""
    root = Path(tempfile.mkdtemp(prefix="fleetbox-reliability-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def scenario() -> AsyncIterator[Scenario]:
    with scenario_dir() as root:
        cluster = Cluster.create(root, "primary")
        cluster.start()
        try:
            yield await _prepare(root, cluster, cluster.dsn)
        finally:
            cluster.destroy()


async def _prepare(root: Path, cluster: Cluster, dsn: str) -> Scenario:
    settings = Settings(database={"dsn": dsn}, queues={QUEUE: {"tier": "high"}})
    async with Store(dsn, schema="fleetbox") as store:
        await migrate(store)
        await register_queues(store, build_registry(settings, import_handlers=False))
    journal = root / "journal.log"
    config = root / "fleetbox.toml"
    config.write_text(
        toml_text(
            {
                "appliance": {**APPLIANCE, "data_dir": str(root / "data")},
                "database": {"pool_max": 6},
                "admin": {"enabled": False},
                "graph": {"enabled": False},
                "monitor": {"schedule": False},
                f'queues."{QUEUE}"': {"tier": "high", "handler": "tests.reliability.handlers:journal"},
            }
        ),
        encoding="utf-8",
    )
    return Scenario(root, cluster, dsn, journal, config)


@contextlib.contextmanager
def running(s: Scenario) -> Iterator[None]:
    try:
        yield
    finally:
        for process in s.processes.values():
            process.close()
        for f in s._files:
            f.close()


async def _baseline(s: Scenario) -> float:
    for name in ("a", "b"):
        s.start(name)
    for name in ("a", "b"):
        await s.processes[name].wait_ready(timeout=60)
    s.start_load()
    await s.measure(3)  # warm up
    return await s.measure(BASELINE_SECONDS)


Fault = Callable[[Scenario], Awaitable[None]]


async def _run(s: Scenario, name: str, fault: Fault) -> dict[str, Any]:
    with running(s):
        baseline = await _baseline(s)
        await fault(s)
        recovery = await s.recovered(baseline, within=120)
        after = await s.measure(BASELINE_SECONDS)
        return await s.audit(name, baseline, recovery, after, crashes=bool(s.killed))


async def test_postgresql_restarted_after_thirty_seconds_down(scenario: Scenario) -> None:
    async def fault(s: Scenario) -> None:
        s.cluster.stop("fast")
        await asyncio.sleep(30)
        s.cluster.start()

    await _run(scenario, "postgresql restart, 30 s down", fault)


async def test_every_backend_terminated_twice_a_second_for_thirty_seconds(scenario: Scenario) -> None:
    async def fault(s: Scenario) -> None:
        killer = await asyncpg.connect(s.dsn)
        try:
            end = time.monotonic() + 30
            while time.monotonic() < end:
                await killer.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'fleetbox' AND pid <> pg_backend_pid()"
                )
                await asyncio.sleep(0.5)
        finally:
            await killer.close()

    await _run(scenario, "pg_terminate_backend twice a second, 30 s", fault)


async def test_connection_exhaustion_for_a_minute(scenario: Scenario) -> None:
    async def fault(s: Scenario) -> None:
        held: list[asyncpg.Connection] = []
        try:
            # All but a few of max_connections (60, of which 3 are reserved for superusers and
            # the appliances and the producer hold their pools): keep taking until refused.
            while len(held) < 60:
                try:
                    held.append(await asyncpg.connect(s.dsn, timeout=5))
                except (asyncpg.TooManyConnectionsError, OSError, asyncpg.PostgresError):
                    break
            for conn in held[-3:]:  # ... and give back a few
                await conn.close()
            held = held[:-3]
            await asyncio.sleep(60)
        finally:
            for conn in held:
                await conn.close()

    await _run(scenario, "connection exhaustion, 60 s", fault)


async def test_sigkill_of_one_appliance_restarted_thirty_seconds_later(scenario: Scenario) -> None:
    async def fault(s: Scenario) -> None:
        s.kill("a")
        await asyncio.sleep(30)
        await s.start("a").wait_ready(timeout=60)

    await _run(scenario, "SIGKILL of one appliance, restarted 30 s later", fault)


async def test_sigkill_of_the_same_appliance_every_twenty_seconds_for_two_minutes(scenario: Scenario) -> None:
    async def fault(s: Scenario) -> None:
        end = time.monotonic() + 120
        while time.monotonic() < end:
            await asyncio.sleep(20)
            s.kill("a")
            await s.start("a").wait_ready(timeout=60)

    await _run(scenario, "SIGKILL of one appliance every 20 s, 2 min", fault)


@pytest.fixture
async def replicated() -> AsyncIterator[Scenario]:
    """A primary with a synchronous streaming standby; fleetbox on a multi-host DSN that finds the
    writable one (target_session_attrs=read-write)."""
    with scenario_dir() as root:
        primary = Cluster.create(root, "primary", synchronous_standby_names="'*'")
        primary.start()
        standby = primary.standby(root, "standby")
        standby.start()
        dsn = (
            f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/postgres"
            "?target_session_attrs=read-write"
        )
        try:
            s = await _prepare(root, primary, dsn)
            s.standby = standby  # type: ignore[attr-defined]
            yield s
        finally:
            standby.destroy()
            primary.destroy()


async def test_failover_to_a_synchronous_standby(replicated: Scenario) -> None:
    async def fault(s: Scenario) -> None:
        s.cluster.stop("immediate")  # the primary dies hard
        await asyncio.sleep(5)
        s.standby.promote()  # type: ignore[attr-defined]

    await _run(replicated, "failover to a synchronous standby", fault)
