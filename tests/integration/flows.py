"""What the dependency and workflow tests do as the worker would: claim, complete in one batch
statement, read a job's state."""

from __future__ import annotations

import datetime as dt

from fleetbox.client import Client
from fleetbox.models import Job, JobState, JsonText, ManualClock, Tier
from fleetbox.store import Store

WORKER = "test-worker"


async def claim_all(db: Store, clock: ManualClock, tier: Tier = Tier.LOW) -> list[Job]:
    now = clock.now()
    return await db.jobs.claim(tier, 1000, WORKER, now, now + dt.timedelta(minutes=5))


async def succeed(db: Store, jobs: list[Job], clock: ManualClock, results: dict[int, str] | None = None) -> int:
    """Complete ``jobs`` as the completer does (one batch statement); how many children were released (now waiting)."""
    results = results or {}
    t = clock.now().timestamp()
    ids = [j.id for j in jobs]
    _held, released = await db.jobs.complete_succeeded(
        ids,
        [j.attempt for j in jobs],
        [t] * len(ids),
        [t] * len(ids),
        WORKER,
        [i for i in ids if i in results],
        [JsonText(results[i]) for i in ids if i in results],
    )
    return released


async def state(client: Client, job_id: int) -> JobState:
    return (await client.get_job(job_id)).state
