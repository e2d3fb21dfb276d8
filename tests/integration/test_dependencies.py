"""Job dependencies: a job enqueued with ``depends_on`` stays blocked (never claimed) until every
parent has succeeded, then becomes waiting in the last parent's completion; it reads its parents'
results in ``job.parents``. Concurrent completions of two parents, in real concurrent
transactions, never strand the child.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fleetbox import Client, InvalidInput
from fleetbox.app import Appliance
from fleetbox.models import Job, JobState, ManualClock
from fleetbox.store import Store
from fleetbox.store.sql import queries
from tests.conftest import wait_for
from tests.integration.flows import WORKER, claim_all, state, succeed

AppFactory = Callable[..., Awaitable[Appliance]]
UNKNOWN_ID = 987_654_321


async def test_child_blocked_until_every_parent_succeeds(db: Store, clock: ManualClock) -> None:
    client = Client(db, clock=clock)
    a = (await client.enqueue("sync", {"step": "a"})).id
    b = (await client.enqueue("sync", {"step": "b"})).id
    child = (await client.enqueue("sync", {"step": "c"}, depends_on=[a, b])).id
    assert await state(client, child) is JobState.BLOCKED

    # The claim never hands out the blocked child, only its parents.
    claimed = await claim_all(db, clock)
    assert sorted(j.id for j in claimed) == [a, b]
    assert await succeed(db, [j for j in claimed if j.id == a], clock) == 0
    assert await state(client, child) is JobState.BLOCKED
    assert await claim_all(db, clock) == []

    # The last parent's completion makes the child waiting in the same statement.
    assert await succeed(db, [j for j in claimed if j.id == b], clock) == 1
    assert await state(client, child) is JobState.WAITING
    assert [j.id for j in await claim_all(db, clock)] == [child]


async def test_child_reads_parent_results(db: Store, clock: ManualClock) -> None:
    client = Client(db, clock=clock)
    a = (await client.enqueue("sync", {"step": "a"})).id
    b = (await client.enqueue("sync", {"step": "b"})).id
    child = (await client.enqueue("sync", {"step": "c"}, depends_on=[a, b])).id
    claimed = await claim_all(db, clock)
    await succeed(db, claimed, clock, {a: '{"url": "https://x/1"}'})
    [job] = await claim_all(db, clock)
    assert job.id == child
    # b returned nothing: its key is there with null.
    assert dict(job.parents) == {str(a): {"url": "https://x/1"}, str(b): None}


async def test_parent_already_succeeded_counts_as_done(db: Store, clock: ManualClock) -> None:
    client = Client(db, clock=clock)
    a = (await client.enqueue("sync", {"step": "a"})).id
    await succeed(db, await claim_all(db, clock), clock, {a: "42"})
    child = (await client.enqueue("sync", {"step": "c"}, depends_on=[a])).id
    assert await state(client, child) is JobState.WAITING
    [job] = await claim_all(db, clock)
    assert dict(job.parents) == {str(a): 42}


async def test_bad_dependencies_are_rejected_and_change_nothing(db: Store, clock: ManualClock) -> None:
    client = Client(db, clock=clock)
    a = (await client.enqueue("sync", {"step": "a"})).id
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"depends_on": [a, UNKNOWN_ID]}, "depends_on", f"no job {UNKNOWN_ID}"),
        ({"depends_on": []}, "depends_on", "at least one"),
        ({"depends_on": [0]}, "depends_on[0]", "positive integer"),
        ({"depends_on": "12"}, "depends_on", "list of job ids"),
        ({"depends_on": [a], "on_failure": "later"}, "on_failure", "cancel, ignore, hold"),
        ({"depends_on": [a], "singleton_key": "k"}, "singleton_key", "depends_on"),
    ]
    for kwargs, field, words in cases:
        with pytest.raises(InvalidInput) as err:
            await client.enqueue("sync", {"step": "c"}, **kwargs)
        assert err.value.field == field and words in str(err.value), (kwargs, err.value)
    assert await db.dependencies.blocked_count() == 0
    assert [j.id for j in await claim_all(db, clock)] == [a]


async def test_sql_function_enqueue_after(db: Store, clock: ManualClock) -> None:
    """Another language's way in: SELECT fleetbox.enqueue_after(queue, payload, parents)."""
    client = Client(db, clock=clock)
    a = (await client.enqueue("sync", {"step": "a"})).id
    async with db.pool.acquire() as conn:
        child = await conn.fetchval("SELECT fleetbox.enqueue_after('sync', '{\"n\": 1}', ARRAY[$1::bigint])", a)
        with pytest.raises(Exception, match="depends_on: no job"):
            await conn.fetchval("SELECT fleetbox.enqueue_after('sync', '{}', ARRAY[$1::bigint])", UNKNOWN_ID)
    assert await state(client, child) is JobState.BLOCKED
    await succeed(db, await claim_all(db, clock), clock)
    # Released to the hot table (due by the database's clock, which runs ahead of the test's).
    assert await state(client, child) in (JobState.WAITING, JobState.SCHEDULED)


