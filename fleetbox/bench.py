"""``fleetbox bench``: enqueue rates, drain throughput and pickup latency, measured in one run.

Nothing touches the user's queues: the benchmark builds a schema of its own next to the
configured one (``<schema_name>_bench``, dropped and migrated fresh), registers a ``bench`` queue
in the high tier with a no-op handler, and runs an :class:`~fleetbox.app.Appliance` in this
process against it. The schema is dropped again at the end.

Figures (the same phases as the peers' benchmarks, so the numbers compare side by side):

* bulk enqueue: ``Client.enqueue_many`` in chunks of 1,000 (these jobs are then drained);
* single enqueue: sequential ``Client.enqueue`` calls;
* drain: one appliance runs the pre-enqueued no-op jobs, from its start (the first claim) to
  the last outcome written (a ``job_attempts`` row and a ``jobs_done`` row per job);
* pickup latency: jobs trickled at 50/s from a separate connection into the idle appliance,
  from the enqueue call to the handler's start (so it includes the NOTIFY wake-up);
* with ``backlog``: the claim rate with a 10k and with a 1M backlog behind the claimed jobs
  (``claim_flatness`` is their ratio, 1.0 when the claim cost does not grow with the backlog).

Scale and churn (:func:`run_processes`, ``fleetbox bench --processes N``): ``jobs`` no-op jobs
bulk-enqueued, then drained by N appliance processes on the one database; the aggregate rate is
from the first attempt's start to the last one's finish (from job_attempts), ``run_twice`` counts
jobs with more than one attempt (must be 0), ``rss_mb`` is each process's peak resident memory, and
every table's live and dead tuples and size are printed before and after (the bloat report).
:func:`run_soak` (``--soak``) keeps a bounded backlog topped up while one appliance processes
``jobs`` jobs with retention archiving and deleting every minute, and prints the rate per minute
and every table's size before and after.

Dependencies (:func:`run_dependency_bench`, ``python -m fleetbox.bench --dsn DSN``): the claim
rate with and without 100k blocked jobs waiting, a 10k-job fan-out/fan-in workflow and a 20-layer
DAG (every step waiting for the whole layer before it), each from enqueue to the last step done.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from fleetbox import rules
from fleetbox.app import Appliance
from fleetbox.client import Client, NewJob
from fleetbox.config import QueueSettings, RetentionSettings, Settings
from fleetbox.models import Job, JobState
from fleetbox.service.dependencies import Step
from fleetbox.store import Store
from fleetbox.store.jobs import TableStats
from fleetbox.store.migrations import drop_schema, migrate, server_version, truncate, vacuum_analyze
from fleetbox.worker.registry import build_registry, register_queues

QUEUE = "bench"
CHUNK = 1_000
CLAIM_BATCH = 500
SINGLE_JOBS = 2_000
TRICKLE_RATE = 50.0
BACKLOG_SMALL = 10_000
BACKLOG_LARGE = 1_000_000
BACKLOG_SAMPLE = 10_000
#: The dependency figures: blocked jobs behind the claim, the fan-out width, the DAG's shape.
BLOCKED_JOBS = 100_000
FAN_OUT = 10_000
DAG_LAYERS = 20
DAG_WIDTH = 20
CLAIM_RUNS = 3
#: The rate curve of --processes and --soak: attempts finished per window of this many seconds.
RATE_WINDOW = 10.0
#: --soak keeps at most this many jobs waiting (topped up a chunk at a time).
SOAK_BACKLOG = 20_000


def bench_schema(schema_name: str) -> str:
    """The benchmark's own schema, beside the configured one (kept within 63 characters)."""
    return schema_name[:57] + "_bench"


