"""Smallest benchmark for procrastinate (PsycopgConnector, psycopg 3) against a local PostgreSQL.

Phases (all on a fresh, procrastinate-only database):
  enqueue-single : N_SINGLE sequential ``task.defer_async()`` calls
  enqueue-bulk   : N jobs via ``task.batch_defer_async(*kwargs)`` (one
                   procrastinate_defer_jobs_v1() call per chunk); timed once as one
                   call and once in chunks
  process        : ``app.run_worker_async(wait=False, concurrency=C)`` in the same
                   process drains the N pre-enqueued no-op jobs and returns
  latency        : a worker subprocess (wait=True, idle) receives a trickle of
                   single defers at RATE/s; latency = job start - defer call

Usage: peer_procrastinate.py --db procrastinate_bench --out results/x.json [options]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys

import benchlib as bl
import procrastinate
import psycopg
from procrastinate import App, PsycopgConnector

try:
    from importlib.metadata import version as _v

    PROC_VERSION = _v("procrastinate")
except Exception:  # pragma: no cover
    PROC_VERSION = "?"


# The task is registered explicitly by name in every process that runs it, so the
# "App is instantiated in the main Python module" warning does not apply here.
logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)


AUTOCOMMIT = os.environ.get("BENCH_PROC_AUTOCOMMIT") == "1"


def make_app(db: str, pool_max: int | None) -> App:
    kw: dict = {"conninfo": bl.dsn(db)}
    if AUTOCOMMIT:  # non-default: pool connections in autocommit (no BEGIN/COMMIT per query)

        async def configure(conn: psycopg.AsyncConnection) -> None:
            await conn.set_autocommit(True)

        kw["configure"] = configure
    if pool_max:
        kw["min_size"] = min(4, pool_max)
        kw["max_size"] = pool_max
    return App(connector=PsycopgConnector(**kw))


STATE: dict = {"n": 0, "first": None, "lat": [], "expect": 0, "done": None}


def register(app: App) -> procrastinate.tasks.Task:
    @app.task(name="noop")
    async def noop(ts: float | None = None) -> None:
        t = bl.perf()
        if STATE["first"] is None:
            STATE["first"] = t
        STATE["n"] += 1
        if ts is not None:
            STATE["lat"].append(bl.now() - ts)
            if STATE["expect"] and len(STATE["lat"]) >= STATE["expect"] and STATE["done"]:
                STATE["done"].set()

    return noop


async def sql(app: App, query: str) -> None:
    await app.connector.execute_query_async(query)  # type: ignore[arg-type]


async def reset(app: App) -> None:
    await sql(
        app,
        "TRUNCATE procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs RESTART IDENTITY CASCADE",
    )


async def ensure_schema(db: str) -> None:
    async with await psycopg.AsyncConnection.connect(bl.dsn(db), autocommit=True) as c:
        cur = await c.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
        installed = (await cur.fetchone())[0]
    if not installed:
        app = make_app(db, None)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
        bl.log("procrastinate schema applied")


async def enqueue_single(db: str, n: int, pool_max: int | None) -> dict:
    app = make_app(db, pool_max)
    noop = register(app)
    async with app.open_async():
        await reset(app)
        t0 = bl.perf()
        for _ in range(n):
            await noop.defer_async()
        dt = bl.perf() - t0
        await reset(app)
    return {"jobs": n, "seconds": round(dt, 3), "jobs_per_s": round(n / dt, 1)}


async def enqueue_bulk(db: str, n: int, chunk: int, pool_max: int | None) -> dict:
    app = make_app(db, pool_max)
    noop = register(app)
    async with app.open_async():
        await reset(app)
        t0 = bl.perf()
        await noop.batch_defer_async(*({} for _ in range(n)))
        dt_one = bl.perf() - t0
        await reset(app)
        t0 = bl.perf()
        for i in range(0, n, chunk):
            k = min(chunk, n - i)
            await noop.batch_defer_async(*({} for _ in range(k)))
        dt_chunk = bl.perf() - t0
    async with await psycopg.AsyncConnection.connect(bl.dsn(db), autocommit=True) as c:
        await c.execute("VACUUM ANALYZE procrastinate_jobs")
        await c.execute("VACUUM ANALYZE procrastinate_events")
    return {
        "jobs": n,
        "one_call_seconds": round(dt_one, 3),
        "one_call_jobs_per_s": round(n / dt_one, 1),
        "chunk": chunk,
        "chunked_seconds": round(dt_chunk, 3),
        "chunked_jobs_per_s": round(n / dt_chunk, 1),
    }


async def process(
    db: str, n: int, concurrency: int, pool_max: int | None, delete_jobs: str, listen_notify: bool
) -> dict:
    app = make_app(db, pool_max)
    register(app)
    STATE.update(n=0, first=None)
    before = await bl.db_snapshot(db)
    async with app.open_async():
        t_call = bl.perf()
        meter = bl.CpuMeter().start()
        await app.run_worker_async(
            concurrency=concurrency,
            wait=False,
            install_signal_handlers=False,
            delete_jobs=delete_jobs,
            listen_notify=listen_notify,
        )
        t_end = bl.perf()  # returns after every job's finish_job() has completed
        cpu = meter.stop()
    async with await psycopg.AsyncConnection.connect(bl.dsn(db), autocommit=True) as c:
        cur = await c.execute("SELECT count(*) FILTER (WHERE status='succeeded'), count(*) FROM procrastinate_jobs")
        succeeded, total = await cur.fetchone()
        cur = await c.execute(
            """SELECT min(at) FILTER (WHERE type='started'),
                      max(at) FILTER (WHERE type='succeeded')
               FROM procrastinate_events"""
        )
        first_start, last_done = await cur.fetchone()
    server = await bl.db_delta(db, before, n)
    span = t_end - STATE["first"]
    db_span = (last_done - first_start).total_seconds() if first_start and last_done else None
    return {
        "jobs_run": STATE["n"],
        "rows_succeeded": succeeded,
        "rows_left": total,
        "concurrency": concurrency,
        "pool_max_size": pool_max or "default(4)",
        "delete_jobs": delete_jobs,
        "listen_notify": listen_notify,
        "startup_s": round(STATE["first"] - t_call, 3),
        "first_start_to_drained_s": round(span, 3),
        "jobs_per_s": round(n / span, 1),
        "db_first_start_to_last_done_s": round(db_span, 3) if db_span else None,
        "db_jobs_per_s": round(n / db_span, 1) if db_span else None,
        "cpu": cpu,
        "server_per_job": server,
    }


async def latency_worker(db: str, expect: int, concurrency: int, pool_max: int | None) -> None:
    app = make_app(db, pool_max)
    register(app)
    STATE.update(expect=expect, done=asyncio.Event(), lat=[])
    async with app.open_async():
        worker = asyncio.create_task(app.run_worker_async(concurrency=concurrency, install_signal_handlers=False))

        async def ready() -> None:
            await asyncio.sleep(2.0)
            print("READY", flush=True)

        announce = asyncio.create_task(ready())
        await asyncio.wait_for(STATE["done"].wait(), 120)
        await announce
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    print("LAT " + json.dumps(STATE["lat"]), flush=True)


async def latency(db: str, count: int, rate: float, concurrency: int, pool_max: int | None) -> dict:
    app = make_app(db, pool_max)
    noop = register(app)
    async with app.open_async():
        await reset(app)
        cmd = [
            sys.executable,
            __file__,
            "--db",
            db,
            "--role",
            "latency-worker",
            "--expect",
            str(count),
            "--concurrency",
            str(concurrency),
        ]
        if pool_max:
            cmd += ["--pool-max", str(pool_max)]
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.strip() == b"READY", line
        await asyncio.sleep(1.0)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i in range(count):
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await noop.defer_async(ts=bl.now())
        produce_s = loop.time() - t0
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    lat = next(json.loads(x[4:]) for x in out.decode().splitlines() if x.startswith("LAT "))
    return {"rate_target": rate, "produce_seconds": round(produce_s, 2), **bl.latency_summary(lat)}


async def main(a: argparse.Namespace) -> None:
    pool_max = a.pool_max or None
    if a.role == "latency-worker":
        await latency_worker(a.db, a.expect, a.concurrency, pool_max)
        return
    await ensure_schema(a.db)
    res: dict = {
        "library": "procrastinate",
        "version": PROC_VERSION,
        "psycopg": psycopg.__version__,
        "psycopg_impl": psycopg.pq.__impl__,
        "loop": "uvloop" if os.environ.get("BENCH_UVLOOP") == "1" else "asyncio",
        "pool_autocommit": AUTOCOMMIT,
        "label": a.label,
        "args": {k: v for k, v in vars(a).items() if k not in ("out", "role", "expect")},
    }
    phases = a.phases.split(",")
    if "single" in phases:
        res["enqueue_single"] = await enqueue_single(a.db, a.single, pool_max)
        bl.log("single", res["enqueue_single"])
    if "bulk" in phases:
        res["enqueue_bulk"] = await enqueue_bulk(a.db, a.n, a.chunk, pool_max)
        bl.log("bulk", res["enqueue_bulk"])
    if "process" in phases:
        res["process"] = await process(a.db, a.n, a.concurrency, pool_max, a.delete_jobs, not a.no_listen)
        bl.log("process", res["process"])
    if "latency" in phases:
        res["latency"] = await latency(a.db, a.trickle, a.rate, a.concurrency, pool_max)
        bl.log("latency", res["latency"])
    bl.write_result(a.out, res)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--db", default="procrastinate_bench")
    p.add_argument("--role", default="bench")
    p.add_argument("--phases", default="single,bulk,process,latency")
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--single", type=int, default=2_000)
    p.add_argument("--chunk", type=int, default=1_000)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--pool-max", type=int, default=0)
    p.add_argument("--delete-jobs", default="never", choices=["never", "successful", "always"])
    p.add_argument("--no-listen", action="store_true")
    p.add_argument("--trickle", type=int, default=200)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--expect", type=int, default=200)
    p.add_argument("--label", default="")
    p.add_argument("--out")
    a = p.parse_args()
    if os.environ.get("BENCH_UVLOOP") == "1":
        import uvloop

        uvloop.run(main(a))
    else:
        asyncio.run(main(a))
