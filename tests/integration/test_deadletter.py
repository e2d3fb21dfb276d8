"""The dead-letter queue as an operator works it: list (filters, keyset paging), review, discard,
retry, and the audit trail each action leaves.

Dead letters are made the real way: an appliance whose handlers refuse every payload
(ValidationError) dead-letters every job it claims. A ManualClock decides their failed_at, so
ties are exact.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

import pytest

from fleetbox import Client, Conflict, InvalidInput, NotFound, ValidationError
from fleetbox.app import Appliance
from fleetbox.models import DeadLetter, DeadLetterStatus, Job, JobState, ManualClock, Tier
from fleetbox.store import Store
from fleetbox.worker.registry import SPEC_QUEUES
from tests.conftest import wait_for

AppFactory = Callable[..., Awaitable[Appliance]]

UNKNOWN_ID = 987_654_321


async def refuse(job: Job) -> None:
    raise ValidationError("no processor configured: every payload is refused")


@pytest.fixture
async def app(appliance_factory: AppFactory, clock: ManualClock) -> Appliance:
    """An appliance whose handlers refuse every job: every job it runs goes to the dead letters."""
    handlers = {name: refuse for name, tier in SPEC_QUEUES.items() if tier is not Tier.DEAD}
    return await appliance_factory(handlers=handlers, clock=clock)


@pytest.fixture
def ops(db: Store, clock: ManualClock) -> Client:
    """The operator's client, on the same clock as the appliance."""
    return Client(db, clock=clock, actor="ops-console")


async def make_dead(
    app: Appliance, clock: ManualClock, queue: str, count: int, *, singleton_key: str | None = None
) -> list[DeadLetter]:
    """``count`` jobs on ``queue`` that fail now (by the clock); their dead letters, oldest first."""
    job_ids = []
    for i in range(count):
        result = await app.client.enqueue(
            queue, {"i": i, "queue": queue}, run_at=clock.now(), singleton_key=singleton_key
        )
        job_ids.append(result.id)

    async def all_dead() -> bool:
        states = [(await app.client.get_job(j)).state for j in job_ids]
        return all(s is JobState.DEAD for s in states)

    await wait_for(all_dead)
    by_job = {d.job_id: d for d in await app.client.dead_letters.list(limit=1000)}
    return [by_job[j] for j in job_ids]


def key(d: DeadLetter) -> tuple[dt.datetime, int]:
    return (d.failed_at, d.id)


async def all_pages(ops: Client, limit: int, **filters: object) -> list[list[DeadLetter]]:
    pages: list[list[DeadLetter]] = []
    before = None
    while True:
        page = await ops.dead_letters.list(before=before, limit=limit, **filters)  # type: ignore[arg-type]
        if not page:
            return pages
        pages.append(page)
        before = page[-1].id


# -- list ------------------------------------------------------------------------------------


async def test_list_is_newest_first_and_pages_by_failed_at_and_id(
    app: Appliance, clock: ManualClock, ops: Client
) -> None:
    t0 = clock.now()
    first = await make_dead(app, clock, "teams-outbound", 3)
    clock.advance(1)
    second = await make_dead(app, clock, "webhooks", 3)
    clock.advance(1)
    third = await make_dead(app, clock, "teams-outbound", 2)
    assert {d.failed_at for d in first} == {t0}
    assert {d.failed_at for d in third} == {t0 + dt.timedelta(seconds=2)}

    everything = await ops.dead_letters.list()
    assert [d.id for d in everything] == [d.id for d in sorted(first + second + third, key=key, reverse=True)]

    # page boundaries fall inside groups with the same failed_at: the id breaks the tie
    for limit in (1, 2, 3, 5):
        pages = await all_pages(ops, limit)
        assert all(len(p) <= limit for p in pages)
        assert [d.id for p in pages for d in p] == [d.id for d in everything]

    teams = [d.id for p in await all_pages(ops, 2, queue="teams-outbound") for d in p]
    assert teams == [d.id for d in sorted(first + third, key=key, reverse=True)]
    assert [d.id for d in await ops.dead_letters.list(queue="webhooks", limit=2)] == [d.id for d in second[::-1][:2]]
    assert await ops.dead_letters.list(queue="sync") == []