@pytest.mark.parametrize("round_", range(4))
async def test_fan_in_race_never_strands_the_child(db: Store, clock: ManualClock, round_: int) -> None:
    """Many parents of one child complete at the same moment, each in its own transaction on its
    own connection: exactly one completion releases the child, every time."""
    client = Client(db, clock=clock)
    parents = [(await client.enqueue("sync", {"p": i})).id for i in range(4)]
    child = (await client.enqueue("sync", {"step": "c"}, depends_on=parents)).id
    claimed = await claim_all(db, clock)
    assert len(claimed) == 4
    gate = asyncio.Event()

    async def complete_one(job: Job) -> int:
        async with db.transaction() as tx:
            # Each transaction has its connection before any starts: they really overlap.
            await gate.wait()
            t = clock.now().timestamp()
            _held, released = await tx.jobs.complete_succeeded([job.id], [job.attempt], [t], [t], WORKER)
            return released

    tasks = [asyncio.create_task(complete_one(j)) for j in claimed]
    gate.set()
    released = await asyncio.gather(*tasks)
    assert sum(released) == 1
    assert await state(client, child) is JobState.WAITING
    assert [j.id for j in await claim_all(db, clock)] == [child]


@pytest.mark.parametrize("round_", range(4))
async def test_enqueue_racing_the_parents_completion(db: Store, clock: ManualClock, round_: int) -> None:
    """A child enqueued while its running parent completes, in overlapping transactions: either
    the child sees the parent done, or the completion sees the child; it is never stranded."""
    client = Client(db, clock=clock)
    parent = (await client.enqueue("sync", {"p": 1})).id
    [job] = await claim_all(db, clock)
    gate = asyncio.Event()

    async def complete() -> None:
        async with db.transaction() as tx:
            await gate.wait()
            t = clock.now().timestamp()
            await tx.jobs.complete_succeeded([job.id], [job.attempt], [t], [t], WORKER)

    async def enqueue() -> int:
        await gate.wait()
        return (await client.enqueue("sync", {"step": "c"}, depends_on=[parent])).id

    tasks = [asyncio.create_task(complete()), asyncio.create_task(enqueue())]
    gate.set()
    _, child = await asyncio.gather(*tasks)
    assert await state(client, child) is JobState.WAITING


