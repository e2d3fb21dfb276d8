"""``fleetbox bench`` end to end with tiny numbers: every figure is measured and positive."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import asyncpg
import pytest

from fleetbox.bench import bench_schema, run_bench
from fleetbox.config import Settings


async def test_bench_measures_every_figure_in_its_own_schema(
    dsn: str, make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings()
    started = time.monotonic()
    assert await run_bench(settings, dsn, jobs=300, latency_jobs=20, as_json=True) == 0
    assert time.monotonic() - started < 30

    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("bulk_enqueue_jobs_s", "single_enqueue_jobs_s", "drain_jobs_s", "pickup_p50_ms", "pickup_p99_ms"):
        assert isinstance(figures[key], float) and figures[key] > 0, key
    assert figures["pickup_p50_ms"] <= figures["pickup_p99_ms"]
    assert (figures["jobs"], figures["latency_jobs"]) == (300, 20)
    assert figures["postgres_version"]

    conn = await asyncpg.connect(dsn)
    try:
        schemas = {r["nspname"] for r in await conn.fetch("SELECT nspname FROM pg_namespace")}
        # The user's schema was never touched, and the bench schema is gone again.
        assert bench_schema(settings.database.schema_name) not in schemas
        assert await conn.fetchval("SELECT count(*) FROM fleetbox.jobs") == 0
        assert await conn.fetchval("SELECT count(*) FROM fleetbox.job_attempts") == 0
    finally:
        await conn.close()


async def test_bench_prints_a_table(
    dsn: str, make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_bench(make_settings(), dsn, jobs=100, latency_jobs=5, as_json=False) == 0
    out = capsys.readouterr().out
    for label in ("bulk enqueue", "single enqueue", "drain", "pickup p50", "pickup p99"):
        assert label in out
