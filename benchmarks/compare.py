"""fleetbox beside its peers, interleaved on one PostgreSQL server, as a table of ratios.

    pip install '.[bench]'                       # pgqueuer 1.6, procrastinate 3.10
    python benchmarks/compare.py --dsn postgresql://postgres@127.0.0.1:5432/postgres [--rounds 3] [--busy]

Every contender runs the same job shape in its own database on the same server (same settings):
20,000 no-op jobs bulk-enqueued 1,000 a statement, then drained by one process; 2,000 single
enqueues; pickup latency of a 50/s trickle into an idle worker. The contenders of one round run one
after the other, and the rounds repeat, so a noisy shared machine slows them alike; the ratios are
taken within a round.

* fleetbox: ``fleetbox bench --json`` (every attempt recorded in job_attempts and jobs_done);
* pgqueuer 1.6 at its default batch (10) and at batch 100 (its best);
* procrastinate 3.10 (concurrency 10);
* the ceiling: a bare SQL claim-and-delete loop in pgbench, batch 100, 2 clients, no client work.

``--busy`` starts two CPU-bound processes for the whole run (the machine has two cores), which is
what pickup latency "while busy" means in docs/performance.md. ``--json`` prints every round's raw
figures as one JSON object after the table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
FIGURES = ("drain", "bulk", "single", "p50", "p99")
LABELS = {
    "drain": "drain, jobs/s",
    "bulk": "bulk enqueue, jobs/s",
    "single": "single enqueue, jobs/s",
    "p50": "pickup p50, ms",
    "p99": "pickup p99, ms",
}
#: Figures where less is better (the ratio is then peer / fleetbox, so > 1 always means fleetbox wins).
LOWER_IS_BETTER = {"p50", "p99"}
CEILING_SQL = """\
WITH c AS (SELECT id FROM ceiling ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED)
DELETE FROM ceiling USING c WHERE ceiling.id = c.id;
"""


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


def psql(dsn: str, *sql: str) -> str:
    args = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", dsn]
    for s in sql:
        args += ["-c", s]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def fresh_database(dsn: str, name: str) -> str:
    psql(dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}")
    return with_database(dsn, name)


def peer_env(dsn: str) -> dict[str, str]:
    parts = urlsplit(dsn)
    return {**os.environ, "BENCH_PGHOST": parts.hostname or "127.0.0.1", "BENCH_PGPORT": str(parts.port or 5432)}


def run_json(cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run one contender; its last stdout line that parses as JSON is its result."""
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=HERE)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    text = done.stdout.strip()
    try:
        return dict(json.loads(text))  # the peers print one indented object
    except json.JSONDecodeError:
        return dict(json.loads(text.splitlines()[-1]))


def fleetbox(dsn: str, jobs: int, single: int, trickle: int) -> dict[str, float]:
    r = run_json(
        [
            sys.executable,
            "-m",
            "fleetbox",
            "bench",
            "--json",
            "--dsn",
            dsn,
            "--jobs",
            str(jobs),
            "--latency-jobs",
            str(trickle),
            "--single-jobs",
            str(single),
        ],
        dict(os.environ),
        timeout=600,
    )
    return {
        "drain": r["drain_jobs_s"],
        "bulk": r["bulk_enqueue_jobs_s"],
        "single": r["single_enqueue_jobs_s"],
        "p50": r["pickup_p50_ms"],
        "p99": r["pickup_p99_ms"],
        "version": r["postgres_version"],
    }


def pgqueuer(dsn: str, db: str, batch: int, phases: str, jobs: int, single: int, trickle: int) -> dict[str, float]:
    cmd = [
        sys.executable,
        str(HERE / "peer_pgqueuer.py"),
        "--db",
        db,
        "--phases",
        phases,
        "--batch-size",
        str(batch),
        "--n",
        str(jobs),
        "--single",
        str(single),
        "--trickle",
        str(trickle),
        "--expect",
        str(trickle),
    ]
    return _peer(cmd, dsn)


def procrastinate(dsn: str, db: str, jobs: int, single: int, trickle: int) -> dict[str, float]:
    cmd = [
        sys.executable,
        str(HERE / "peer_procrastinate.py"),
        "--db",
        db,
        "--phases",
        "single,bulk,process,latency",
        "--concurrency",
        "10",
        "--n",
        str(jobs),
        "--single",
        str(single),
        "--trickle",
        str(trickle),
        "--expect",
        str(trickle),
    ]
    return _peer(cmd, dsn)


def _peer(cmd: list[str], dsn: str) -> dict[str, float]:
    r = run_json(cmd, peer_env(dsn), timeout=900)
    out: dict[str, float] = {}
    if "process" in r:
        out["drain"] = r["process"]["jobs_per_s"]
    if "enqueue_bulk" in r:
        out["bulk"] = r["enqueue_bulk"]["chunked_jobs_per_s"]
    if "enqueue_single" in r:
        out["single"] = r["enqueue_single"]["jobs_per_s"]
    if "latency" in r:
        out["p50"] = r["latency"]["p50_ms"]
        out["p99"] = r["latency"]["p99_ms"]
    return out