def bench_settings(settings: Settings, dsn: str, schema: str) -> Settings:
    """The user's settings, pointed at the bench schema, with a large high pool and big batches.

    The pool holds two claim batches, so the dispatcher's next claim is in flight while the jobs
    of the last one run.
    """
    database = settings.database.model_copy(
        update={"dsn": SecretStr(dsn), "schema_name": schema, "pool_min": 2, "pool_max": 10}
    )
    appliance = settings.appliance.model_copy(
        update={
            "claim_batch": CLAIM_BATCH,
            "completion_batch": 1_000,
            "completion_flush_ms": 5.0,
            "shutdown_grace_seconds": 5.0,
        }
    )
    pools = settings.pools.model_copy(update={"high": 2 * CLAIM_BATCH})
    # No admin API: the bench must not take (or find taken) the port of a running appliance.
    admin = settings.admin.model_copy(update={"enabled": False})
    # No Graph processors (nor their simulator): the bench measures the queue, not Graph.
    graph = settings.graph.model_copy(update={"enabled": False})
    # Only the spec's queues and the bench queue: the user's handlers are not imported.
    return settings.model_copy(
        update={
            "database": database,
            "appliance": appliance,
            "pools": pools,
            "admin": admin,
            "graph": graph,
            "queues": {QUEUE: QueueSettings(tier="high")},
        }
    )


def _pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100), as the peers' benchmarks compute it."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100.0 * len(s) + 0.5) - 1))
    return s[k]


async def _wait_until(predicate: Callable[[], bool], limit: float, interval: float = 0.002) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


