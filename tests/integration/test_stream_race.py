"""The live stream's sampler and its subscribers: a client that subscribes while a sample is in
flight (the last one left, a new one came) must not break that sample or lose a tick."""

from __future__ import annotations

import asyncio

from fleetbox.admin.routes import ApplianceInfo
from fleetbox.admin.stream import Stream
from fleetbox.client import Client
from fleetbox.store import Store


async def test_subscribing_during_a_sample_breaks_nothing_and_events_start_from_then(db: Store) -> None:
    client = Client(db)
    info = ApplianceInfo("test", "test:1:abc", "0.1.0").to_protocol(read_only=False)
    stream = Stream(db, clock=client.clock, info=info, period=None)
    first = stream.subscribe()
    await stream.step()  # the event cursors start here
    # Land a new subscription at every point of a sample: the last subscriber leaves and a new one
    # comes while the sampler awaits the database (which resets where events start). A sample
    # takes a few milliseconds; the subscriptions land from its start to past its end.
    began = asyncio.get_running_loop().time()
    await stream.step()
    took = asyncio.get_running_loop().time() - began
    for i in range(60):
        step = asyncio.create_task(stream.step())
        await asyncio.sleep(took * i / 40)
        stream.unsubscribe(first)
        first = stream.subscribe()
        tick = await step  # the old code failed an assertion here, and the tick was lost
        assert tick["type"] == "tick"
    # Events after the new subscription reach it.
    await stream.step()
    await client.set_paused("sync", True, actor="ops")
    await stream.step()
    frames = await asyncio.wait_for(first.take(lambda: 0.0), 5)
    assert frames is not None
    assert [f["kind"] for f in frames if f["type"] == "event"] == ["queue_paused"]
    await stream.stop()
