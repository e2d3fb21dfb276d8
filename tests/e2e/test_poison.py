"""A poison payload cannot stop an appliance: refused at every way in, dead-lettered when one is
already stored, and no appliance that meets it exits; a forced stop exits non-zero."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import FleetboxProcess, log_entries, write_config

QUEUE = "e2e-poison"
#: The payload of the security review: enough nesting to exhaust a recursive decoder's stack.
DEEP = '{"a":' * 3000 + "1" + "}" * 3000


async def test_the_sql_function_refuses_a_deeply_nested_payload(pg: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.InvalidParameterValueError, match=r"^data: is nested more than 64 levels deep"):
        await pg.fetchrow("SELECT * FROM fleetbox.enqueue('sync', $1::text::jsonb)", DEEP)
    assert await pg.fetchval("SELECT count(*) FROM jobs") == 0


async def test_a_stored_poison_job_is_dead_lettered_and_both_appliances_stay_up(
    start_appliance: Callable[..., FleetboxProcess], pg: asyncpg.Connection, tmp_path: Path, log_dir: Path
) -> None:
    config = write_config(
        tmp_path / "fleetbox.e2e.toml", queues={QUEUE: {"tier": "high", "handler": "tests.e2e.handlers:record"}}
    )
    apps = [start_appliance(name, config) for name in ("a", "b")]
    for app in apps:
        await app.wait_ready()
    # A row stored before fleetbox limited nesting (or written by hand, past the SQL function):
    # the decoder cannot read it, so no handler can run it.
    poison = await pg.fetchval(
        "INSERT INTO jobs (queue, tier, data) VALUES ($1, 1, $2::text::jsonb) RETURNING id", QUEUE, DEEP
    )
    fine = await pg.fetchval(
        "INSERT INTO jobs (queue, tier, data) VALUES ($1, 1, $2::text::jsonb) RETURNING id", QUEUE, '{"n": 1}'
    )
    await pg.execute("SELECT pg_notify('fleetbox_jobs', '1')")

    async def settled() -> bool:
        done = await pg.fetch("SELECT id, state FROM jobs_done WHERE id = ANY($1::bigint[])", [poison, fine])
        return {r["id"]: r["state"] for r in done} == {poison: "dead", fine: "succeeded"}

    await wait_for(settled, timeout=30)
    letter = await pg.fetchrow("SELECT error_class, error FROM dead_letters WHERE job_id = $1", poison)
    assert letter["error_class"] == "poison"
    assert "cannot be decoded" in letter["error"] and "nested too deeply" in letter["error"]
    assert [e["job"] for e in log_entries(log_dir, "start")] == [fine]  # no handler saw the poison
    for app in apps:
        assert app.proc.poll() is None, app.describe()
        assert app.find_event("task_failed") is None, app.describe()


async def test_a_second_stop_signal_forces_exit_with_a_non_zero_status(
    start_appliance: Callable[..., FleetboxProcess], pg: asyncpg.Connection, tmp_path: Path, log_dir: Path
) -> None:
    config = write_config(
        tmp_path / "fleetbox.e2e.toml", queues={QUEUE: {"tier": "high", "handler": "tests.e2e.handlers:gated"}}
    )
    app = start_appliance("a", config)
    await app.wait_ready()
    gate = tmp_path / "never-opened"
    await pg.fetchval("SELECT job_id FROM fleetbox.enqueue($1, $2::jsonb)", QUEUE, json.dumps({"gate": str(gate)}))
    await wait_for(lambda: len(log_entries(log_dir, "start")) == 1)
    app.signal(signal.SIGTERM)
    await app.wait_event("shutdown_waiting")  # the grace period: the gated job is still running
    app.signal(signal.SIGTERM)
    assert await app.wait_exit(timeout=10) == 130
    assert app.find_event("forced_exit") is not None
