"""RateEventWriter: rate-limit waits and 429s reach rate_limit_tracking in batches and the Prometheus figures."""

from __future__ import annotations

import asyncio

import asyncpg

from fleetbox.config import RateLimitSettings
from fleetbox.graph.ratelimit import Limiters, RateEvent, RateEventWriter
from fleetbox.monitor.metrics import Metrics
from fleetbox.store import Store
from tests.conftest import SCHEMA, wait_for


async def rows(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(
            f"SELECT resource, event, wait_ms, retry_after_ms, at, now() - at AS age"
            f" FROM {SCHEMA}.rate_limit_tracking ORDER BY id"
        )
    finally:
        await conn.close()


async def test_events_are_written_in_batches_by_the_running_writer(db: Store, dsn: str) -> None:
    metrics = Metrics()
    writer = RateEventWriter(db, metrics, flush_seconds=0.01)
    limiters = Limiters(RateLimitSettings(teams_per_chat_per_second=10), record=writer.record)
    task = asyncio.create_task(writer.run(), name="fleetbox.rate_events")
    try:
        limiters.pause("outlook", "a@contoso.com", 1.5)
        for _ in range(2):  # evenly spaced: the second waits a tenth of a second
            async with limiters.acquire("teams", "chat-a"):
                pass
        await wait_for(lambda: writer.written == 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    written = await rows(dsn)
    assert [(r["resource"], r["event"]) for r in written] == [("outlook", "throttled"), ("teams", "wait")]
    assert written[0]["retry_after_ms"] == 1500 and written[0]["wait_ms"] is None
    assert written[1]["wait_ms"] >= 90 and written[1]["retry_after_ms"] is None
    assert all(r["age"].total_seconds() < 60 for r in written)
    value = metrics.registry.get_sample_value
    assert value("fleetbox_graph_throttled_total", {"resource": "outlook"}) == 1
    assert value("fleetbox_rate_limit_waits_total", {"resource": "teams"}) == 1
    assert (value("fleetbox_rate_limit_wait_seconds_total", {"resource": "teams"}) or 0) >= 0.09
    assert b"fleetbox_graph_throttled_total" in metrics.render()


async def test_drain_writes_what_is_left_after_the_task_is_cancelled(db: Store, dsn: str) -> None:
    writer = RateEventWriter(db, Metrics(), flush_seconds=3600)
    task = asyncio.create_task(writer.run(), name="fleetbox.rate_events")
    for i in range(2500):  # more than one insert's worth
        writer.record(RateEvent("teams", f"chat-{i}", "wait", 2.0, None))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert writer.pending == 2500
    await writer.drain()
    assert writer.pending == 0
    assert len(await rows(dsn)) == 2500


async def test_recording_never_waits_for_the_database(dsn: str) -> None:
    # A database that is gone: record() still returns at once, and drain() gives up cleanly.
    async with Store(dsn, schema=SCHEMA, min_size=1, max_size=1) as db:
        writer = RateEventWriter(db, Metrics(), max_buffer=3)
    for _ in range(5):
        writer.record(RateEvent("outlook", None, "throttled", None, 1000.0))
    assert writer.pending == 3  # the oldest go when the buffer is full
    await writer.drain()
    assert writer.pending == 0
