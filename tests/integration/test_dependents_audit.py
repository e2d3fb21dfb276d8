"""Dependents cancelled by their ``cancel`` policy are on record: the audit log has one row per
failed parent (actor ``system``, action ``job.cancel_dependents``) naming the jobs it cancelled,
written in the transaction that finished the parent, and the live stream shows it. Dependents
that ignore or hold a failure are not cancelled and not recorded.
"""

from __future__ import annotations

import datetime as dt

import pytest

from fleetbox import Client
from fleetbox.models import JobState, ManualClock, Tier
from fleetbox.store import Store
from tests.integration.flows import WORKER, claim_all, state


@pytest.fixture
def ops(db: Store, clock: ManualClock) -> Client:
    return Client(db, clock=clock, actor="ops-console")


async def _dead_letter(db: Store, clock: ManualClock) -> None:
    """Dead-letter every job that can be claimed, as the completer does."""
    jobs = await claim_all(db, clock)
    t = clock.now().timestamp()
    n = len(jobs)
    await db.jobs.complete_dead(
        [j.id for j in jobs], [j.attempt for j in jobs], [t] * n, [t] * n, WORKER, ["permanent"] * n, ["no"] * n
    )


async def test_cancel_policy_cancellations_are_audited_per_failed_parent(
    ops: Client, db: Store, clock: ManualClock
) -> None:
    parent = (await ops.enqueue("sync", {"p": 1})).id
    first = (await ops.enqueue("sync", {"c": 1}, depends_on=[parent])).id
    second = (await ops.enqueue("sync", {"c": 2}, depends_on=[parent])).id
    grandchild = (await ops.enqueue("sync", {"g": 1}, depends_on=[first])).id
    ignoring = (await ops.enqueue("sync", {"c": 3}, depends_on=[parent], on_failure="ignore")).id
    holding = (await ops.enqueue("sync", {"c": 4}, depends_on=[parent], on_failure="hold")).id
    before = await db.audit.last_id()
    clock.advance(180)

    await _dead_letter(db, clock)

    assert [await state(ops, j) for j in (first, second, grandchild)] == [JobState.CANCELLED] * 3
    assert await state(ops, ignoring) is JobState.WAITING
    assert await state(ops, holding) is JobState.BLOCKED
    [row] = await db.audit.for_target(f"job:{parent}")
    assert (row.actor, row.action) == ("system", "job.cancel_dependents")
    assert row.details["cancelled"] == [first, second]
    assert row.details["policy"] == "cancel"
    assert f"job {parent}" in row.details["reason"]
    assert row.at == clock.now()  # the appliance's clock, as the cancellation itself
    # The cascade: the cancelled child's own dependents, on record under the child.
    [below] = await db.audit.for_target(f"job:{first}")
    assert (below.actor, below.action, below.details["cancelled"]) == ("system", "job.cancel_dependents", [grandchild])
    assert await db.audit.for_target(f"job:{second}") == []
    # The live stream's feed (where the TUI and the dashboard hear of changes) carries both,
    # with the queue of the parent each concerns.
    fresh = await db.audit.after(before, 100)
    assert [(e.action, e.job_id, e.queue) for e in fresh] == [
        ("job.cancel_dependents", parent, "sync"),
        ("job.cancel_dependents", first, "sync"),
    ]


async def test_lease_expiry_and_clear_cancellations_are_audited(ops: Client, db: Store, clock: ManualClock) -> None:
    """The other ways a parent fails (the lease reaper, an operator clearing its queue) go through
    the same statement, so they are on record too; the operator's clear keeps its own row."""
    reaped = (await ops.enqueue("sync", {"p": 1}, max_attempts=1)).id
    reaped_child = (await ops.enqueue("sync", {"c": 1}, depends_on=[reaped])).id
    now = clock.now()
    await db.jobs.claim(Tier.LOW, 10, WORKER, now, now + dt.timedelta(seconds=1))
    await db.jobs.reap(now + dt.timedelta(seconds=2), 100, [], 3)
    assert await state(ops, reaped_child) is JobState.CANCELLED
    [row] = await db.audit.for_target(f"job:{reaped}")
    assert (row.actor, row.action, row.details["cancelled"]) == ("system", "job.cancel_dependents", [reaped_child])

    cleared = (await ops.enqueue("webhooks", {"p": 2})).id
    cleared_child = (await ops.enqueue("sync", {"c": 2}, depends_on=[cleared])).id
    assert await ops.service.queues.clear("webhooks", actor="alice") == 1
    assert await state(ops, cleared_child) is JobState.CANCELLED
    [row] = await db.audit.for_target(f"job:{cleared}")
    assert (row.actor, row.details["cancelled"]) == ("system", [cleared_child])
    assert [e.actor for e in await db.audit.for_target("webhooks")] == ["alice"]


async def test_an_operator_cancellation_is_not_recorded_twice(ops: Client, db: Store, clock: ManualClock) -> None:
    """An operator cancelling a blocked job is audited by the service (job.cancel); the children
    cancelled in cascade by their policy get the system's row under the job cancelled."""
    parent = (await ops.enqueue("sync", {"p": 1})).id
    blocked = (await ops.enqueue("sync", {"c": 1}, depends_on=[parent])).id
    below = (await ops.enqueue("sync", {"g": 1}, depends_on=[blocked])).id
    result = await ops.service.dependencies.cancel_blocked(blocked, actor="alice")
    assert result.cancelled == [blocked, below]
    rows = await db.audit.for_target(f"job:{blocked}")
    # both were cancelled by alice's action (cancel_blocked takes the whole subtree at once), so
    # no dependent was left for a policy to cancel: only her row
    assert [(r.actor, r.action) for r in rows] == [("alice", "job.cancel")]
