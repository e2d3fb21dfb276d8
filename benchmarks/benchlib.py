"""Small helpers shared by the queue benchmarks (no library-specific code here)."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

PGHOST = os.environ.get("BENCH_PGHOST", "127.0.0.1")
PGPORT = int(os.environ.get("BENCH_PGPORT", "5432"))


def dsn(dbname: str) -> str:
    return f"postgresql://postgres@{PGHOST}:{PGPORT}/{dbname}"


def now() -> float:
    """Wall clock shared across processes (used for enqueue->start latency)."""
    return time.time()


def perf() -> float:
    return time.perf_counter()


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100.0 * len(s) + 0.5) - 1))
    return s[k]


def latency_summary(lat_s: list[float]) -> dict:
    ms = [x * 1000.0 for x in lat_s]
    return {
        "count": len(ms),
        "p50_ms": round(pct(ms, 50), 2),
        "p90_ms": round(pct(ms, 90), 2),
        "p99_ms": round(pct(ms, 99), 2),
        "max_ms": round(max(ms), 2) if ms else None,
        "mean_ms": round(statistics.fmean(ms), 2) if ms else None,
    }


def write_result(path: str | None, result: dict) -> None:
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")


def log(*a: object) -> None:
    print(*a, file=sys.stderr, flush=True)


_TICK = os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    """CPU seconds (user+sys) consumed by this Python process so far."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pg_cpu() -> float:
    """CPU seconds (user+sys) of all live `postgres` processes (server-side cost)."""
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        comm = s[s.index("(") + 1 : s.rindex(")")]
        if comm != "postgres":
            continue
        fields = s[s.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


class CpuMeter:
    """Wall time + this process's CPU + postgres CPU between start() and stop()."""

    def start(self) -> CpuMeter:
        self.w0, self.c0, self.p0 = perf(), self_cpu(), pg_cpu()
        return self

    def stop(self) -> dict:
        w, c, p = perf() - self.w0, self_cpu() - self.c0, pg_cpu() - self.p0
        return {
            "wall_s": round(w, 3),
            "python_cpu_s": round(c, 3),
            "postgres_cpu_s": round(p, 3),
            "python_cpu_pct": round(100 * c / w, 1),
            "postgres_cpu_pct": round(100 * p / w, 1),
        }


# ---------- server-side work per job (pg_stat_database + WAL position) ----------
_STATS_SQL = """
SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted,
       (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS wal_pos
FROM pg_stat_database WHERE datname = current_database()
"""


async def db_snapshot(db: str) -> dict:
    """Counters for database `db`. PG15 backends publish their counters when idle (at
    most once per second) or at exit, so callers sleep ~1.2 s after closing the
    connections they want counted."""
    import asyncio

    import asyncpg

    await asyncio.sleep(1.2)
    c = await asyncpg.connect(dsn(db))
    try:
        return dict(await c.fetchrow(_STATS_SQL))
    finally:
        await c.close()


async def db_delta(db: str, before: dict, jobs: int) -> dict:
    after = await db_snapshot(db)
    wal = after["wal_pos"] - before["wal_pos"]
    per = lambda k: round((after[k] - before[k]) / jobs, 3)  # noqa: E731
    return {
        "commits_per_job": per("xact_commit"),
        "rollbacks_per_job": per("xact_rollback"),
        "rows_inserted_per_job": per("tup_inserted"),
        "rows_updated_per_job": per("tup_updated"),
        "rows_deleted_per_job": per("tup_deleted"),
        "wal_bytes_per_job": round(float(wal) / jobs, 1),
    }
