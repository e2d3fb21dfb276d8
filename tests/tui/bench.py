"""How fast the TUI answers at scale: ``python -m tests.tui.bench [--queues 50] [--dead 10000] [--json]``.

It starts a real appliance (``fleetbox run``, a process of its own, on a fresh database of the
server at ``$FLEETBOX_TEST_DSN``, dropped at the end) with ``--queues`` custom queues whose handler
rejects every job, makes ``--dead`` dead letters through the SQL function ``fleetbox.enqueue``,
then drives the TUI headless over the control socket: queues, queue detail, dead letters (press
``2``), a job, alerts, and back. It reports, for each step, the time from the key press to the
screen showing its data, and the slowest frame: the longest time the TUI's event loop was busy
(a frame cannot be drawn sooner). The issue's goal: no frame over 100 ms, every screen within
300 ms. This is a measurement, not a test: tests assert what the screens show, never speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from textual.screen import Screen
from textual.widgets import DataTable

from fleetbox.errors import ValidationError
from fleetbox.models import Job
from fleetbox.tui.app import FleetboxTUI
from fleetbox.tui.client import UnixSocketClient
from fleetbox.tui.screens.alerts import AlertsScreen
from fleetbox.tui.screens.dead import DeadLettersScreen
from fleetbox.tui.screens.job import JobDetailScreen
from fleetbox.tui.screens.queue_detail import QueueDetailScreen
from fleetbox.tui.screens.queues import QueuesScreen

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
#: the goals of the issue, in seconds
FRAME_GOAL = 0.100
SCREEN_GOAL = 0.300


async def reject(job: Job) -> None:
    """The handler of the benchmark's queues: every job is dead at once."""
    raise ValidationError(f"bench job {job.id} rejected on purpose")


def with_database(dsn: str, name: str) -> str:
    """The DSN of another database on the same server."""
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


class LoopLag:
    """The longest time the event loop was busy: a task asks to wake every ``step`` seconds and
    measures how late it wakes (the same delay every frame and key press of the TUI sees)."""

    def __init__(self, step: float = 0.005) -> None:
        self.step = step
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            began = time.perf_counter()
            await asyncio.sleep(self.step)
            self.worst = max(self.worst, time.perf_counter() - began - self.step)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def reset(self) -> float:
        worst, self.worst = self.worst, 0.0
        return worst

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


@dataclass
class Step:
    name: str
    #: from the key press until the screen is on top
    screen_seconds: float
    #: ... until it shows its data
    seconds: float
    slowest_frame: float
    #: a key press (False: only watching, not counted as key-to-screen)
    key: bool = True


@dataclass
class Report:
    queues: int
    dead: int
    steps: list[Step] = field(default_factory=list)

    @property
    def slowest_frame(self) -> float:
        return max((s.slowest_frame for s in self.steps), default=0.0)

    @property
    def slowest_screen(self) -> float:
        return max((s.seconds for s in self.steps if s.key), default=0.0)

    def as_json(self) -> dict[str, object]:
        return {
            "queues": self.queues,
            "deadLetters": self.dead,
            "slowestFrameMs": round(self.slowest_frame * 1000, 1),
            "slowestKeyToDataMs": round(self.slowest_screen * 1000, 1),
            "steps": [
                {
                    "step": s.name,
                    "keyToScreenMs": round(s.screen_seconds * 1000, 1),
                    "keyToDataMs": round(s.seconds * 1000, 1),
                    "slowestFrameMs": round(s.slowest_frame * 1000, 1),
                }
                for s in self.steps
            ],
        }


@contextmanager
def appliance_process(dsn: str, queues: int, workdir: Path) -> Iterator[Path]:
    """``fleetbox run`` on ``dsn`` with ``queues`` rejecting queues; yields its control socket."""
    socket = workdir / "admin.sock"
    lines = [
        "[database]",
        f'dsn = "{dsn}"',
        "[appliance]",
        f'data_dir = "{workdir / "data"}"',
        'name = "bench"',
        "[admin]",
        "port = 0",
        "socket_enabled = true",
        f'socket_path = "{socket}"',
        "[graph]",
        "enabled = false",
        "[pools]",
        "low = 8",
    ]
    for i in range(queues):
        lines += [f"[queues.bench-{i:02d}]", 'tier = "low"', 'handler = "tests.tui.bench:reject"', "max_attempts = 1"]
    config = workdir / "fleetbox.toml"
    config.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for key in [k for k in env if k.startswith("FLEETBOX_")]:
        del env[key]
    log = (workdir / "appliance.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetbox.cli", "run", "--config", str(config)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not socket.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"the appliance did not start; see {workdir / 'appliance.log'}:\n"
                    + (workdir / "appliance.log").read_text()[-2000:]
                )
            time.sleep(0.1)
        yield socket
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


