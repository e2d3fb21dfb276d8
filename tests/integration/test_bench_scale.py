"""``fleetbox bench --processes``, ``--soak`` and ``benchmarks/compare.py`` with tiny numbers.

These check that the benchmarks run and report what they measured correctly, never how fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from fleetbox.bench import bench_schema, run_processes, run_soak
from fleetbox.config import Settings

REPO = Path(__file__).resolve().parents[2]


async def _schemas(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return {r["nspname"] for r in await conn.fetch("SELECT nspname FROM pg_namespace")}
    finally:
        await conn.close()


async def test_processes_drain_every_job_once_and_report_each_process(
    dsn: str, make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings()
    result = await run_processes(settings, dsn, jobs=600, processes=2, as_json=True)

    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == result
    assert (result["processes"], result["jobs"], result["attempts"], result["run_twice"]) == (2, 600, 600, 0)
    # Both processes ran and reported; between them they wrote every outcome.
    assert len(result["written_per_process"]) == 2 and sum(result["written_per_process"]) == 600
    assert len(result["rss_mb_per_process"]) == 2 and all(r > 10 for r in result["rss_mb_per_process"])
    assert result["drain_jobs_s"] > 0 and result["drain_seconds"] > 0
    assert all(r > 0 for r in result["rate_per_window"])
    # Every table of the schema, before and after, with its size.
    for side in ("tables_before", "tables_after"):
        assert {"jobs", "jobs_done", "job_attempts", "jobs_archive"} <= set(result[side])
        assert all(t["bytes"] > 0 for t in result[side].values())
    assert result["tables_after"]["job_attempts"]["bytes"] > result["tables_before"]["job_attempts"]["bytes"]
    assert bench_schema(settings.database.schema_name) not in await _schemas(dsn)


async def test_processes_prints_a_table(
    dsn: str, make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    await run_processes(make_settings(), dsn, jobs=100, processes=1, as_json=False)
    out = capsys.readouterr().out
    for label in ("drain", "run twice", "peak RSS, MB", "jobs_done", "job_attempts", "kB before"):
        assert label in out, label
    assert "run twice                   0" in out


async def test_processes_refuses_zero(dsn: str, make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ValueError, match="processes must be at least 1"):
        await run_processes(make_settings(), dsn, jobs=10, processes=0, as_json=True)


async def test_soak_processes_every_job_with_retention_and_reports_the_tables(
    dsn: str, make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings()
    result = await run_soak(settings, dsn, jobs=2_500, as_json=True)

    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    assert result["jobs"] == 2_500 and result["jobs_s"] > 0 and result["rss_mb"] > 10
    for side in ("tables_before", "tables_after"):
        assert {"jobs", "jobs_done", "job_attempts", "jobs_archive"} <= set(result[side])
    assert bench_schema(settings.database.schema_name) not in await _schemas(dsn)


def test_compare_prints_ratios_against_the_sql_ceiling(server_dsn: str) -> None:
    # No peers (they are the optional [bench] extra): fleetbox against the bare SQL loop, one round.
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "compare.py"),
            "--dsn",
            server_dsn,
            "--peers",
            "",
            "--rounds",
            "1",
            "--jobs",
            "400",
            "--single",
            "20",
            "--trickle",
            "10",
            "--prefix",
            prefix,
            "--busy",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=110,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("PostgreSQL ") and "1 interleaved rounds of 400 jobs; busy=True" in lines[0]
    for label in ("drain, jobs/s", "bulk enqueue, jobs/s", "single enqueue, jobs/s", "pickup p50, ms"):
        assert any(line.startswith(label) for line in lines), label
    assert any(line.strip().startswith("drain   vs SQL ceiling b100") for line in lines), done.stdout
    raw = json.loads(lines[-1])
    assert raw["busy"] is True
    (only,) = raw["rounds"]
    assert set(only) == {"fleetbox", "SQL ceiling b100"}
    assert only["SQL ceiling b100"]["drain"] > 0 and only["fleetbox"]["drain"] > 0
    # It dropped the databases it made.
    count = f"SELECT count(*) FROM pg_database WHERE datname LIKE '{prefix}%'"
    listed = subprocess.run(
        ["psql", "-X", "-At", "-d", server_dsn, "-c", count],
        capture_output=True,
        text=True,
        check=True,
    )
    assert listed.stdout.strip() == "0"
