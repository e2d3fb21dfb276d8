"""Fan-out of the stream: a suspended client costs one tick of memory and delays nobody; intervals.

The stream here samples only when the test calls ``step()``, on a monotonic time the test moves,
and is served on a real control socket: the suspended client is a raw socket that completes the
WebSocket handshake and then never reads, so the kernel buffers fill and the server's writer for
it blocks, as with a TUI stopped with ctrl-z.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from fleetbox.admin import AdminServer, ApplianceInfo, build_app
from fleetbox.admin.stream import MAX_EVENTS, Stream
from fleetbox.client import Client
from fleetbox.config import Settings
from fleetbox.monitor import Monitor
from fleetbox.protocol import STREAM_PATH
from fleetbox.store import Store
from tests.admin.conftest import admin_section
from tests.admin.test_socket import BASE, short_dir, unix_session  # noqa: F401

HANDSHAKE = (
    f"GET {STREAM_PATH} HTTP/1.1\r\nHost: fleetbox\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
).encode()


class Moment:
    """A monotonic time that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


Stepped = tuple[Stream, Moment, Path]


@pytest.fixture
async def stepped(
    db: Store,
    make_settings: Callable[..., Settings],
    short_dir: Path,  # noqa: F811
) -> AsyncIterator[tuple[Stream, Moment, Path]]:
    """A stream stepped by the test, served on a control socket."""
    moment = Moment()
    client = Client(db)
    info = ApplianceInfo("test", "test:1:abc", "0.1.0")
    stream = Stream(db, clock=client.clock, info=info.to_protocol(read_only=False), period=None, monotonic=moment)
    settings = make_settings(admin=admin_section())
    app = build_app(
        service=client.service,
        monitor=Monitor(db, client.service.thresholds, clock=client.clock),
        settings=settings,
        appliance_info=info,
        stream=stream,
    )
    path = short_dir / "admin.sock"
    async with AdminServer(app, host="127.0.0.1", port=0, socket_path=path):
        yield stream, moment, path


def frames(data: bytes) -> tuple[list[dict[str, Any]], bytes]:
    """Server frames (unmasked text) in ``data``, and the bytes of an incomplete last one."""
    out = []
    while len(data) >= 2:
        size, start = data[1] & 0x7F, 2
        if size == 126:
            if len(data) < 4:
                break
            size, start = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            if len(data) < 10:
                break
            size, start = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < start + size:
            break
        if data[0] & 0x0F == 0x1:
            out.append(json.loads(data[start : start + size]))
        data = data[start + size :]
    return out, data


async def test_a_suspended_client_gets_only_the_latest_tick_and_slows_nobody(stepped: Stepped) -> None:
    stream, moment, path = stepped
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # full after a few ticks
    raw.connect(str(path))
    reader, writer = await asyncio.open_unix_connection(sock=raw)
    writer.write(HANDSHAKE)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101")
    # ... and from now on the suspended client reads nothing.
    async with unix_session(path) as session, session.ws_connect(BASE + STREAM_PATH) as fast:
        assert (await fast.receive_json(timeout=10))["type"] == "hello"
        assert len(stream.subscribers) == 2
        loop = asyncio.get_running_loop()
        last = 0
        for _ in range(300):
            moment.now += 1
            began = loop.time()
            tick = await asyncio.wait_for(stream.step(), 5)
            # The fast client gets every tick, whatever the suspended one does.
            got = await fast.receive_json(timeout=5)
            assert (got["type"], got["seq"]) == ("tick", tick["seq"])
            assert loop.time() - began < 5
            # Nothing piles up for anyone: at most the one latest tick waits.
            assert all(sub.pending <= 1 for sub in stream.subscribers)
            last = tick["seq"]
        # The suspended client wakes up: it finds some ticks, then the latest, never a backlog.
        seen: list[int] = []
        buffered = await reader.read(65536)
        while True:
            got_frames, buffered = frames(buffered)
            seen += [f["seq"] for f in got_frames if f["type"] == "tick"]
            if seen and seen[-1] == last:
                break
            buffered += await asyncio.wait_for(reader.read(65536), 10)
        assert seen == sorted(set(seen)) and len(seen) < 300 and seen[-1] == last
    writer.close()
    await writer.wait_closed()


async def test_each_subscriber_gets_ticks_at_its_own_interval(stepped: Stepped) -> None:
    stream, moment, _path = stepped
    every_second = stream.subscribe()
    every_other = stream.subscribe(2000)
    received: dict[int, list[float]] = {1000: [], 2000: []}
    for _ in range(6):
        moment.now += 1
        await stream.step()
        for interval, sub in ((1000, every_second), (2000, every_other)):
            taken = await asyncio.wait_for(sub.take(lambda: 0.0), 1) if sub.pending else []
            received[interval] += [moment.now for f in taken or [] if f["type"] == "tick"]
    assert received == {1000: [1, 2, 3, 4, 5, 6], 2000: [2, 4, 6]}
    stream.set_interval(every_other, 5000)
    with pytest.raises(ValueError, match="1000, 2000, 5000, 10000"):
        stream.set_interval(every_other, 3000)
    with pytest.raises(ValueError, match="milliseconds"):
        stream.set_interval(every_other, True)


async def test_events_beyond_the_bound_are_dropped_and_counted(stepped: Stepped, db: Store) -> None:
    stream, moment, _path = stepped
    sub = stream.subscribe()
    moment.now += 1
    await stream.step()  # the first sample after subscribing starts the event cursors
    await sub.take(lambda: 0.0)
    client = Client(db)
    for n in range(MAX_EVENTS + 10):
        await client.set_paused("sync", n % 2 == 0, actor=f"op{n}")  # one event each: the actors differ
    moment.now += 1
    await stream.step()
    assert sub.pending == MAX_EVENTS + 1  # the bounded events and the one tick
    taken = await sub.take(lambda: 0.0)
    assert taken is not None
    assert taken[0] == {"type": "event", "kind": "events_missed", "queue": None, "t": 0.0, "count": 10}
    kinds = [f.get("kind") for f in taken[1:-1]]
    assert len(kinds) == MAX_EVENTS and set(kinds) == {"queue_paused", "queue_resumed"}
    assert taken[-1]["type"] == "tick"
