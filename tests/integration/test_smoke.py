from __future__ import annotations

from fleetbox.client import Client
from fleetbox.models import Job, JobState, Outcome
from tests.conftest import wait_for


async def test_a_job_runs_once_and_is_recorded(appliance_factory, client: Client) -> None:
    seen: list[int] = []

    async def handle(job: Job) -> None:
        seen.append(job.id)

    app = await appliance_factory(handlers={"reports": handle}, queues={"reports": {"tier": "low"}})
    result = await app.client.enqueue("reports", {"n": 1})

    async def succeeded() -> bool:
        return (await client.get_job(result.id)).state is JobState.SUCCEEDED

    await wait_for(succeeded)
    info = await client.get_job(result.id)
    assert seen == [result.id]
    assert [a.outcome for a in info.history] == [Outcome.SUCCEEDED]
