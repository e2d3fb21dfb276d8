"""Config edits without a restart: Appliance.reload applies pools, retry rules and queues."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from fleetbox.client import Client
from fleetbox.config import Settings
from fleetbox.errors import ConfigError, NetworkError
from fleetbox.models import Job, JobState
from tests.conftest import wait_for


async def test_a_bigger_pool_runs_more_jobs_at_once(
    appliance_factory, make_settings: Callable[..., Settings], client: Client
) -> None:
    release = asyncio.Event()
    running: set[int] = set()
    most = 0

    async def hold(job: Job) -> None:
        nonlocal most
        running.add(job.id)
        most = max(most, len(running))
        await release.wait()
        running.discard(job.id)

    queues = {"reports": {"tier": "low"}}
    app = await appliance_factory(handlers={"reports": hold}, queues=queues, pools={"low": 1})
    for n in range(4):
        await client.enqueue("reports", {"n": n})
    await wait_for(lambda: len(running) == 1)

    restart = await app.reload(make_settings(queues=queues, pools={"low": 3}))

    assert restart == []
    await wait_for(lambda: len(running) == 3)
    release.set()
    await wait_for(lambda: not running and most == 3)


async def test_new_retry_rules_apply_to_the_next_failure(
    appliance_factory, make_settings: Callable[..., Settings], client: Client
) -> None:
    async def flaky(job: Job) -> None:
        raise NetworkError("connection reset")

    queues = {"reports": {"tier": "low"}}
    app = await appliance_factory(handlers={"reports": flaky}, queues=queues)
    await app.reload(make_settings(queues={"reports": {"tier": "low", "retry": {"transient": {"max_retries": 0}}}}))

    job = await client.enqueue("reports", {})

    async def dead() -> bool:
        return (await client.get_job(job.id)).state is JobState.DEAD

    await wait_for(dead)
    assert (await client.get_job(job.id)).attempts == 1


async def test_an_invalid_configuration_changes_nothing(
    appliance_factory, make_settings: Callable[..., Settings]
) -> None:
    app = await appliance_factory(queues={"reports": {"tier": "low"}}, pools={"low": 2})
    bad = make_settings(
        queues={"reports": {"tier": "low"}, "other": {"tier": "low", "handler": "no.such.module:fn"}}, pools={"low": 9}
    )

    with pytest.raises(ConfigError, match=r"no\.such\.module"):
        await app.reload(bad)

    assert app.worker.pools[app.registry["reports"].tier].size == 2
    assert "other" not in app.registry


async def test_changes_that_need_a_restart_are_named(appliance_factory, make_settings: Callable[..., Settings]) -> None:
    app = await appliance_factory()
    restart = await app.reload(make_settings(admin={"port": 0, "socket_enabled": False, "host": "127.0.0.2"}))
    assert restart == ["admin"]
    assert app.settings.admin.host == "127.0.0.1"  # kept until the next start
    # the appliance's timing is the worker's own: it applies it at once
    assert (await app.reload(make_settings(appliance={"lease_seconds": 60}))) == []
    assert app.worker.lease_seconds == app.worker.leases.lease_seconds == 60