async def test_list_filters_by_reviewed_and_status(
    app: Appliance, appliance_factory: AppFactory, clock: ManualClock, ops: Client
) -> None:
    a, b, c, d = await make_dead(app, clock, "webhooks", 4)
    await app.stop()  # from here on, retried jobs wait in their queue
    await ops.dead_letters.review(a.id, reviewed_by="alice")
    await ops.dead_letters.review(b.id, reviewed_by="bob", resolution_notes="retrying")
    retried_job = await ops.dead_letters.retry(b.id)
    await ops.dead_letters.discard(c.id)

    def ids(items: list[DeadLetter]) -> set[int]:
        return {x.id for x in items}

    assert ids(await ops.dead_letters.list(reviewed=True)) == {a.id, b.id}
    assert ids(await ops.dead_letters.list(reviewed=False)) == {c.id, d.id}
    assert ids(await ops.dead_letters.list(status="open")) == {a.id, d.id}
    assert ids(await ops.dead_letters.list(status=DeadLetterStatus.RETRIED)) == {b.id}
    assert ids(await ops.dead_letters.list(status="discarded")) == {c.id}
    assert ids(await ops.dead_letters.list(status="open", reviewed=False)) == {d.id}
    assert ids(await ops.dead_letters.list(queue="webhooks", status="open", reviewed=True)) == {a.id}
    assert await ops.dead_letters.list(queue="sync", status="open") == []

    [listed] = await ops.dead_letters.list(status="retried")
    assert (listed.retried_job_id, listed.retried_at) == (retried_job, clock.now())
    assert listed.reviewed and listed.reviewed_by == "bob"
    # the open, reviewed one is still counted on its queue; retried and discarded ones are not
    webhooks = next(q for q in await ops.queue_depth() if q.queue == "webhooks")
    assert webhooks.dead == 2


async def test_list_rejects_bad_arguments(ops: Client) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        await ops.dead_letters.list(status="lost")
    assert excinfo.value.field == "status"
    for limit in (0, -1, 1001):
        with pytest.raises(InvalidInput) as excinfo:
            await ops.dead_letters.list(limit=limit)
        assert excinfo.value.field == "limit"


# -- review ----------------------------------------------------------------------------------


async def test_review_records_who_when_and_notes_with_an_audit_row(
    app: Appliance, clock: ManualClock, ops: Client
) -> None:
    [dead] = await make_dead(app, clock, "teams-outbound", 1)
    assert (dead.reviewed, dead.reviewed_by, dead.reviewed_at, dead.resolution_notes) == (False, None, None, None)
    clock.advance(30)
    reviewed = await ops.dead_letters.review(
        dead.id, reviewed_by="admin@example.com", resolution_notes="Fixed upstream API issue"
    )
    assert reviewed.reviewed
    assert (reviewed.reviewed_by, reviewed.reviewed_at, reviewed.resolution_notes) == (
        "admin@example.com",
        clock.now(),
        "Fixed upstream API issue",
    )
    assert reviewed.status is DeadLetterStatus.OPEN  # reviewing neither retries nor discards
    assert await ops.dead_letters.get(dead.id) == reviewed

    [audit] = await ops.dead_letters.audit_trail(dead.id)
    assert (audit.actor, audit.action, audit.target) == ("admin@example.com", "dead.review", f"dead:{dead.id}")
    assert audit.details == {"notes": "Fixed upstream API issue", "reviewed_by": "admin@example.com"}


async def test_review_needs_a_reviewer_and_writes_nothing_without_one(
    app: Appliance, clock: ManualClock, ops: Client
) -> None:
    [dead] = await make_dead(app, clock, "teams-outbound", 1)
    for who in ("", "   ", None):
        with pytest.raises(InvalidInput) as excinfo:
            await ops.dead_letters.review(dead.id, reviewed_by=who)  # type: ignore[arg-type]
        assert excinfo.value.field == "reviewed_by"
    assert not (await ops.dead_letters.get(dead.id)).reviewed
    assert await ops.dead_letters.audit_trail(dead.id) == []


async def test_review_of_an_unknown_dead_letter_is_not_found(ops: Client) -> None:
    with pytest.raises(NotFound):
        await ops.dead_letters.review(UNKNOWN_ID, reviewed_by="alice")
    assert await ops.dead_letters.audit_trail(UNKNOWN_ID) == []


# -- discard ---------------------------------------------------------------------------------


async def test_discard_only_an_open_dead_letter(app: Appliance, clock: ManualClock, ops: Client) -> None:
    first, second = await make_dead(app, clock, "webhooks", 2)
    await app.stop()
    clock.advance(5)
    await ops.dead_letters.discard(first.id, actor="carol")
    gone = await ops.dead_letters.get(first.id)
    assert (gone.status, gone.discarded_at) == (DeadLetterStatus.DISCARDED, clock.now())
    [audit] = await ops.dead_letters.audit_trail(first.id)
    assert (audit.actor, audit.action) == ("carol", "dead.discard")

    with pytest.raises(Conflict, match="discarded"):
        await ops.dead_letters.discard(first.id)
    with pytest.raises(Conflict, match="discarded"):
        await ops.dead_letters.retry(first.id)

    await ops.dead_letters.retry(second.id)
    with pytest.raises(Conflict, match="retried"):
        await ops.dead_letters.discard(second.id)
    assert (await ops.dead_letters.get(second.id)).status is DeadLetterStatus.RETRIED
    assert [a.action for a in await ops.dead_letters.audit_trail(first.id)] == ["dead.discard"]
    assert [a.action for a in await ops.dead_letters.audit_trail(second.id)] == ["dead.retry"]


