"""The live stream (GET /api/queue/stream) over the control socket, against a real appliance.

Every frame is checked against the TypedDicts of fleetbox/protocol.py (the TUI codes against
them). Waiting is on frames with deadlines; the appliance samples once a second.
"""

from __future__ import annotations

import asyncio
import types
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, NotRequired, get_args, get_origin, get_type_hints

import aiohttp
import pytest

from fleetbox import protocol
from fleetbox.admin import ApplianceInfo, build_app
from fleetbox.admin.stream import Stream
from fleetbox.app import Appliance
from fleetbox.client import Client
from fleetbox.protocol import HISTORY_SECONDS, OPERATOR_HEADER, STREAM_PATH
from tests.admin.conftest import READ, WORK, Behaviour, admin_section
from tests.admin.conftest import test_monitor as monitor_for
from tests.admin.test_socket import BASE, short_dir, start_with_socket, unix_session  # noqa: F401

# -- a validator for the protocol's TypedDicts ------------------------------------------------


def conforms(value: object, tp: Any, where: str = "$") -> list[str]:
    """What in ``value`` does not match the type ``tp`` (empty: it conforms)."""
    origin = get_origin(tp)
    if tp is Any or tp is object:
        return []
    if origin is NotRequired:
        return conforms(value, get_args(tp)[0], where)
    if typing.is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        # protocol.py has postponed annotations, so on Python 3.11 __required_keys__ cannot see
        # NotRequired: read it from the hints themselves.
        hints = get_type_hints(tp, include_extras=True)
        required = [k for k, h in hints.items() if get_origin(h) is not NotRequired]
        errors = [f"{where}.{k}: missing" for k in required if k not in value]
        errors += [f"{where}.{k}: not in {tp.__name__}" for k in value if k not in hints]
        for k, v in value.items():
            if k in hints:
                errors += conforms(v, hints[k], f"{where}.{k}")
        return errors
    if origin is Literal:
        return [] if value in get_args(tp) else [f"{where}: {value!r} not one of {get_args(tp)}"]
    if origin in (typing.Union, types.UnionType):
        options = [conforms(value, option, where) for option in get_args(tp)]
        return [] if any(not o for o in options) else [f"{where}: {value!r} matches none of {tp}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [e for i, item in enumerate(value) for e in conforms(item, get_args(tp)[0], f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: expected an object"]
        return [e for k, item in value.items() for e in conforms(item, get_args(tp)[1], f"{where}.{k}")]
    if tp is type(None):
        return [] if value is None else [f"{where}: expected null"]
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{where}: expected a number, got {value!r}"]
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{where}: expected an integer, got {value!r}"]
    return [] if isinstance(value, tp) else [f"{where}: expected {tp.__name__}, got {value!r}"]


def test_the_validator_catches_what_it_should() -> None:
    good = {"type": "error", "field": None, "message": "x"}
    assert conforms(good, protocol.ErrorFrame) == []
    assert conforms({**good, "extra": 1}, protocol.ErrorFrame) == ["$.extra: not in ErrorFrame"]
    assert conforms({"type": "error", "message": 3}, protocol.ErrorFrame) == [
        "$.field: missing",
        "$.message: expected str, got 3",
    ]
    assert conforms({"busy": True, "size": 1.5}, protocol.Workers) != []


# -- a stream client --------------------------------------------------------------------------

Frame = dict[str, Any]