class _Bench:
    def __init__(self, settings: Settings, dsn: str, schema: str) -> None:
        self.settings = bench_settings(settings, dsn, schema)
        self.dsn = dsn
        self.schema = schema
        self.store = Store(dsn, schema=schema, min_size=1, max_size=2)
        self.client = Client(self.store, max_payload_bytes=self.settings.appliance.max_payload_bytes)
        self.handled = 0
        self.latencies: list[float] = []

    async def handler(self, job: Job) -> None:
        self.handled += 1
        sent = job.data.get("t")
        if sent is not None:
            self.latencies.append(time.perf_counter() - sent)

    async def setup(self) -> None:
        await drop_schema(self.store)
        await migrate(self.store)
        await register_queues(self.store, build_registry(self.settings, import_handlers=False))

    def appliance(self) -> Appliance:
        return Appliance(self.settings, dsn=self.dsn, handlers={QUEUE: self.handler})

    async def enqueue_bulk(self, n: int) -> float:
        """Seconds spent in enqueue_many to enqueue n jobs in chunks of CHUNK.

        Each job is its own NewJob with its own (empty) payload, built before its call is timed,
        as a caller would have them.
        """
        spent = 0.0
        for start in range(0, n, CHUNK):
            chunk = [NewJob(queue=QUEUE, data={}) for _ in range(min(CHUNK, n - start))]
            t0 = time.perf_counter()
            await self.client.enqueue_many(chunk)
            spent += time.perf_counter() - t0
        return spent

    async def enqueue_single(self, n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            await self.client.enqueue(QUEUE, {})
        return time.perf_counter() - t0

    async def counts(self) -> dict[str, int]:
        return await self.store.jobs.table_counts()

    async def drain(self, n: int) -> dict[str, Any]:
        """Run n pre-enqueued jobs with one appliance: first claim to last outcome written."""
        self.handled = 0
        app = self.appliance()
        await app.start()
        try:
            # start() returns with the dispatcher spawned: its first claim goes out now.
            t0 = time.perf_counter()
            done = await _wait_until(lambda: app.worker.completer.written >= n, limit=max(60.0, n / 500))
            elapsed = time.perf_counter() - t0
            claims = app.worker.dispatcher.claims
            batches = app.worker.completer.batches
        finally:
            await app.stop()
        if not done:
            raise RuntimeError(f"drain did not finish: {app.worker.completer.written} of {n} written")
        return {"seconds": elapsed, "jobs_s": n / elapsed, "claims": claims, "completion_batches": batches}

    async def pickup(self, count: int) -> dict[str, Any]:
        """Trickle count jobs at TRICKLE_RATE/s into an idle appliance, from another connection."""
        self.latencies = []
        app = self.appliance()
        await app.start()
        try:
            async with Client.connect(self.dsn, schema=self.schema) as producer:
                await producer.queues()  # learn the tiers before the clock starts
                await asyncio.sleep(1.0)  # let the appliance sit idle
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                for i in range(count):
                    delay = t0 + i / TRICKLE_RATE - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await producer.enqueue(QUEUE, {"t": time.perf_counter()})
                ok = await _wait_until(lambda: len(self.latencies) >= count, limit=30, interval=0.01)
        finally:
            await app.stop()
        if not ok:
            raise RuntimeError(f"pickup: {len(self.latencies)} of {count} jobs ran")
        ms = [x * 1000 for x in self.latencies]
        return {"p50_ms": _pct(ms, 50), "p90_ms": _pct(ms, 90), "p99_ms": _pct(ms, 99), "max_ms": max(ms)}

    async def blocked(self, count: int) -> float:
        """Seconds to enqueue ``count`` jobs blocked for good: workflows whose first step is on a
        queue this benchmark never runs."""
        t0 = time.perf_counter()
        per = rules.MAX_WORKFLOW_STEPS - 1
        for start in range(0, count, per):
            n = min(per, count - start)
            steps = [Step(name="parent", queue="sync", data={})]
            steps += [Step(name=f"c{i}", queue=QUEUE, data={}, after=("parent",)) for i in range(n)]
            await self.client.service.dependencies.enqueue_workflow("blocked", steps)
        return time.perf_counter() - t0

    async def flow(self, name: str, steps: list[Step], last: str) -> dict[str, Any]:
        """Enqueue a workflow and run it with one appliance until its ``last`` step is done."""
        self.handled = 0
        t0 = time.perf_counter()
        result = await self.client.service.dependencies.enqueue_workflow(name, steps)
        enqueued = time.perf_counter() - t0
        app = self.appliance()
        await app.start()
        try:
            t1 = time.perf_counter()
            done = await _wait_until(lambda: app.worker.completer.written >= len(steps), limit=600, interval=0.01)
            ran = time.perf_counter() - t1
        finally:
            await app.stop()
        final = await self.client.get_job(result.jobs[last])
        if not done or final.state is not JobState.SUCCEEDED:
            raise RuntimeError(
                f"{name}: {app.worker.completer.written} of {len(steps)} steps done, {last} {final.state}"
            )
        return {"enqueue_s": enqueued, "run_s": ran, "jobs_s": len(steps) / ran}

    async def claim_rate(self, backlog: int, sample: int) -> float:
        """Jobs/s claimed and finished for the first ``sample`` jobs of a ``backlog`` deep queue."""
        await truncate(self.store, "jobs", "jobs_done", "job_attempts")
        await self.enqueue_bulk(backlog)
        await vacuum_analyze(self.store, "jobs")
        app = self.appliance()
        await app.start()
        try:
            t0 = time.perf_counter()
            await _wait_until(lambda: app.worker.completer.written >= sample, limit=120)
            elapsed = time.perf_counter() - t0
        finally:
            await app.stop()
        return app.worker.completer.written / elapsed if elapsed > 0 else 0.0


async def run_bench(
    settings: Settings,
    dsn: str,
    *,
    jobs: int,
    latency_jobs: int,
    as_json: bool,
    backlog: bool = False,
    single_jobs: int | None = None,
) -> int:
    """Measure and print the figures; returns the exit code (0)."""
    if jobs < 1 or latency_jobs < 1:
        raise ValueError("jobs and latency_jobs must be at least 1")
    single = single_jobs if single_jobs is not None else min(SINGLE_JOBS, max(jobs, 100))

    def say(text: str) -> None:
        if not as_json:
            print(f"  {text} ...", file=sys.stderr, flush=True)

    schema = bench_schema(settings.database.schema_name)
    b = _Bench(settings, dsn, schema)
    # The appliances started and stopped here would log each start and stop: keep to warnings.
    logger = logging.getLogger("fleetbox")
    level = logger.level
    if logger.getEffectiveLevel() < logging.WARNING and logger.getEffectiveLevel() != logging.DEBUG:
        logger.setLevel(logging.WARNING)
    await b.store.open()
    results: dict[str, Any] = {}
    try:
        await b.setup()
        version = await server_version(b.store)
        # This process imported the whole appliance (some 80k objects a producer does not hold);
        # out of the collector's way, as an appliance's own are once it started, the enqueue
        # figures measure fleetbox's path and not full collections walking them.
        gc.freeze()

        say(f"single enqueue of {single} jobs")
        single_s = await b.enqueue_single(single)
        await truncate(b.store, "jobs")

        say(f"bulk enqueue of {jobs} jobs in chunks of {CHUNK}")
        bulk_s = await b.enqueue_bulk(jobs)
        await vacuum_analyze(b.store, "jobs")

        say(f"drain of {jobs} no-op jobs")
        drain = await b.drain(jobs)
        counts = await b.counts()
        if counts != {"waiting": 0, "done": jobs, "attempts": jobs}:
            raise RuntimeError(f"drain left the tables inconsistent: {counts}")

        say(f"pickup latency of {latency_jobs} jobs at {TRICKLE_RATE:g}/s")
        pickup = await b.pickup(latency_jobs)

        results = {
            "bulk_enqueue_jobs_s": round(jobs / bulk_s, 1),
            "single_enqueue_jobs_s": round(single / single_s, 1),
            "drain_jobs_s": round(drain["jobs_s"], 1),
            "pickup_p50_ms": round(pickup["p50_ms"], 3),
            "pickup_p99_ms": round(pickup["p99_ms"], 3),
            "pickup_p90_ms": round(pickup["p90_ms"], 3),
            "pickup_max_ms": round(pickup["max_ms"], 3),
            "jobs": jobs,
            "single_jobs": single,
            "latency_jobs": latency_jobs,
            "drain_seconds": round(drain["seconds"], 3),
            "drain_claims": drain["claims"],
            "drain_completion_batches": drain["completion_batches"],
            "postgres_version": version,
            "python": platform.python_version(),
            "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        }
        if backlog:
            say(f"claim rate behind a {BACKLOG_SMALL} job backlog")
            small = await b.claim_rate(BACKLOG_SMALL, min(BACKLOG_SAMPLE, BACKLOG_SMALL))
            say(f"claim rate behind a {BACKLOG_LARGE} job backlog")
            large = await b.claim_rate(BACKLOG_LARGE, BACKLOG_SAMPLE)
            results.update(
                {
                    "claim_jobs_s_backlog_10k": round(small, 1),
                    "claim_jobs_s_backlog_1m": round(large, 1),
                    "claim_flatness": round(large / small, 3) if small else None,
                }
            )
    finally:
        gc.unfreeze()
        try:
            await drop_schema(b.store)
        finally:
            await b.store.close()
            logger.setLevel(level)

    if as_json:
        print(json.dumps(results))
    else:
        _print_table(results)
    return 0


async def run_dependency_bench(settings: Settings, dsn: str, *, as_json: bool) -> dict[str, Any]:
    """Measure and print the dependency figures (see the module's docstring); returns them."""
    schema = bench_schema(settings.database.schema_name)
    b = _Bench(settings, dsn, schema)
    logging.getLogger("fleetbox").setLevel(logging.WARNING)
    await b.store.open()
    try:
        await b.setup()
        # The best of three runs each: one run is short, and a shared machine makes it noisy.
        claim_before = max([await b.claim_rate(BACKLOG_SAMPLE, BACKLOG_SAMPLE) for _ in range(CLAIM_RUNS)])
        blocked_s = await b.blocked(BLOCKED_JOBS)
        claim_after = max([await b.claim_rate(BACKLOG_SAMPLE, BACKLOG_SAMPLE) for _ in range(CLAIM_RUNS)])
        blocked_left = await b.store.dependencies.blocked_count()
        if blocked_left != BLOCKED_JOBS:
            raise RuntimeError(f"{blocked_left} blocked jobs left, not {BLOCKED_JOBS}")

        fan = [Step(name="root", queue=QUEUE, data={})]
        fan += [Step(name=f"m{i}", queue=QUEUE, data={}, after=("root",)) for i in range(FAN_OUT)]
        fan.append(Step(name="sink", queue=QUEUE, data={}, after=tuple(f"m{i}" for i in range(FAN_OUT))))
        fan_out = await b.flow("fan-out/fan-in", fan, "sink")

        dag: list[Step] = []
        for layer in range(DAG_LAYERS):
            above = tuple(f"l{layer - 1}-{j}" for j in range(DAG_WIDTH)) if layer else ()
            dag += [Step(name=f"l{layer}-{j}", queue=QUEUE, data={}, after=above) for j in range(DAG_WIDTH)]
        dag.append(
            Step(name="end", queue=QUEUE, data={}, after=tuple(f"l{DAG_LAYERS - 1}-{j}" for j in range(DAG_WIDTH)))
        )
        layered = await b.flow("layers", dag, "end")
    finally:
        try:
            await drop_schema(b.store)
        finally:
            await b.store.close()
    results = {
        "claim_jobs_s_no_blocked": round(claim_before, 1),
        "claim_jobs_s_100k_blocked": round(claim_after, 1),
        "claim_ratio": round(claim_after / claim_before, 3) if claim_before else None,
        "blocked_enqueue_jobs_s": round(BLOCKED_JOBS / blocked_s, 1),
        "fan_out_jobs": len(fan),
        "fan_out_enqueue_s": round(fan_out["enqueue_s"], 3),
        "fan_out_run_s": round(fan_out["run_s"], 3),
        "fan_out_jobs_s": round(fan_out["jobs_s"], 1),
        "dag_layers": DAG_LAYERS,
        "dag_width": DAG_WIDTH,
        "dag_jobs": len(dag),
        "dag_edges": DAG_WIDTH * DAG_WIDTH * (DAG_LAYERS - 1) + DAG_WIDTH,
        "dag_enqueue_s": round(layered["enqueue_s"], 3),
        "dag_run_s": round(layered["run_s"], 3),
        "dag_ms_per_layer": round(layered["run_s"] * 1000 / (DAG_LAYERS + 1), 2),
    }
    if as_json:
        print(json.dumps(results))
    else:
        for key, value in results.items():
            print(f"  {key:<28} {value}")
    return results


def _rss_mb() -> float:
    """This process's peak resident memory in MB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tables(stats: list[TableStats]) -> dict[str, dict[str, int]]:
    return {t.name: {"live": t.live, "dead": t.dead, "bytes": t.bytes, "vacuums": t.vacuums} for t in stats}


def _quiet() -> None:
    # The appliances started and stopped here would log each start and stop: keep to warnings.
    logger = logging.getLogger("fleetbox")
    if logger.getEffectiveLevel() < logging.WARNING and logger.getEffectiveLevel() != logging.DEBUG:
        logger.setLevel(logging.WARNING)


async def _appliance_process(dsn: str, schema: str) -> None:
    """One appliance process of ``--processes``: runs no-op jobs until the hot table is empty,
    then prints what it wrote and its peak RSS as one JSON line."""
    base = Settings()
    settings = bench_settings(
        base.model_copy(update={"database": base.database.model_copy(update={"schema_name": schema})}), dsn, schema
    )

    async def noop(job: Job) -> None:
        return None

    app = Appliance(settings, dsn=dsn, handlers={QUEUE: noop})
    async with Store(dsn, schema=schema, min_size=1, max_size=1) as store:
        await app.start()
        try:
            # Polled, not notified: emptiness is a fact of the shared table, not of this process.
            while True:
                if await store.jobs.bench_empty():
                    break
                await asyncio.sleep(0.1)
        finally:
            await app.stop()
    print(json.dumps({"pid": os.getpid(), "written": app.worker.completer.written, "rss_mb": round(_rss_mb(), 1)}))


async def run_processes(settings: Settings, dsn: str, *, jobs: int, processes: int, as_json: bool) -> dict[str, Any]:
    """Drain ``jobs`` pre-enqueued no-op jobs with ``processes`` appliance processes; print and
    return the aggregate rate, the jobs run twice, each process's RSS and the tables' bloat."""
    if jobs < 1 or processes < 1:
        raise ValueError("jobs and processes must be at least 1")
    schema = bench_schema(settings.database.schema_name)
    b = _Bench(settings, dsn, schema)
    _quiet()
    await b.store.open()
    try:
        await b.setup()
        await b.enqueue_bulk(jobs)
        await vacuum_analyze(b.store, "jobs")
        before = await b.store.jobs.bench_table_stats()
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "fleetbox.bench",
                "--appliance",
                "--dsn",
                dsn,
                "--schema",
                schema,
                stdout=asyncio.subprocess.PIPE,
            )
            for _ in range(processes)
        ]
        outs = [await c.communicate() for c in children]
        failed = [c.returncode for c in children if c.returncode != 0]
        if failed:
            raise RuntimeError(f"appliance processes exited with {failed}")
        reports = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outs]
        counts = await b.counts()
        twice = await b.store.jobs.bench_run_twice()
        span, windows = await b.store.jobs.bench_rate_windows(RATE_WINDOW)
        after = await b.store.jobs.bench_table_stats()
        version = await server_version(b.store)
    finally:
        try:
            await drop_schema(b.store)
        finally:
            await b.store.close()
    if counts["waiting"] != 0 or counts["done"] != jobs:
        raise RuntimeError(f"the processes left the tables inconsistent: {counts}")
    results = {
        "processes": processes,
        "jobs": jobs,
        "drain_jobs_s": round(jobs / span, 1) if span > 0 else None,
        "drain_seconds": round(span, 3),
        "run_twice": twice,
        "attempts": counts["attempts"],
        "written_per_process": [r["written"] for r in reports],
        "rss_mb_per_process": [r["rss_mb"] for r in reports],
        "rate_per_window": _window_rates(windows, span),
        "rate_window_s": RATE_WINDOW,
        "tables_before": _tables(before),
        "tables_after": _tables(after),
        "postgres_version": version,
    }
    if as_json:
        print(json.dumps(results))
    else:
        print(f"fleetbox bench --processes {processes}: PostgreSQL {version}")
        print(
            f"  drain            {results['drain_jobs_s']:>12,.0f} jobs/s  {jobs:,} jobs in {span:.2f} s, "
            f"aggregate of {processes} processes"
        )
        print(f"  run twice        {twice:>12}  ({counts['attempts']:,} attempts for {jobs:,} jobs)")
        print(f"  written          {results['written_per_process']}")
        print(f"  peak RSS, MB     {results['rss_mb_per_process']}")
        print(f"  jobs/s per {RATE_WINDOW:g} s  {results['rate_per_window']}")
        _print_tables(before, after)
    return results


def _window_rates(counts: list[int], span: float) -> list[float]:
    """Jobs/s in each window; the last one is only as long as what is left of ``span``."""
    rates = [n / RATE_WINDOW for n in counts]
    if counts:
        last = span - RATE_WINDOW * (len(counts) - 1)
        if last > 0:
            rates[-1] = counts[-1] / min(last, RATE_WINDOW)
    return [round(r, 1) for r in rates]


def soak_settings(settings: Settings) -> Settings:
    """Retention at its fastest: completed jobs archived once a second old, every minute, and
    archived ones deleted at once (the soak's retention "on")."""
    retention = RetentionSettings(
        archive_hours=1 / 3600, delete_days=1 / 86400, archive_cron="* * * * *", cleanup_cron="* * * * *"
    )
    return settings.model_copy(update={"retention": retention})


async def run_soak(settings: Settings, dsn: str, *, jobs: int, as_json: bool) -> dict[str, Any]:
    """Process ``jobs`` jobs with one appliance, the backlog topped up to SOAK_BACKLOG, retention on;
    print and return the rate per window and every table's size before and after."""
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    schema = bench_schema(settings.database.schema_name)
    b = _Bench(soak_settings(settings), dsn, schema)
    _quiet()
    await b.store.open()
    rates: list[float] = []
    try:
        await b.setup()
        before = await b.store.jobs.bench_table_stats()
        app = b.appliance()
        await app.start()
        try:
            loop = asyncio.get_running_loop()
            enqueued = 0
            t0 = mark = loop.time()
            seen = 0
            while app.worker.completer.written < jobs:
                if enqueued < jobs and enqueued - app.worker.completer.written < SOAK_BACKLOG:
                    n = min(CHUNK, jobs - enqueued)
                    await b.client.enqueue_many([NewJob(queue=QUEUE, data={}) for _ in range(n)])
                    enqueued += n
                else:
                    await asyncio.sleep(0.01)
                if loop.time() - mark >= RATE_WINDOW:
                    written = app.worker.completer.written
                    rates.append(round((written - seen) / (loop.time() - mark), 1))
                    seen, mark = written, loop.time()
                if loop.time() - t0 > max(120.0, jobs / 200):
                    raise RuntimeError(f"soak did not finish: {app.worker.completer.written} of {jobs} written")
            elapsed = loop.time() - t0
        finally:
            await app.stop()
        after = await b.store.jobs.bench_table_stats()
        version = await server_version(b.store)
    finally:
        try:
            await drop_schema(b.store)
        finally:
            await b.store.close()
    results = {
        "jobs": jobs,
        "seconds": round(elapsed, 1),
        "jobs_s": round(jobs / elapsed, 1),
        "rate_per_window": rates,
        "rate_window_s": RATE_WINDOW,
        "rss_mb": round(_rss_mb(), 1),
        "tables_before": _tables(before),
        "tables_after": _tables(after),
        "postgres_version": version,
    }
    if as_json:
        print(json.dumps(results))
    else:
        print(
            f"fleetbox bench --soak: {jobs:,} jobs in {elapsed:.1f} s ({results['jobs_s']:,.0f} jobs/s), "
            f"retention every minute; PostgreSQL {version}"
        )
        print(f"  jobs/s per {RATE_WINDOW:g} s  {rates}")
        print(f"  peak RSS, MB     {results['rss_mb']}")
        _print_tables(before, after)
    return results


def _print_tables(before: list[TableStats], after: list[TableStats]) -> None:
    was = {t.name: t for t in before}
    print(f"  {'table':<24} {'kB before':>10} {'kB after':>10} {'live':>10} {'dead':>10} {'vacuums':>8}")
    for t in after:
        old = was.get(t.name)
        kb = f"{old.bytes // 1024:>10,}" if old else f"{'':>10}"
        print(f"  {t.name:<24} {kb} {t.bytes // 1024:>10,} {t.live:>10,} {t.dead:>10,} {t.vacuums:>8}")


def _main() -> None:
    parser = argparse.ArgumentParser(prog="python -m fleetbox.bench", description="dependency benchmark figures")
    parser.add_argument("--dsn", required=True, help="PostgreSQL DSN")
    parser.add_argument("--schema", default="fleetbox", help="schema name; the benchmark uses <schema>_bench")
    parser.add_argument("--json", action="store_true")
    # An appliance process of `fleetbox bench --processes` (the bench schema is already migrated).
    parser.add_argument("--appliance", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.appliance:
        _quiet()
        asyncio.run(_appliance_process(args.dsn, args.schema))
        return
    base = Settings()
    settings = base.model_copy(update={"database": base.database.model_copy(update={"schema_name": args.schema})})
    asyncio.run(run_dependency_bench(settings, args.dsn, as_json=args.json))


def _print_table(r: dict[str, Any]) -> None:
    rows = [
        ("bulk enqueue", f"{r['bulk_enqueue_jobs_s']:,.0f} jobs/s", f"{r['jobs']:,} jobs, enqueue_many x {CHUNK:,}"),
        ("single enqueue", f"{r['single_enqueue_jobs_s']:,.0f} jobs/s", f"{r['single_jobs']:,} sequential calls"),
        (
            "drain",
            f"{r['drain_jobs_s']:,.0f} jobs/s",
            f"{r['jobs']:,} no-op jobs in {r['drain_seconds']:.2f} s, every attempt recorded",
        ),
        (
            "pickup p50",
            f"{r['pickup_p50_ms']:.2f} ms",
            f"{r['latency_jobs']:,} jobs at {TRICKLE_RATE:g}/s, enqueue call -> handler start",
        ),
        ("pickup p99", f"{r['pickup_p99_ms']:.2f} ms", f"max {r['pickup_max_ms']:.2f} ms"),
    ]
    if "claim_flatness" in r:
        rows += [
            ("claim, 10k backlog", f"{r['claim_jobs_s_backlog_10k']:,.0f} jobs/s", ""),
            (
                "claim, 1M backlog",
                f"{r['claim_jobs_s_backlog_1m']:,.0f} jobs/s",
                f"flatness {r['claim_flatness']:.2f} (1.00 = flat)",
            ),
        ]
    print(f"fleetbox bench: PostgreSQL {r['postgres_version']}, Python {r['python']}, {r['event_loop']} loop")
    width = max(len(name) for name, _, _ in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>16}  {note}".rstrip())


if __name__ == "__main__":
    _main()
