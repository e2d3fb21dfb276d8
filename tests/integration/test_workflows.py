"""Failure policies of dependents (cancel, ignore, hold and the operator's retry, skip and cancel
from the dead letters) and the workflow API (a DAG enqueued at once, fan-out, fan-in, cancelled
whole). Jobs are claimed and finished through the store's own claim and completion statements,
on a ManualClock, so each step is exact.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

import pytest

from fleetbox import Client, Conflict, InvalidInput, ValidationError
from fleetbox.app import Appliance
from fleetbox.models import Job, JobState, ManualClock, Tier
from fleetbox.store import Store
from tests.conftest import wait_for
from tests.integration.flows import WORKER, claim_all, state, succeed


async def fail(db: Store, jobs: list[Job], clock: ManualClock) -> list[int]:
    """Dead-letter ``jobs`` as the completer does; their dead letter ids."""
    t = clock.now().timestamp()
    n = len(jobs)
    letters = await db.jobs.complete_dead(
        [j.id for j in jobs],
        [j.attempt for j in jobs],
        [t] * n,
        [t] * n,
        WORKER,
        ["permanent"] * n,
        ["ValidationError: refused"] * n,
    )
    return [d.dead_letter_id for d in letters]


@pytest.fixture
def ops(db: Store, clock: ManualClock) -> Client:
    return Client(db, clock=clock, actor="ops-console")


async def test_cancel_policy_cancels_dependents_down_the_graph(ops: Client, db: Store, clock: ManualClock) -> None:
    parent = (await ops.enqueue("sync", {"p": 1})).id
    child = (await ops.enqueue("sync", {"c": 1}, depends_on=[parent])).id
    grandchild = (await ops.enqueue("sync", {"g": 1}, depends_on=[child])).id
    await fail(db, await claim_all(db, clock), clock)
    assert await state(ops, child) is JobState.CANCELLED
    assert await state(ops, grandchild) is JobState.CANCELLED
    why = (await ops.job_relations(child)).cancellation
    assert why is not None and why.parent_id == parent and f"job {parent}" in why.reason
    why = (await ops.job_relations(grandchild)).cancellation
    assert why is not None and why.parent_id == child
    assert await claim_all(db, clock) == []


async def test_ignore_policy_runs_anyway(ops: Client, db: Store, clock: ManualClock) -> None:
    good = (await ops.enqueue("sync", {"p": 1})).id
    bad = (await ops.enqueue("sync", {"p": 2})).id
    child = (await ops.enqueue("sync", {"c": 1}, depends_on=[good, bad], on_failure="ignore")).id
    claimed = {j.id: j for j in await claim_all(db, clock)}
    await succeed(db, [claimed[good]], clock, {good: '"ok"'})
    await fail(db, [claimed[bad]], clock)
    [job] = await claim_all(db, clock)
    assert job.id == child
    assert dict(job.parents) == {str(good): "ok", str(bad): None}
    edges = {link.job_id: link.edge for link in (await ops.job_relations(child)).parents}
    assert edges == {good: "succeeded", bad: "ignored"}


async def test_hold_then_retry_from_dead_letters_resumes_the_flow(ops: Client, db: Store, clock: ManualClock) -> None:
    """A -> B -> C with C holding on B: B fails, C waits on B's dead letter; the retry of the dead
    letter runs only B again (A, finished, does not run again) and C follows it."""
    flow = ops.workflow("hold and retry")
    flow.step("a", "sync", {"s": "a"})
    flow.step("b", "sync", {"s": "b"}, after=["a"])
    flow.step("c", "sync", {"s": "c"}, after=["b"], on_failure="hold")
    enqueued = await flow.enqueue()
    ids = enqueued.jobs
    [a] = await claim_all(db, clock)
    assert a.id == ids["a"]
    await succeed(db, [a], clock, {a.id: '{"file": "f1"}'})
    [b] = await claim_all(db, clock)
    assert b.id == ids["b"] and dict(b.parents) == {"a": {"file": "f1"}}
    [dead_id] = await fail(db, [b], clock)
    assert await state(ops, ids["c"]) is JobState.BLOCKED
    assert await ops.dead_letters.held(dead_id) == [ids["c"]]

    new_b = await ops.dead_letters.retry(dead_id)
    assert await ops.dead_letters.held(dead_id) == []
    [again] = await claim_all(db, clock)
    assert again.id == new_b  # only the failed step runs again
    assert await succeed(db, [again], clock, {new_b: '"sent"'}) == 1
    [c] = await claim_all(db, clock)
    assert c.id == ids["c"] and dict(c.parents) == {"b": "sent"}
    steps = {s.step: (s.job_id, s.state) for s in (await ops.get_workflow(enqueued.id)).steps}
    assert steps["a"] == (ids["a"], "succeeded") and steps["b"] == (new_b, "succeeded")


async def test_hold_then_skip_with_a_result(ops: Client, db: Store, clock: ManualClock) -> None:
    parent = (await ops.enqueue("sync", {"p": 1})).id
    child = (await ops.enqueue("sync", {"c": 1}, depends_on=[parent], on_failure="hold")).id
    [dead_id] = await fail(db, await claim_all(db, clock), clock)
    with pytest.raises(InvalidInput) as err:
        await ops.dead_letters.skip(dead_id, {"bad": float("nan")})
    assert err.value.field == "result"
    assert await state(ops, child) is JobState.BLOCKED

    assert await ops.dead_letters.skip(dead_id, {"url": "by hand"}) == 1
    [job] = await claim_all(db, clock)
    assert job.id == child and dict(job.parents) == {str(parent): {"url": "by hand"}}
    assert (await ops.dead_letters.get(dead_id)).status.value == "discarded"
    trail = [(e.actor, e.action) for e in await ops.dead_letters.audit_trail(dead_id)]
    assert trail == [("ops-console", "dead.skip")]
    with pytest.raises(Conflict):
        await ops.dead_letters.skip(dead_id, 1)


async def test_hold_then_cancel_the_subtree(ops: Client, db: Store, clock: ManualClock) -> None:
    parent = (await ops.enqueue("sync", {"p": 1})).id
    child = (await ops.enqueue("sync", {"c": 1}, depends_on=[parent], on_failure="hold")).id
    grandchild = (await ops.enqueue("sync", {"g": 1}, depends_on=[child], on_failure="hold")).id
    [dead_id] = await fail(db, await claim_all(db, clock), clock)
    result = await ops.dead_letters.cancel_dependents(dead_id)
    assert result.cancelled == [child, grandchild]
    assert await state(ops, child) is JobState.CANCELLED
    assert await state(ops, grandchild) is JobState.CANCELLED
    why = (await ops.job_relations(grandchild)).cancellation
    assert why is not None and why.actor == "ops-console" and f"dead letter {dead_id}" in why.reason
    trail = [e.action for e in await ops.dead_letters.audit_trail(dead_id)]
    assert trail == ["dead.cancel_dependents"]
    assert (await ops.dead_letters.get(dead_id)).status.value == "open"


async def test_depending_on_a_failed_job(ops: Client, db: Store, clock: ManualClock) -> None:
    parent = (await ops.enqueue("sync", {"p": 1})).id
    [dead_id] = await fail(db, await claim_all(db, clock), clock)
    with pytest.raises(InvalidInput, match=f"job {parent} has already failed"):
        await ops.enqueue("sync", {"c": 1}, depends_on=[parent])
    held = (await ops.enqueue("sync", {"c": 2}, depends_on=[parent], on_failure="hold")).id
    assert await ops.dead_letters.held(dead_id) == [held]
    ignoring = (await ops.enqueue("sync", {"c": 3}, depends_on=[parent], on_failure="ignore")).id
    assert await state(ops, ignoring) is JobState.WAITING
    new_parent = await ops.dead_letters.retry(dead_id)
    with pytest.raises(InvalidInput, match=f"retried as job {new_parent}"):
        await ops.enqueue("sync", {"c": 4}, depends_on=[parent], on_failure="hold")


async def test_workflow_fan_out_fan_in(ops: Client, db: Store, clock: ManualClock) -> None:
    """Upload three attachments side by side, then send the mail that links them."""
    flow = ops.workflow("mail with attachments")
    uploads = [flow.step(f"upload-{i}", "sync", {"file": i}) for i in range(3)]
    flow.step("mail", "sync", {"to": "a@example.com"}, after=uploads)
    result = await flow.enqueue()
    assert await state(ops, result.jobs["mail"]) is JobState.BLOCKED
    first = await claim_all(db, clock)
    assert sorted(j.id for j in first) == sorted(result.jobs[u] for u in uploads)
    assert await succeed(db, first[:2], clock, {j.id: f'"url-{j.data["file"]}"' for j in first}) == 0
    assert await succeed(db, first[2:], clock, {j.id: f'"url-{j.data["file"]}"' for j in first}) == 1
    [mail] = await claim_all(db, clock)
    assert dict(mail.parents) == {f"upload-{i}": f"url-{i}" for i in range(3)}
    relations = await ops.job_relations(result.jobs["upload-0"])
    assert [(c.job_id, c.step, c.state) for c in relations.children] == [(result.jobs["mail"], "mail", "running")]


async def test_workflow_is_all_or_nothing(ops: Client, db: Store, clock: ManualClock) -> None:
    cases = [
        ([("a", "sync", ()), ("b", "no-such-queue", ("a",))], "steps[1].queue", "unknown queue"),
        ([("a", "sync", ()), ("b", "sync", ("zz",))], "steps[1].after", "no step named 'zz'"),
        ([("a", "sync", ()), ("a", "sync", ())], "steps[1].name", "named twice"),
        (
            [("a", "sync", ("c",)), ("b", "sync", ("a",)), ("c", "sync", ("b",)), ("d", "sync", ())],
            "steps",
            "cycle: a -> b -> c -> a",
        ),
        ([("a", "sync", ("a",))], "steps", "cycle: a -> a"),
        ([("a b", "sync", ())], "steps[0].name", "step name"),
    ]
    for steps, field, words in cases:
        flow = ops.workflow("bad")
        for name, queue, after in steps:
            flow.step(name, queue, {"n": name}, after=after)
        with pytest.raises(InvalidInput) as err:
            await flow.enqueue()
        assert err.value.field == field and words in str(err.value), (steps, err.value)
    with pytest.raises(InvalidInput):
        await ops.workflow("empty").enqueue()
    assert await claim_all(db, clock) == []
    assert await db.dependencies.blocked_count() == 0


async def test_cancel_a_workflow_whole(ops: Client, db: Store, clock: ManualClock) -> None:
    flow = ops.workflow("to cancel")
    flow.step("a", "sync", {"s": "a"})
    flow.step("b", "sync", {"s": "b"})
    flow.step("c", "sync", {"s": "c"}, after=["a", "b"])
    flow.step("d", "sync", {"s": "d"}, after=["c"])
    result = await flow.enqueue()
    ids = result.jobs
    outside = (await ops.enqueue("sync", {"o": 1}, depends_on=[ids["d"]], on_failure="ignore")).id
    # a runs; b waits; c and d are blocked
    [a, b] = sorted(await claim_all(db, clock), key=lambda j: j.id)
    await db.jobs.release([b.id], [b.attempt])
    cancelled = await ops.cancel_workflow(result.id, actor="alice")
    assert cancelled.cancelled == sorted([ids["b"], ids["c"], ids["d"]])
    assert cancelled.released == 1  # the outside job ignores the failure of d
    info = await ops.get_workflow(result.id)
    assert info.cancelled_by == "alice"
    assert {s.step: s.state for s in info.steps} == {
        "a": "running",
        "b": "cancelled",
        "c": "cancelled",
        "d": "cancelled",
    }
    assert await state(ops, outside) is JobState.WAITING
    await succeed(db, [a], clock)  # the running step finishes; nothing after it runs
    assert [j.id for j in await claim_all(db, clock)] == [outside]
    with pytest.raises(Conflict):
        await ops.cancel_workflow(result.id)


async def test_lease_expiry_dead_letter_applies_the_policy(ops: Client, db: Store, clock: ManualClock) -> None:
    """A parent dead-lettered by the lease reaper (not by a completion) cancels its dependents too."""
    parent = (await ops.enqueue("sync", {"p": 1}, max_attempts=1)).id
    child = (await ops.enqueue("sync", {"c": 1}, depends_on=[parent])).id
    now = clock.now()
    await db.jobs.claim(Tier.LOW, 10, WORKER, now, now + dt.timedelta(seconds=1))
    reaped = await db.jobs.reap(now + dt.timedelta(seconds=2), 100, [], 3)
    assert [(r.job_id, r.dead) for r in reaped] == [(parent, True)]
    assert await state(ops, child) is JobState.CANCELLED


async def test_clearing_a_parents_queue_applies_the_policy(ops: Client, db: Store, clock: ManualClock) -> None:
    parent = (await ops.enqueue("webhooks", {"p": 1})).id
    cancelled = (await ops.enqueue("sync", {"c": 1}, depends_on=[parent])).id
    ignoring = (await ops.enqueue("sync", {"c": 2}, depends_on=[parent], on_failure="ignore")).id
    assert await ops.service.queues.clear("webhooks", actor="alice") == 1
    assert await state(ops, cancelled) is JobState.CANCELLED
    assert await state(ops, ignoring) is JobState.WAITING


async def test_appliance_flow_held_on_a_dead_letter_resumes_after_retry(
    appliance_factory: Callable[..., Awaitable[Appliance]],
) -> None:
    """Through a running appliance: upload, then mail; the upload fails for good once, the mail
    holds; the operator retries the dead letter and the mail goes out with the upload's result."""
    ran: list[str] = []
    broken = {"upload": True}

    async def handler(job: Job) -> object:
        step = job.data["step"]
        ran.append(step)
        if step == "upload" and broken["upload"]:
            raise ValidationError("the file server refused it")
        return {"step": step, "parents": dict(job.parents)}

    app = await appliance_factory(handlers={"sync": handler})
    flow = app.client.workflow("upload then mail")
    flow.step("prepare", "sync", {"step": "prepare"})
    flow.step("upload", "sync", {"step": "upload"}, after=["prepare"])
    flow.step("mail", "sync", {"step": "mail"}, after=["upload"], on_failure="hold")
    result = await flow.enqueue()

    async def upload_dead() -> bool:
        return (await app.client.get_job(result.jobs["upload"])).state is JobState.DEAD

    await wait_for(upload_dead)
    dead_id = await app.service.dead_letters.of_job(result.jobs["upload"])
    assert await app.client.dead_letters.held(dead_id) == [result.jobs["mail"]]
    broken["upload"] = False
    await app.client.dead_letters.retry(dead_id)

    async def mail_done() -> bool:
        return (await app.client.get_job(result.jobs["mail"])).state is JobState.SUCCEEDED

    await wait_for(mail_done)
    assert ran == ["prepare", "upload", "upload", "mail"]  # prepare did not run again
    relations = await app.client.job_relations(result.jobs["mail"])
    assert relations.result == {
        "step": "mail",
        "parents": {"upload": {"step": "upload", "parents": {"prepare": {"step": "prepare", "parents": {}}}}},
    }


async def test_cancel_a_blocked_job_and_what_waits_on_it(ops: Client, db: Store, clock: ManualClock) -> None:
    parent = (await ops.enqueue("webhooks", {"p": 1})).id
    held = (await ops.enqueue("sync", {"c": 1}, depends_on=[parent], on_failure="hold")).id
    below = (await ops.enqueue("sync", {"g": 1}, depends_on=[held])).id
    await ops.service.queues.clear("webhooks", actor="alice")
    assert await state(ops, held) is JobState.BLOCKED  # hold: nothing releases it now
    result = await ops.cancel_blocked_job(held, actor="alice")
    assert result.cancelled == [held, below]
    assert await state(ops, below) is JobState.CANCELLED
    with pytest.raises(Conflict, match="only a blocked job"):
        await ops.cancel_blocked_job(held)
    trail = [(e.actor, e.action) for e in await ops.service.audit.trail(f"job:{held}")]
    assert trail == [("alice", "job.cancel")]
