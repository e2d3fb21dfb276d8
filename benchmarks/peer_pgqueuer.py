"""Smallest benchmark for pgqueuer (asyncpg driver) against a local PostgreSQL.

Phases (all on a fresh, pgqueuer-only database):
  enqueue-single : N_SINGLE sequential single-job ``Queries.enqueue`` calls
  enqueue-bulk   : N jobs via the list form of ``Queries.enqueue`` (one statement
                   per chunk); timed once as one call and once in chunks
  process        : one ``PgQueuer`` worker (same process, own connection) drains
                   the N pre-enqueued no-op jobs in ``QueueExecutionMode.drain``
  latency        : a worker subprocess (continuous mode, idle) receives a trickle
                   of single enqueues at RATE/s; latency = job start - enqueue call

Usage: peer_pgqueuer.py --db pgqueuer_bench --out results/x.json [options]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import timedelta

import asyncpg
import benchlib as bl
import uvloop
from pgqueuer import PgQueuer, __version__
from pgqueuer.db import AsyncpgDriver, AsyncpgPoolDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries
from pgqueuer.types import QueueExecutionMode

EP = "noop"


async def queries_for(db: str) -> tuple[asyncpg.Connection, Queries]:
    conn = await asyncpg.connect(bl.dsn(db))
    return conn, Queries(AsyncpgDriver(conn))


async def reset(q: Queries) -> None:
    await q.clear_queue()
    await q.clear_queue_log()
    await q.clear_statistics_log()


async def ensure_schema(db: str) -> None:
    conn, q = await queries_for(db)
    try:
        if not await q.schema_is_installed():
            await q.install()
            bl.log("pgqueuer schema installed")
    finally:
        await conn.close()


async def enqueue_single(db: str, n: int) -> dict:
    conn, q = await queries_for(db)
    try:
        await reset(q)
        t0 = bl.perf()
        for _ in range(n):
            await q.enqueue(EP, None)
        dt = bl.perf() - t0
        await reset(q)
    finally:
        await conn.close()
    return {"jobs": n, "seconds": round(dt, 3), "jobs_per_s": round(n / dt, 1)}


async def enqueue_bulk(db: str, n: int, chunk: int) -> dict:
    conn, q = await queries_for(db)
    out = {}
    try:
        await reset(q)
        # (a) the whole batch as one statement
        t0 = bl.perf()
        await q.enqueue([EP] * n, [None] * n, [0] * n)
        dt_one = bl.perf() - t0
        await reset(q)
        # (b) chunks; these rows stay for the processing phase
        t0 = bl.perf()
        for i in range(0, n, chunk):
            k = min(chunk, n - i)
            await q.enqueue([EP] * k, [None] * k, [0] * k)
        dt_chunk = bl.perf() - t0
        out = {
            "jobs": n,
            "one_call_seconds": round(dt_one, 3),
            "one_call_jobs_per_s": round(n / dt_one, 1),
            "chunk": chunk,
            "chunked_seconds": round(dt_chunk, 3),
            "chunked_jobs_per_s": round(n / dt_chunk, 1),
        }
        await conn.execute("VACUUM ANALYZE pgqueuer")
    finally:
        await conn.close()
    return out


async def process(db: str, n: int, batch_size: int, max_concurrent: int | None, pool: int) -> dict:
    before = await bl.db_snapshot(db)
    conn = await asyncpg.connect(bl.dsn(db))
    if pool:  # AsyncpgPoolDriver: dequeue / log flush / heartbeat run on separate connections
        apool = await asyncpg.create_pool(bl.dsn(db), min_size=pool, max_size=pool)
        pgq = PgQueuer(AsyncpgPoolDriver(apool))
    else:  # AsyncpgDriver: one connection, every statement serialised behind an asyncio.Lock
        pgq = PgQueuer(AsyncpgDriver(conn))
    seen = {"n": 0, "first": None, "last_end": None}

    @pgq.entrypoint(EP)
    async def noop(job: Job) -> None:
        if seen["first"] is None:
            seen["first"] = bl.perf()
        seen["n"] += 1
        seen["last_end"] = bl.perf()

    t_call = bl.perf()
    meter = bl.CpuMeter().start()
    await pgq.run(
        batch_size=batch_size,
        max_concurrent_tasks=max_concurrent,
        mode=QueueExecutionMode.drain,
        dequeue_timeout=timedelta(seconds=1),
    )
    t_end = bl.perf()  # drain mode returns after the status-log buffer is flushed
    cpu = meter.stop()
    if pool:
        await apool.close()
    remaining = await conn.fetchval("SELECT count(*) FROM pgqueuer")
    db_name = db
    db = await conn.fetchrow(
        """SELECT min(created) FILTER (WHERE status='picked') AS first_pick,
                  max(created) FILTER (WHERE status='successful') AS last_done,
                  count(*) FILTER (WHERE status='successful') AS done
           FROM pgqueuer_log"""
    )
    await conn.close()
    server = await bl.db_delta(db_name, before, n)
    span = t_end - seen["first"]
    db_span = (db["last_done"] - db["first_pick"]).total_seconds()
    return {
        "jobs_run": seen["n"],
        "jobs_logged_successful": db["done"],
        "remaining_in_queue": remaining,
        "batch_size": batch_size,
        "max_concurrent_tasks": max_concurrent,
        "driver": f"AsyncpgPoolDriver(size={pool})" if pool else "AsyncpgDriver(1 conn)",
        "startup_s": round(seen["first"] - t_call, 3),
        "first_start_to_drained_s": round(span, 3),
        "jobs_per_s": round(n / span, 1),
        "db_first_pick_to_last_done_s": round(db_span, 3),
        "db_jobs_per_s": round(n / db_span, 1) if db_span > 0 else None,
        "cpu": cpu,
        "server_per_job": server,
    }


# ---------- latency (worker subprocess + trickle producer) ----------


async def latency_worker(db: str, expect: int, batch_size: int, max_concurrent: int | None) -> None:
    conn = await asyncpg.connect(bl.dsn(db))
    pgq = PgQueuer(AsyncpgDriver(conn))
    lat: list[float] = []

    @pgq.entrypoint(EP)
    async def noop(job: Job) -> None:
        lat.append(bl.now() - float(job.payload.decode()))
        if len(lat) >= expect:
            pgq.shutdown.set()

    async def ready() -> None:
        await asyncio.sleep(2.0)
        print("READY", flush=True)

    asyncio.get_running_loop().create_task(ready())
    await asyncio.wait_for(pgq.run(batch_size=batch_size, max_concurrent_tasks=max_concurrent), timeout=120)
    await conn.close()
    import json

    print("LAT " + json.dumps(lat), flush=True)


async def latency(db: str, count: int, rate: float, batch_size: int, max_concurrent: int | None) -> dict:
    conn, q = await queries_for(db)
    await reset(q)
    cmd = [
        sys.executable,
        __file__,
        "--db",
        db,
        "--role",
        "latency-worker",
        "--expect",
        str(count),
        "--batch-size",
        str(batch_size),
    ]
    if max_concurrent:
        cmd += ["--max-concurrent", str(max_concurrent)]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.strip() == b"READY", line
    await asyncio.sleep(1.0)  # let the worker sit idle
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(count):
        delay = t0 + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await q.enqueue(EP, str(bl.now()).encode())
    produce_s = loop.time() - t0
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    await conn.close()
    import json

    lat = next(json.loads(x[4:]) for x in out.decode().splitlines() if x.startswith("LAT "))
    return {"rate_target": rate, "produce_seconds": round(produce_s, 2), **bl.latency_summary(lat)}


async def main(a: argparse.Namespace) -> None:
    mc = a.max_concurrent or None
    if a.role == "latency-worker":
        await latency_worker(a.db, a.expect, a.batch_size, mc)
        return
    await ensure_schema(a.db)
    res: dict = {
        "library": "pgqueuer",
        "version": __version__,
        "asyncpg": asyncpg.__version__,
        "loop": "uvloop",
        "label": a.label,
        "args": {k: v for k, v in vars(a).items() if k not in ("out", "role", "expect")},
    }
    phases = a.phases.split(",")
    if "single" in phases:
        res["enqueue_single"] = await enqueue_single(a.db, a.single)
        bl.log("single", res["enqueue_single"])
    if "bulk" in phases:
        res["enqueue_bulk"] = await enqueue_bulk(a.db, a.n, a.chunk)
        bl.log("bulk", res["enqueue_bulk"])
    if "process" in phases:
        res["process"] = await process(a.db, a.n, a.batch_size, mc, a.pool)
        bl.log("process", res["process"])
    if "latency" in phases:
        res["latency"] = await latency(a.db, a.trickle, a.rate, a.batch_size, mc)
        bl.log("latency", res["latency"])
    bl.write_result(a.out, res)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--db", default="pgqueuer_bench")
    p.add_argument("--role", default="bench")
    p.add_argument("--phases", default="single,bulk,process,latency")
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--single", type=int, default=2_000)
    p.add_argument("--chunk", type=int, default=1_000)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--max-concurrent", type=int, default=0)
    p.add_argument("--pool", type=int, default=0, help="use AsyncpgPoolDriver with this size")
    p.add_argument("--trickle", type=int, default=200)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--expect", type=int, default=200)
    p.add_argument("--label", default="")
    p.add_argument("--out")
    uvloop.run(main(p.parse_args()))