async def test_unknown_ids_are_not_found(ops: Client) -> None:
    with pytest.raises(NotFound):
        await ops.dead_letters.get(UNKNOWN_ID)
    with pytest.raises(NotFound):
        await ops.dead_letters.discard(UNKNOWN_ID)
    with pytest.raises(NotFound):
        await ops.dead_letters.retry(UNKNOWN_ID)
    with pytest.raises(NotFound):
        await ops.retry_failed_job(UNKNOWN_ID)
    for bad in (0, -3, True, "7"):
        with pytest.raises(InvalidInput):
            await ops.dead_letters.get(bad)  # type: ignore[arg-type]


# -- retry -----------------------------------------------------------------------------------


async def test_retry_makes_one_new_job_and_a_second_retry_conflicts(
    app: Appliance, clock: ManualClock, ops: Client
) -> None:
    [dead] = await make_dead(app, clock, "teams-outbound", 1)
    await app.stop()
    clock.advance(60)
    job_id = await ops.dead_letters.retry(dead.id, actor="dave")
    info = await ops.get_job(job_id)
    assert (info.queue, info.data, info.priority, info.dead_letter_id) == (
        "teams-outbound",
        dead.data,
        dead.priority,
        dead.id,
    )
    assert (info.state, info.attempts, info.run_at) == (JobState.WAITING, 0, clock.now())

    with pytest.raises(Conflict, match=f"already retried as job {job_id}"):
        await ops.dead_letters.retry(dead.id)
    with pytest.raises(Conflict):
        await ops.retry_failed_job(dead.job_id)  # the same dead letter, by its job's id

    after = await ops.dead_letters.get(dead.id)
    assert (after.status, after.retried_job_id, after.retried_at) == (DeadLetterStatus.RETRIED, job_id, clock.now())
    teams = next(q for q in await ops.queue_depth() if q.queue == "teams-outbound")
    assert (teams.waiting, teams.dead) == (1, 0)  # one new job, and the dead letter no longer open
    [audit] = await ops.dead_letters.audit_trail(dead.id)
    assert (audit.actor, audit.action, audit.details) == ("dave", "dead.retry", {"job_id": job_id})


async def test_retry_conflicts_when_a_live_job_holds_the_singleton_key(
    app: Appliance, appliance_factory: AppFactory, clock: ManualClock, ops: Client
) -> None:
    [dead] = await make_dead(app, clock, "teams-outbound", 1, singleton_key="chat-42")
    assert dead.singleton_key == "chat-42"
    await app.stop()
    live = await ops.enqueue("teams-outbound", {"content": "newer"}, singleton_key="chat-42", run_at=clock.now())
    assert live.created

    with pytest.raises(Conflict, match="singleton key"):
        await ops.dead_letters.retry(dead.id)
    with pytest.raises(Conflict, match="singleton key"):
        await ops.retry_failed_job(dead.job_id)

    # nothing changed: the dead letter is open, the live job alone is waiting, no audit row
    after = await ops.dead_letters.get(dead.id)
    assert (after.status, after.retried_job_id, after.retried_at) == (DeadLetterStatus.OPEN, None, None)
    assert after == dead
    teams = next(q for q in await ops.queue_depth() if q.queue == "teams-outbound")
    assert (teams.waiting, teams.dead) == (1, 1)
    assert (await ops.get_job(live.id)).data == {"content": "***"}  # teams-outbound masks content
    assert await ops.dead_letters.audit_trail(dead.id) == []

    # once the live job has run, the key is free and the retry goes through
    async def deliver(job: Job) -> None:
        return None

    await appliance_factory(handlers={"teams-outbound": deliver}, clock=clock)
    await wait_for(lambda: job_state_is(ops, live.id, JobState.SUCCEEDED))
    job_id = await ops.dead_letters.retry(dead.id)
    await wait_for(lambda: job_state_is(ops, job_id, JobState.SUCCEEDED))
    assert (await ops.get_job(job_id)).singleton_key == "chat-42"


async def job_state_is(client: Client, job_id: int, state: JobState) -> bool:
    return (await client.get_job(job_id)).state is state
