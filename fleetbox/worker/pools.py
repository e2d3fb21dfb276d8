"""Bounded worker pools, one per priority tier, and the jobs running in them.

A tier's pool has a fixed number of slots; the dispatcher never claims more jobs for a tier than
it has free slots, so a flood of low-tier work cannot delay the high tier. Each running job holds
a lease that the heartbeat extends (see :mod:`fleetbox.worker.leases`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum

from fleetbox.models import Job, Tier


class CancelReason(StrEnum):
    """Why a running job's task was cancelled."""

    #: the lease may be gone: another appliance may run the job, so write nothing
    LEASE_LOST = "lease_lost"
    #: the appliance stops and the grace period is over: record an interrupted attempt
    SHUTDOWN = "shutdown"


@dataclass(slots=True, eq=False)
class RunningJob:
    job: Job
    tier: Tier
    #: monotonic time after which the lease may have been lost (no heartbeat got through)
    lease_deadline: float
    task: asyncio.Task[None] | None = None
    started: bool = False
    cancel_reason: CancelReason | None = None
    handler_started: float = field(default=0.0)


class TierPool:
    """The worker slots of one tier."""

    def __init__(self, tier: Tier, size: int) -> None:
        self.tier = tier
        self.size = size
        self.running: dict[int, RunningJob] = {}
        self.done = 0
        self.failed = 0

    def __repr__(self) -> str:
        busy = f"{len(self.running)}/{self.size}"
        return f"<TierPool {self.tier.name.lower()} busy={busy} done={self.done} failed={self.failed}>"

    @property
    def free(self) -> int:
        return max(0, self.size - len(self.running))

    def add(self, entry: RunningJob) -> None:
        self.running[entry.job.id] = entry

    def remove(self, job_id: int) -> None:
        self.running.pop(job_id, None)
