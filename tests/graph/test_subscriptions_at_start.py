"""Issue 13 item 9: configured subscriptions exist from start-up, once per database.

Appliances run on real PostgreSQL with Graph pointed at the TLS simulator, whose receiver checks
(the validation handshake) reach the appliances' admin ports.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fleetbox.app import Appliance
from fleetbox.graph.simulator import GraphSimulator
from tests.conftest import wait_for
from tests.graph.helpers import SENDER

INBOX = f"users/{SENDER}/mailFolders('inbox')/messages"


@pytest.fixture
async def sim() -> AsyncIterator[GraphSimulator]:
    """The simulator, allowed to post notifications to the appliance's plain-HTTP admin port."""
    async with GraphSimulator(allow_http_notification_urls=True) as simulator:
        yield simulator
    assert simulator.internal_errors == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def receiving(port: int) -> dict[str, Any]:
    """Sections of an appliance listening on ``port`` and subscribed to the sender's inbox."""
    return {
        "admin": {"port": port, "socket_enabled": False},
        "graph": {
            "webhook_base_url": f"http://127.0.0.1:{port}",
            "subscriptions": [{"source": "outlook", "resource": INBOX}],
        },
    }


def checked_at_start(app: Appliance) -> bool:
    task = app.graph._subscribing  # the start-up check, one task per appliance
    return task is not None and task.done()


def creates(sim: GraphSimulator) -> list[Any]:
    return [r for r in sim.requests if r.method == "POST" and r.path == "/v1.0/subscriptions"]


async def rows(sql: Any) -> list[Any]:
    return list(await sql.fetch("SELECT id FROM graph_subscriptions WHERE removed_at IS NULL"))


async def test_two_appliances_starting_together_create_the_subscription_once(
    start: Any, sim: GraphSimulator, sql: Any
) -> None:
    first, second = free_port(), free_port()
    apps = await asyncio.gather(start(**receiving(first)), start(**receiving(second)))
    # Both appliances have finished their start-up check.
    await wait_for(lambda: all(checked_at_start(app) for app in apps), timeout=15)
    [(sub_id, kept)] = list(sim.subscriptions.items())
    assert kept["resource"] == INBOX
    assert [r.status for r in creates(sim)] == [201]
    assert [r["id"] for r in await rows(sql)] == [sub_id]


async def test_a_live_subscription_in_graph_is_adopted_not_created_again(
    start: Any, sim: GraphSimulator, sql: Any
) -> None:
    port = free_port()
    app = await start(**receiving(port))
    await wait_for(lambda: len(sim.subscriptions) == 1, timeout=15)
    [sub_id] = list(sim.subscriptions)
    await app.stop()
    # The database lost its row (restored from an older backup, a new database for the same
    # tenant); Graph still delivers to this receiver.
    await sql.execute("DELETE FROM graph_subscriptions")
    await start(**receiving(port))

    async def adopted() -> bool:
        return [r["id"] for r in await rows(sql)] == [sub_id]

    await wait_for(adopted, timeout=15)
    assert len(creates(sim)) == 1
    assert list(sim.subscriptions) == [sub_id]


async def test_an_adopted_subscription_close_to_expiry_is_renewed_at_start(
    start: Any, sim: GraphSimulator, sql: Any
) -> None:
    port = free_port()
    app = await start(**receiving(port))
    await wait_for(lambda: len(sim.subscriptions) == 1, timeout=15)
    [sub_id] = list(sim.subscriptions)
    await app.stop()
    await sql.execute("DELETE FROM graph_subscriptions")
    # Within the renewal horizon (graph.renew_before_hours): renewed as soon as it is adopted.
    await start(**{**receiving(port), "graph": {**receiving(port)["graph"], "renew_before_hours": 70}})
    await wait_for(
        lambda: any(r.method == "PATCH" and r.path == f"/v1.0/subscriptions/{sub_id}" for r in sim.requests),
        timeout=15,
    )
    assert len(creates(sim)) == 1
