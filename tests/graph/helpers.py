"""Helpers of the Graph tests that run a real appliance: waiting on a job, counting requests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fleetbox.app import Appliance
from fleetbox.client import Client
from fleetbox.config import SubscriptionSettings
from fleetbox.graph.simulator import GraphSimulator
from fleetbox.models import JobInfo, JobState
from tests.conftest import wait_for

#: the mailbox the test appliances send from (graph.sender)
SENDER = "fleet-notices@contoso.example"


def finished(client: Client, job_id: int, *states: JobState) -> Callable[[], Awaitable[bool]]:
    """A wait_for condition: the job reached one of ``states`` (default: succeeded).

    Raises at once, naming the job's errors, when it reached another final state instead.
    """
    wanted = states or (JobState.SUCCEEDED,)

    async def check() -> bool:
        info = await client.get_job(job_id)
        if info.state in wanted:
            return True
        if info.state in (JobState.SUCCEEDED, JobState.DEAD):
            errors = [a.error for a in info.history]
            raise AssertionError(f"job {job_id} ended {info.state.value}, not {wanted}: {errors}")
        return False

    return check


async def attempts(client: Client, job_id: int, count: int) -> JobInfo:
    async def check() -> bool:
        return len((await client.get_job(job_id)).history) >= count

    await wait_for(check, timeout=15)
    return await client.get_job(job_id)


def posts(sim: GraphSimulator, pattern: str) -> list[Any]:
    return [r for r in sim.requests if f"{r.method} {r.path}".startswith(pattern)]


async def subscribe(app: Appliance, resource: str, source: str = "outlook") -> str:
    assert app.graph.subscriptions is not None
    return await app.graph.subscriptions.create(SubscriptionSettings(source=source, resource=resource))  # type: ignore[arg-type]


def admin_url(app: Appliance) -> str:
    assert app.admin is not None
    return f"http://127.0.0.1:{app.admin.port}"


async def subscribed(start: Any) -> tuple[Appliance, str]:
    """An appliance whose receiver Graph reaches, subscribed to the sender's inbox."""
    app = await start()
    assert app.graph.ctx is not None
    app.graph.ctx.settings = app.graph.ctx.settings.model_copy(update={"webhook_base_url": admin_url(app)})
    return app, await subscribe(app, f"users/{SENDER}/mailFolders('inbox')/messages")