async def make_dead_letters(dsn: str, queues: int, dead: int) -> None:
    """``dead`` jobs through the SQL function in one statement; wait until all are dead letters."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "SELECT fleetbox.enqueue('bench-' || lpad((i % $1)::text, 2, '0'),"
            " jsonb_build_object('n', i, 'text', repeat('x', 200))) FROM generate_series(1, $2) AS i",
            queues,
            dead,
        )
        deadline = time.monotonic() + 300
        while await conn.fetchval("SELECT count(*) FROM fleetbox.dead_letters") < dead:
            if time.monotonic() > deadline:
                raise SystemExit("the dead letters did not all arrive within 5 minutes")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def drive(socket: Path, report: Report) -> None:
    """Drive the TUI through its screens and time each."""
    app = FleetboxTUI(UnixSocketClient(socket, operator="bench"))
    lag = LoopLag()
    async with app.run_test(size=(160, 50)) as pilot:
        lag.start()

        async def step(
            name: str,
            keys: tuple[str, ...],
            screen: type[Screen[None]],
            data: Callable[[Any], bool],
            *,
            key: bool = True,
            deadline: float = 60.0,
        ) -> None:
            """Press ``keys``; time until ``screen`` is on top, then until ``data(screen)`` holds."""
            lag.reset()
            began = time.perf_counter()
            on_top: float | None = None
            press = asyncio.ensure_future(pilot.press(*keys))
            while True:
                now = time.perf_counter()
                top = app.screen
                if on_top is None and isinstance(top, screen):
                    on_top = now
                if on_top is not None and data(top):
                    break
                if now - began > deadline:
                    raise SystemExit(f"{name}: the screen did not show its data within {deadline:.0f} s")
                await asyncio.sleep(0.002)
            await press
            report.steps.append(Step(name, on_top - began, now - began, lag.reset(), key))

        def rows(table: DataTable[Any], at_least: int = 1) -> bool:
            return table.row_count >= at_least

        await step("start: queue table", (), QueuesScreen, lambda s: rows(s.table, report.queues), key=False)
        # a few ticks go by, as when an operator looks before pressing a key
        seq = app.state.tick["seq"] if app.state.tick else 0
        three_ticks = lambda s: app.state.tick is not None and app.state.tick["seq"] >= seq + 3  # noqa: E731
        await step("(watching three ticks)", (), QueuesScreen, three_ticks, key=False)
        await step("enter: queue detail", ("enter",), QueueDetailScreen, lambda s: s.loaded)
        await step("2: dead letters", ("2",), DeadLettersScreen, lambda s: rows(s.table) and not s.fetching)
        await step("enter: a dead letter", ("enter",), JobDetailScreen, lambda s: s.job is not None)
        await step("esc: dead letters", ("escape",), DeadLettersScreen, lambda s: rows(s.table) and not s.fetching)
        await step("G: the last loaded row", ("G",), DeadLettersScreen, lambda s: True)
        await step("3: alerts", ("3",), AlertsScreen, lambda s: s.loaded)
        await step("1: queues (its detail)", ("1",), QueueDetailScreen, lambda s: True)
        await step("2 again: dead letters", ("2",), DeadLettersScreen, lambda s: rows(s.table) and not s.fetching)
    lag.stop()


async def serve(socket: Path) -> None:
    """Keep the appliance up for a look by hand (``fleetbox tui --socket``) until interrupted."""
    print(f"appliance ready: fleetbox tui --socket {socket}   (ctrl+c stops it)", flush=True)
    await asyncio.Event().wait()


async def run(dsn: str, queues: int, dead: int, *, keep: bool = False) -> Report:
    name = f"fleetbox_tuibench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    workdir = Path(tempfile.mkdtemp(prefix="fbb-", dir="/tmp"))
    report = Report(queues, dead)
    try:
        db = with_database(dsn, name)
        with appliance_process(db, queues, workdir) as socket:
            await make_dead_letters(db, queues, dead)
            await (serve(socket) if keep else drive(socket, report))
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.tui.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dsn",
        default=os.environ.get("FLEETBOX_TEST_DSN", DEFAULT_DSN),
        help="a PostgreSQL server's maintenance database (a database is made and dropped)",
    )
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--dead", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="no measurement: keep the appliance up for a look by hand")
    parser.add_argument("--socket", type=Path, help="drive the appliance of a --keep run at this socket again")
    args = parser.parse_args(argv)
    if args.queues < 1 or args.queues > 99 or args.dead < 1:
        parser.error("--queues must be 1..99 and --dead at least 1")
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    try:
        if args.socket is not None:
            report = Report(args.queues, args.dead)
            asyncio.run(drive(args.socket, report))
        else:
            report = asyncio.run(run(args.dsn, args.queues, args.dead, keep=args.keep))
    except KeyboardInterrupt:
        return 0
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
        return 0
    print(f"TUI at {report.queues} queues and {report.dead:,} dead letters")
    print(f"  {'step':<38} {'key to screen':>14} {'key to data':>12} {'slowest frame':>14}")
    for s in report.steps:
        note = "" if s.key else " (no key)"
        print(
            f"  {s.name:<38} {s.screen_seconds * 1000:>11.0f} ms {s.seconds * 1000:>9.0f} ms "
            f"{s.slowest_frame * 1000:>11.0f} ms{note}"
        )
    print(
        f"  slowest frame {report.slowest_frame * 1000:.0f} ms (goal {FRAME_GOAL * 1000:.0f}), "
        f"slowest key to data {report.slowest_screen * 1000:.0f} ms (goal {SCREEN_GOAL * 1000:.0f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