def ceiling(dsn: str, jobs: int, batch: int = 100, clients: int = 2) -> dict[str, float]:
    """Jobs/s of a bare claim-and-delete loop: FOR UPDATE SKIP LOCKED, then DELETE, batch 100."""
    psql(
        dsn,
        "DROP TABLE IF EXISTS ceiling",
        "CREATE TABLE ceiling (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, data jsonb NOT NULL)",
        f"INSERT INTO ceiling (data) SELECT '{{}}' FROM generate_series(1, {jobs})",
        "VACUUM ANALYZE ceiling",
    )
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write(CEILING_SQL)
        script.flush()
        per_client = jobs // (batch * clients)
        t0 = time.perf_counter()
        subprocess.run(
            ["pgbench", "-n", "-c", str(clients), "-j", str(clients), "-t", str(per_client), "-f", script.name, dsn],
            check=True,
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - t0
    left = int(psql(dsn, "SELECT count(*) FROM ceiling"))
    if left != jobs - per_client * batch * clients:
        raise RuntimeError(f"ceiling: {left} rows left")
    # Wall time including pgbench's connection set-up, as the queues' drains include their start.
    return {"drain": per_client * batch * clients / elapsed}


def busy_processes(n: int) -> list[subprocess.Popen[bytes]]:
    """CPU-bound processes beside the benchmark (ended by the caller)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def ratio(figure: str, ours: float | None, theirs: float | None) -> float | None:
    if not ours or not theirs:
        return None
    return theirs / ours if figure in LOWER_IS_BETTER else ours / theirs


def table(rounds: list[dict[str, dict[str, float]]]) -> str:
    names = [n for n in rounds[0] if n != "fleetbox"]
    lines = ["figure (median of rounds)      fleetbox  " + "  ".join(f"{n:>16}" for n in names)]
    for f in FIGURES:
        cells = []
        for n in [*names]:
            vals = [r[n][f] for r in rounds if f in r[n]]
            cells.append(f"{statistics.median(vals):>16,.1f}" if vals else f"{'':>16}")
        ours = [r["fleetbox"][f] for r in rounds]
        lines.append(f"{LABELS[f]:<28} {statistics.median(ours):>10,.1f}  " + "  ".join(cells))
    lines.append("")
    lines.append("ratio fleetbox : peer, per round (> 1: fleetbox better; for latency, peer ms / fleetbox ms)")
    for n in names:
        for f in FIGURES:
            rs = [ratio(f, r["fleetbox"].get(f), r[n].get(f)) for r in rounds]
            got = [x for x in rs if x is not None]
            if got:
                per = ", ".join(f"{x:.2f}" for x in got)
                lines.append(f"  {f:<7} vs {n:<16} min {min(got):5.2f}  [{per}]")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(prog="benchmarks/compare.py", description=__doc__.split("\n\n")[0])
    server = os.environ.get("FLEETBOX_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--dsn", default=server, help="a DSN of the server (each contender gets a database of its own)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=20_000, help="jobs enqueued and drained per contender")
    p.add_argument("--single", type=int, default=2_000, help="sequential single enqueues")
    p.add_argument("--trickle", type=int, default=200, help="jobs trickled at 50/s for pickup latency")
    p.add_argument("--peers", default="pgqueuer,procrastinate", help="comma-separated: pgqueuer, procrastinate")
    p.add_argument("--busy", action="store_true", help="run two CPU-bound processes beside the benchmark")
    p.add_argument("--json", action="store_true", help="also print the raw figures as one JSON object")
    p.add_argument("--prefix", default="", help="prefix of the databases it creates and drops (default none)")
    a = p.parse_args()
    peers = {x.strip() for x in a.peers.split(",") if x.strip()}
    unknown = peers - {"pgqueuer", "procrastinate"}
    if unknown or a.rounds < 1 or a.jobs < 200:
        p.error(f"unknown peers {sorted(unknown)}" if unknown else "--rounds must be >= 1 and --jobs >= 200")

    if not re.fullmatch(r"[a-z0-9_]{0,30}", a.prefix):
        p.error("--prefix: lowercase letters, digits and _ only, at most 30")
    names = {k: a.prefix + k for k in ("fleetbox_bench_cmp", "ceiling_bench", "pgqueuer_bench", "procrastinate_bench")}
    fleet_dsn = fresh_database(a.dsn, names["fleetbox_bench_cmp"])
    ceiling_dsn = fresh_database(a.dsn, names["ceiling_bench"])
    for db in ("pgqueuer_bench", "procrastinate_bench"):
        if db.split("_")[0] in peers:
            fresh_database(a.dsn, names[db])
    hogs = busy_processes(2) if a.busy else []
    rounds: list[dict[str, dict[str, float]]] = []
    version = ""
    try:
        for i in range(a.rounds):
            r: dict[str, dict[str, float]] = {}
            print(f"round {i + 1} of {a.rounds}", file=sys.stderr, flush=True)
            fb = fleetbox(fleet_dsn, a.jobs, a.single, a.trickle)
            version = str(fb.pop("version"))
            r["fleetbox"] = fb
            if "pgqueuer" in peers:
                db = names["pgqueuer_bench"]
                r["pgqueuer b10"] = pgqueuer(a.dsn, db, 10, "single,bulk,process,latency", a.jobs, a.single, a.trickle)
                r["pgqueuer b100"] = pgqueuer(a.dsn, db, 100, "bulk,process", a.jobs, a.single, a.trickle)
            if "procrastinate" in peers:
                r["procrastinate"] = procrastinate(a.dsn, names["procrastinate_bench"], a.jobs, a.single, a.trickle)
            r["SQL ceiling b100"] = ceiling(ceiling_dsn, a.jobs)
            rounds.append(r)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        for db in names.values():
            psql(a.dsn, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE)
    print(
        f"PostgreSQL {version}; {a.rounds} interleaved rounds of {a.jobs:,} jobs; busy={a.busy}; "
        f"commit {commit.stdout.strip() or 'unknown'}; {os.cpu_count()} CPUs; "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print(table(rounds))
    if a.json:
        print(json.dumps({"postgres_version": version, "busy": a.busy, "rounds": rounds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
