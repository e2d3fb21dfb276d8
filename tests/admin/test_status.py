"""``fleetbox status``: the health of a running appliance, from its admin API, in the terminal."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from fleetbox.cli import main
from tests.admin.conftest import admin_section


async def run_status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    # The command sets up fleetbox's logging for a process of its own; give it back afterwards.
    logger = logging.getLogger("fleetbox")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    try:
        code = await asyncio.to_thread(main, ["status", *args])
    finally:
        logger.handlers[:], logger.propagate, logger.level = saved[0], saved[1], saved[2]
    out, err = capsys.readouterr()
    return code, out, err


async def test_status_prints_each_queue_and_exits_zero_when_healthy(
    appliance_factory, capsys: pytest.CaptureFixture[str]
) -> None:
    app = await appliance_factory(admin=admin_section(), monitor={"depth_cache_seconds": 0})
    assert app.admin is not None
    await app.client.enqueue("sync", {"n": 1}, delay=60_000)

    code, out, _ = await run_status(capsys, "--url", app.admin.url)

    assert code == 0
    assert out.startswith("fleetbox: healthy")
    sync = next(line for line in out.splitlines() if line.startswith("sync "))
    # a queue is active or paused (as `fleetbox queues` says); then backlog, waiting, scheduled
    assert sync.split()[:5] == ["sync", "active", "1", "0", "1"]


async def test_status_json_is_the_health_document_and_unhealthy_exits_one(
    appliance_factory, capsys: pytest.CaptureFixture[str]
) -> None:
    # No depth cache: the schedule's first health check may have counted before this enqueue.
    app = await appliance_factory(admin=admin_section(), monitor={"max_backlog": 0, "depth_cache_seconds": 0})
    assert app.admin is not None
    await app.client.enqueue("sync", {"n": 1}, delay=60_000)

    code, out, _ = await run_status(capsys, "--url", app.admin.url, "--json")

    health = json.loads(out)
    assert code == 1
    assert health["healthy"] is False
    assert health["queues"]["sync"]["backlog"] == 1
    assert any("sync" in reason for reason in health["reasons"])


async def test_status_of_an_appliance_that_does_not_answer_exits_three(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = await run_status(capsys, "--url", "http://127.0.0.1:9")
    assert code == 3
    assert out == ""
    assert "did not answer" in err