async def waiting_on_lock(db: Store, pid: int) -> bool:
    async with db.pool.acquire() as conn:
        kind = await conn.fetchval("SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid)
    return bool(kind == "Lock")


async def test_completion_waiting_on_a_parent_lock_sees_the_new_child(db: Store, clock: ManualClock) -> None:
    """The race forced step by step: a child's enqueue holds its parent's row lock; the parent's
    completion starts (its statement's snapshot cannot see the child) and waits for that lock;
    the enqueue commits. The completion must still release the child."""
    client = Client(db, clock=clock)
    parent = (await client.enqueue("sync", {"p": 1})).id
    [job] = await claim_all(db, clock)
    t = clock.now().timestamp()
    async with db.pool.acquire() as enq, db.pool.acquire() as comp:
        tx = enq.transaction()
        await tx.start()
        child = await enq.fetchval(
            "SELECT enqueue_after('sync', '{}', ARRAY[$1::bigint], 'cancel', 5, $2)", parent, clock.now()
        )
        comp_pid = await comp.fetchval("SELECT pg_backend_pid()")
        completing = asyncio.create_task(
            comp.fetchrow(queries()["complete_succeeded"], [job.id], [job.attempt], [t], [t], WORKER, [], [])
        )
        await wait_for(lambda: waiting_on_lock(db, comp_pid))
        await tx.commit()
        row = await completing
    assert tuple(row) == (1, 1)
    assert await state(client, child) is JobState.WAITING


async def test_second_parent_waiting_on_the_child_lock_releases_it(db: Store, clock: ManualClock) -> None:
    """Two parents' completions, forced to overlap: the first holds the child's row (its counter
    decremented, not committed); the second waits for it, then sees the counter reach zero."""
    client = Client(db, clock=clock)
    a = (await client.enqueue("sync", {"p": 1})).id
    b = (await client.enqueue("sync", {"p": 2})).id
    child = (await client.enqueue("sync", {"step": "c"}, depends_on=[a, b])).id
    jobs = {j.id: j for j in await claim_all(db, clock)}
    t = clock.now().timestamp()
    sql = queries()["complete_succeeded"]
    async with db.pool.acquire() as first, db.pool.acquire() as second:
        tx = first.transaction()
        await tx.start()
        assert tuple(await first.fetchrow(sql, [a], [jobs[a].attempt], [t], [t], WORKER, [], [])) == (1, 0)
        second_pid = await second.fetchval("SELECT pg_backend_pid()")
        completing = asyncio.create_task(second.fetchrow(sql, [b], [jobs[b].attempt], [t], [t], WORKER, [], []))
        await wait_for(lambda: waiting_on_lock(db, second_pid))
        await tx.commit()
        assert tuple(await completing) == (1, 1)
    assert await state(client, child) is JobState.WAITING


async def test_appliance_runs_a_chain_with_results(appliance_factory: AppFactory, db: Store) -> None:
    """Through a running appliance: a handler's return value reaches the next step."""
    seen: dict[int, dict[str, Any]] = {}

    async def handler(job: Job) -> object:
        seen[job.id] = dict(job.parents)
        return {"step": job.data["step"], "saw": sorted(job.parents)}

    app = await appliance_factory(handlers={"sync": handler})
    first = (await app.client.enqueue("sync", {"step": 1})).id
    second = (await app.client.enqueue("sync", {"step": 2}, depends_on=[first])).id
    third = (await app.client.enqueue("sync", {"step": 3}, depends_on=[second])).id

    async def done() -> bool:
        return (await app.client.get_job(third)).state is JobState.SUCCEEDED

    await wait_for(done)
    assert seen[first] == {}
    assert seen[second] == {str(first): {"step": 1, "saw": []}}
    assert seen[third] == {str(second): {"step": 2, "saw": [str(first)]}}


async def test_unstorable_result_fails_the_attempt(appliance_factory: AppFactory, db: Store) -> None:
    async def handler(job: Job) -> object:
        return {"when": object()}

    app = await appliance_factory(handlers={"sync": handler})
    job_id = (await app.client.enqueue("sync", {"x": 1})).id

    async def dead() -> bool:
        return (await app.client.get_job(job_id)).state is JobState.DEAD

    await wait_for(dead)
    info = await app.client.get_job(job_id)
    assert "result cannot be stored" in (info.history[-1].error or "")


async def test_job_tracking_view_shows_blocked_jobs(db: Store, clock: ManualClock) -> None:
    client = Client(db, clock=clock)
    a = (await client.enqueue("sync", {"step": "a"})).id
    child = (await client.enqueue("sync", {"step": "c"}, depends_on=[a])).id
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT job_id, status, state FROM fleetbox.job_tracking ORDER BY job_id")
    assert [tuple(r) for r in rows] == [(a, "pending", "waiting"), (child, "blocked", "blocked")]