class StreamClient:
    """One WebSocket subscriber; frames are read by the test, in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[Frame] = []

    async def next(self, timeout: float = 10.0) -> Frame:  # noqa: ASYNC109
        message = await asyncio.wait_for(self.ws.receive(), timeout)
        assert message.type is aiohttp.WSMsgType.TEXT, message
        frame: Frame = message.json()
        kind = {"hello": protocol.Hello, "tick": protocol.Tick, "event": protocol.Event, "error": protocol.ErrorFrame}
        assert conforms(frame, kind[frame["type"]]) == [], frame
        self.seen.append(frame)
        return frame

    async def until(self, match: Callable[[Frame], bool], timeout: float = 15.0) -> Frame:  # noqa: ASYNC109
        """The first frame from now on that matches (earlier ones are skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.next(max(0.01, deadline - loop.time()))
            if match(frame):
                return frame

    async def send(self, message: object) -> None:
        await self.ws.send_json(message)


def row(tick: Frame, queue: str) -> Frame:
    found: Frame = next(q for q in tick["queues"] if q["name"] == queue)
    return found


def event(kind: str, **fields: Any) -> Callable[[Frame], bool]:
    return lambda f: f["type"] == "event" and f["kind"] == kind and all(f.get(k) == v for k, v in fields.items())


@pytest.fixture
async def live(
    appliance_factory: Callable[..., Awaitable[Appliance]],
    short_dir: Path,  # noqa: F811
) -> AsyncIterator[tuple[Appliance, Path, Behaviour]]:
    behaviour = Behaviour()
    path = short_dir / "admin.sock"
    app = await start_with_socket(appliance_factory, path, behaviour)
    yield app, path, behaviour
    behaviour.release.set()


@pytest.fixture
async def connect(
    live: tuple[Appliance, Path, Behaviour],
) -> AsyncIterator[Callable[[], Awaitable[StreamClient]]]:
    """``await connect()``: a new subscriber on the control socket (its hello already read)."""
    _app, path, _b = live
    sessions: list[aiohttp.ClientSession] = []

    async def open_one() -> StreamClient:
        session = unix_session(path)
        sessions.append(session)
        client = StreamClient(await session.ws_connect(BASE + STREAM_PATH))
        hello = await client.next()
        assert hello["type"] == "hello"
        return client

    yield open_one
    for session in sessions:
        await session.close()


# -- the tests ---------------------------------------------------------------------------------


async def test_hello_carries_the_appliance_a_full_tick_and_fifteen_minutes_of_history(
    live: tuple[Appliance, Path, Behaviour], connect: Callable[[], Awaitable[StreamClient]]
) -> None:
    app, _path, _b = live
    client = await connect()
    hello = client.seen[0]
    assert hello["protocol"] == protocol.PROTOCOL_VERSION
    assert hello["appliance"] == {
        "name": "test",
        "version": hello["appliance"]["version"],
        "workerId": app.worker_id,
        "startedAt": hello["appliance"]["startedAt"],
        "graphMode": "off",
        "readOnly": False,
    }
    names = [q["name"] for q in hello["snapshot"]["queues"]]
    assert WORK in names and "dead-letter" not in names
    assert set(hello["history"]) == set(names)
    work = hello["history"][WORK]
    assert len(work["done"]) == len(work["failed"]) == len(work["avgMs"]) == HISTORY_SECONDS
    assert work["t0"] == int(hello["snapshot"]["t"]) - HISTORY_SECONDS + 1
    assert row(hello["snapshot"], WORK)["workers"] == {"busy": 0, "size": 2}
    first = await client.until(lambda f: f["type"] == "tick")
    second = await client.until(lambda f: f["type"] == "tick")
    assert hello["snapshot"]["seq"] < first["seq"] < second["seq"]
    assert 0.5 < second["t"] - first["t"] < 1.6
    assert first["database"] == {"ok": True, "error": None}


async def test_ticks_follow_the_jobs(
    live: tuple[Appliance, Path, Behaviour], connect: Callable[[], Awaitable[StreamClient]]
) -> None:
    app, _path, behaviour = live
    client = await connect()
    await app.client.set_paused(WORK, True)
    for _ in range(3):
        await app.client.enqueue(WORK, {"mode": "block"})
    tick = await client.until(lambda f: f["type"] == "tick" and row(f, WORK)["waiting"] == 3)
    assert row(tick, WORK)["paused"] is True
    assert row(tick, WORK)["oldestWaitingSeconds"] is not None
    await app.client.set_paused(WORK, False)
    tick = await client.until(lambda f: f["type"] == "tick" and row(f, WORK)["running"] == 2)
    assert row(tick, WORK)["workers"] == {"busy": 2, "size": 2}
    assert row(tick, WORK)["waiting"] == 1
    behaviour.release.set()
    tick = await client.until(lambda f: f["type"] == "tick" and row(f, WORK)["donePerMinute"] == 3)
    work = row(tick, WORK)
    assert (work["waiting"], work["running"], work["failureRate"]) == (0, 0, 0.0)
    assert work["avgMs"] is not None and work["p95Ms"] is not None
    assert work["oldestWaitingSeconds"] is None
    # A new subscriber sees the same jobs in its history at once.
    late = await connect()
    history = late.seen[0]["history"][WORK]
    assert sum(history["done"]) == 3 and sum(history["failed"]) == 0


async def test_a_pause_by_anyone_reaches_every_subscriber(
    live: tuple[Appliance, Path, Behaviour], connect: Callable[[], Awaitable[StreamClient]], dsn: str
) -> None:
    _app, path, _b = live
    watcher, other = await connect(), await connect()
    async with Client.connect(dsn) as cli:  # what `fleetbox` commands use, on its own connection
        await cli.set_paused(WORK, True, actor="carol")
    for client in (watcher, other):
        paused = await client.until(event("queue_paused", queue=WORK))
        assert paused["by"] == "carol" and paused["count"] == 1
    resume = f"{BASE}/api/queue/{WORK}/resume"
    async with unix_session(path) as local, local.post(resume, headers={OPERATOR_HEADER: "alice"}) as response:
        assert response.status == 200
    resumed = await watcher.until(event("queue_resumed", queue=WORK))
    assert resumed["by"] == "alice"
    tick = await watcher.until(lambda f: f["type"] == "tick")
    assert row(tick, WORK)["paused"] is False


async def test_dead_letters_reviews_and_retries_are_events(
    live: tuple[Appliance, Path, Behaviour], connect: Callable[[], Awaitable[StreamClient]]
) -> None:
    app, path, _b = live
    client = await connect()
    job_id = (await app.client.enqueue(WORK, {"mode": "permanent"})).id
    added = await client.until(event("dead_added", queue=WORK))
    assert added["count"] == 1
    tick = await client.until(lambda f: f["type"] == "tick" and row(f, WORK)["deadUnreviewed"] == 1)
    assert tick["deadUnreviewed"] == 1
    async with unix_session(path) as local:
        async with local.post(
            f"{BASE}/api/queue/dead-letter/{job_id}/review",
            json={"reviewedBy": "dora", "resolutionNotes": "payload fixed"},
        ) as response:
            assert response.status == 200
            dead_id = (await response.json())["id"]
        reviewed = await client.until(event("dead_reviewed", queue=WORK))
        assert (reviewed["by"], reviewed["jobIds"]) == ("dora", [job_id])
        assert reviewed["detail"] == {"deadLetterIds": [dead_id], "notes": "payload fixed"}
        async with local.post(
            f"{BASE}/api/queue/dead-letter/dl-{dead_id}/retry", headers={OPERATOR_HEADER: "dora"}
        ) as response:
            new_job = (await response.json())["jobId"]
    retried = await client.until(event("dead_retried", queue=WORK))
    assert (retried["by"], retried["jobIds"]) == ("dora", [job_id])
    assert retried["detail"] == {"deadLetterIds": [dead_id], "newJobIds": [new_job]}


async def test_subscribe_changes_the_interval_and_bad_messages_get_an_error_frame(
    connect: Callable[[], Awaitable[StreamClient]],
) -> None:
    client = await connect()
    await client.send({"type": "subscribe", "intervalMs": 1500})
    error = await client.until(lambda f: f["type"] == "error")
    assert error["field"] == "intervalMs" and "1000, 2000, 5000, 10000" in error["message"]
    await client.send({"type": "unsubscribe"})
    assert (await client.until(lambda f: f["type"] == "error"))["field"] == "type"
    await client.send({"type": "subscribe", "intervalMs": 1000, "history": "15m"})
    assert (await client.until(lambda f: f["type"] == "error"))["field"] == "history"
    await client.ws.send_str("{not json")
    assert (await client.until(lambda f: f["type"] == "error"))["field"] == "body"
    await client.send({"type": "subscribe", "intervalMs": 2000})
    first = await client.until(lambda f: f["type"] == "tick")
    second = await client.until(lambda f: f["type"] == "tick")
    assert 1.5 < second["t"] - first["t"] < 2.6


async def test_over_tcp_the_stream_needs_a_key_and_the_read_key_is_read_only(
    live: tuple[Appliance, Path, Behaviour],
) -> None:
    from tests.admin.conftest import READ

    app, _path, _b = live
    assert app.admin is not None
    async with aiohttp.ClientSession() as tcp:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await tcp.ws_connect(app.admin.url + STREAM_PATH)
        assert refused.value.status == 401
        async with tcp.ws_connect(app.admin.url + STREAM_PATH, headers=READ) as ws:
            hello = await ws.receive_json(timeout=10)
            assert hello["appliance"]["readOnly"] is True
        async with tcp.get(app.admin.url + STREAM_PATH, headers=READ) as response:
            assert response.status == 426
            assert (await response.json())["error"]["code"] == "upgrade_required"


async def test_stopping_the_appliance_closes_the_streams(
    live: tuple[Appliance, Path, Behaviour], connect: Callable[[], Awaitable[StreamClient]]
) -> None:
    app, path, _b = live
    client = await connect()

    async def read_to_the_end() -> aiohttp.WSMsgType:
        while True:
            message = await client.ws.receive()
            if message.type is not aiohttp.WSMsgType.TEXT:
                return message.type

    reader = asyncio.create_task(read_to_the_end())
    await asyncio.wait_for(app.stop(), 15)
    assert await asyncio.wait_for(reader, 5) is aiohttp.WSMsgType.CLOSE
    assert client.ws.close_code == aiohttp.WSCloseCode.GOING_AWAY
    assert not path.exists()


async def test_a_stopping_appliance_says_so_while_it_finishes_its_jobs(
    live: tuple[Appliance, Path, Behaviour], connect: Callable[[], Awaitable[StreamClient]]
) -> None:
    """Found from outside: during the shutdown grace both UIs showed "live" and every queue running."""
    app, _path, behaviour = live
    client = await connect()
    tick = await client.until(lambda f: f["type"] == "tick")
    assert tick["draining"] is False
    job = await app.client.enqueue(WORK, {"mode": "block"})
    await client.until(lambda f: f["type"] == "tick" and row(f, WORK)["running"] == 1)
    stopping = asyncio.create_task(app.stop())  # waits for the running job (its grace)
    tick = await client.until(lambda f: f["type"] == "tick" and f["draining"] is True)
    assert row(tick, WORK)["running"] == 1
    behaviour.release.set()
    await asyncio.wait_for(stopping, 15)
    assert behaviour.done == [job.id]  # it finished its job before it stopped


async def test_a_message_nested_too_deeply_closes_the_stream_with_1007(
    live: tuple[Appliance, Path, Behaviour],
    connect: Callable[[], Awaitable[StreamClient]],
    logs: pytest.LogCaptureFixture,
) -> None:
    client = await connect()
    bystander = await connect()
    await client.ws.send_str("[" * 2000 + "]" * 2000)  # under 4 KiB, deeper than any decoder's stack
    closed = await client.ws.receive(timeout=10)
    assert closed.type is aiohttp.WSMsgType.CLOSE
    assert closed.data == aiohttp.WSCloseCode.INVALID_TEXT and "nested too deeply" in closed.extra
    # nobody else noticed, and nothing was logged as a failure
    assert (await bystander.until(lambda f: f["type"] == "tick"))["type"] == "tick"
    assert not [r for r in logs.records if getattr(r, "event", "") == "admin_internal_error"]


async def test_an_unexpected_failure_closes_the_stream_with_1011_and_writes_no_http_answer(
    aiohttp_client: Any, client: Client, make_settings: Callable[..., Any], logs: pytest.LogCaptureFixture
) -> None:
    async def broken() -> dict[str, int]:
        raise RuntimeError("presence table exploded")

    info = ApplianceInfo("test", "test:1:abc", "0.1.0")
    stream = Stream(client.store, clock=client.clock, info=info.to_protocol(read_only=False), consumers=broken)
    app = build_app(
        service=client.service,
        monitor=monitor_for(client),
        settings=make_settings(admin=admin_section()),
        appliance_info=info,
        stream=stream,
    )
    api = await aiohttp_client(app)
    ws = await api.ws_connect(STREAM_PATH, headers=READ)
    closed = await ws.receive(timeout=10)
    assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == aiohttp.WSCloseCode.INTERNAL_ERROR
    assert "presence table exploded" not in (closed.extra or "")
    assert [r.getMessage() for r in logs.records if getattr(r, "event", "") == "admin_stream_error"]
    await ws.close()
