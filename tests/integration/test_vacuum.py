"""The appliance vacuums its hot table after many outcomes, whatever the server's autovacuum does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from fleetbox import worker
from fleetbox.app import Appliance
from fleetbox.models import Job
from tests.conftest import wait_for


async def _vacuums_of_jobs(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        # Only manual vacuums: the appliance's (autovacuum's own are counted apart).
        return int(
            await conn.fetchval(
                "SELECT vacuum_count FROM pg_stat_user_tables WHERE schemaname = 'fleetbox' AND relname = 'jobs'"
            )
        )
    finally:
        await conn.close()


async def test_appliance_vacuums_jobs_once_enough_outcomes_were_written(
    dsn: str, appliance_factory: Callable[..., Awaitable[Appliance]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small numbers instead of 20,000 outcomes and a 2 s check.
    monkeypatch.setattr(worker, "VACUUM_AFTER", 50)
    monkeypatch.setattr(worker, "VACUUM_CHECK_SECONDS", 0.05)
    ran: list[int] = []

    async def handler(job: Job) -> None:
        ran.append(job.id)

    app = await appliance_factory(handlers={"sync": handler})
    before = await _vacuums_of_jobs(dsn)
    await app.client.enqueue_many([{"queue": "sync", "data": {"i": i}} for i in range(30)])
    await wait_for(lambda: app.worker.completer.written >= 30)
    # Fewer outcomes than the threshold: no vacuum yet.
    assert app.worker.vacuums == 0

    await app.client.enqueue_many([{"queue": "sync", "data": {"i": i}} for i in range(30)])
    await wait_for(lambda: app.worker.vacuums >= 1, timeout=20)
    assert app.worker.vacuum_failures == 0
    assert len(ran) == 60

    async def counted() -> Any:
        # The statistics reach pg_stat_user_tables within a second or so.
        return await _vacuums_of_jobs(dsn) > before

    await wait_for(counted, timeout=20)
