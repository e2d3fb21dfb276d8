"""Job dependencies and workflows: the operator's actions on held dependents, a workflow enqueued
at once, and the reads that show a job's parents and children.

A job enqueued with ``depends_on`` (:meth:`fleetbox.service.enqueue.Enqueuer.enqueue`) waits,
blocked, until its parents resolve; the completions release it (``settle_parents`` in SQL). What a
parent's failure does is its dependents' ``on_failure`` policy:

* ``cancel``: they are cancelled (state ``cancelled``, with the reason in
  :meth:`Dependencies.relations`), and so, by their own policies, are theirs;
* ``ignore``: they run anyway (the failed parent's result reads null);
* ``hold``: they wait on the parent's dead letter (:meth:`Dependencies.held_by`). The operator then
  retries the dead letter (the new job takes the parent's place and the flow resumes; steps that
  finished do not run again), skips it with a result they supply (:meth:`Dependencies.skip`), or
  cancels everything below it (:meth:`Dependencies.cancel_held`).

Every change here is audited in the transaction that makes it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetbox import rules
from fleetbox.errors import Conflict, InvalidInput, NotFound
from fleetbox.models import Clock, DeadLetterStatus, JobPriority
from fleetbox.service.audit import Audit
from fleetbox.service.enqueue import Enqueuer
from fleetbox.store import Store
from fleetbox.store.dependencies import Cancellation, Link, NewStep, StepRow

#: A workflow's name: free text for people, like an operator's note.
MAX_WORKFLOW_NAME = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One step of a workflow (``Client.workflow().step(...)`` builds these)."""

    name: str
    queue: str
    data: Mapping[str, Any]
    #: the names of the steps it waits for (none: it starts at once)
    after: Sequence[str] = ()
    #: what a parent's failure does to this step: cancel, ignore or hold
    on_failure: str = "cancel"
    priority: int = JobPriority.NORMAL
    run_at: dt.datetime | None = None
    delay: float | dt.timedelta | None = None
    max_attempts: int | None = None


@dataclass(frozen=True, slots=True)
class WorkflowResult:
    """A workflow as enqueued: its id and each step's job id."""

    id: int
    jobs: dict[str, int]


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    """A workflow and where each of its steps is."""

    id: int
    name: str
    created_at: dt.datetime
    cancelled_at: dt.datetime | None
    cancelled_by: str | None
    #: in enqueue order; ``state`` as in Link
    steps: list[StepRow]


@dataclass(frozen=True, slots=True)
class Relations:
    """A job's place in the graph: what it waits for, what waits for it, and how it ended."""

    job_id: int
    parents: list[Link]
    children: list[Link]
    #: whether the job has a result (a handler's return value, or an operator's stand-in)
    has_result: bool
    result: Any
    #: why it was cancelled, when it was
    cancellation: Cancellation | None = None


@dataclass(frozen=True, slots=True)
class CancelResult:
    """What an operator's cancellation did."""

    #: the jobs cancelled (blocked ones, and waiting ones for a workflow)
    cancelled: list[int] = field(default_factory=list)
    #: jobs outside it that were released, now waiting (their policy ignores a parent's failure)
    released: int = 0


class Dependencies:
    """Workflows and the operator's actions on dependents."""

    def __init__(self, store: Store, audit: Audit, enqueue: Enqueuer, *, clock: Clock) -> None:
        self._store = store
        self._audit = audit
        self._enqueue = enqueue
        self._clock = clock

    # -- workflows --------------------------------------------------------------------------

    async def enqueue_workflow(self, name: str, steps: Iterable[Step], *, actor: str | None = None) -> WorkflowResult:
        """Enqueue every step of a DAG in one transaction: all of them or, if any is invalid (a
        value, an unknown step in ``after``, a cycle), none. Steps without ``after`` are ready at
        once; the others wait for theirs."""
        title = rules.check_text(name, "name", limit=MAX_WORKFLOW_NAME)
        assert title is not None
        given = list(steps)
        if not given:
            raise InvalidInput("a workflow needs at least one step", field="steps")
        if len(given) > rules.MAX_WORKFLOW_STEPS:
            raise InvalidInput(f"a workflow has at most {rules.MAX_WORKFLOW_STEPS} steps", field="steps")
        index: dict[str, int] = {}
        for i, step in enumerate(given):
            if not isinstance(step, Step):
                raise InvalidInput("must be a workflow Step", field=f"steps[{i}]")
            rules.check_step_name(step.name, f"steps[{i}].name")
            if step.name in index:
                raise InvalidInput(f"step {step.name!r} is named twice", field=f"steps[{i}].name")
            index[step.name] = i
        parents: list[list[int]] = []
        for i, step in enumerate(given):
            if isinstance(step.after, str) or not isinstance(step.after, Sequence):
                raise InvalidInput("must be a list of step names", field=f"steps[{i}].after")
            mine: list[int] = []
            for name_ in dict.fromkeys(step.after):
                if name_ not in index:
                    raise InvalidInput(f"no step named {name_!r} in this workflow", field=f"steps[{i}].after")
                mine.append(index[name_])
            parents.append(mine)
        order = _topological(given, parents)
        now = self._clock.now()
        checked = []
        for i, step in enumerate(given):
            tier = await self._enqueue.tier(step.queue, field=f"steps[{i}].queue")
            row = self._enqueue.check(
                step.queue,
                tier,
                step.data,
                step.priority,
                step.run_at,
                step.delay,
                None,
                step.max_attempts,
                f"steps[{i}].",
            )
            policy = rules.check_on_failure(step.on_failure, f"steps[{i}].on_failure")
            checked.append((row, policy))
        has_children = {p for mine in parents for p in mine}
        async with self._store.transaction() as tx:
            workflow_id = await tx.dependencies.create_workflow(title, now)
            ids = await tx.dependencies.reserve_ids(len(given))
            new = [
                (
                    given[i].name,
                    NewStep(
                        id=ids[i],
                        queue=checked[i][0].queue,
                        tier=checked[i][0].tier,
                        data=checked[i][0].data,
                        priority=checked[i][0].priority,
                        run_at=checked[i][0].run_at or now,
                        max_attempts=checked[i][0].max_attempts,
                        pending=len(parents[i]),
                        on_failure=checked[i][1],
                        has_dependents=i in has_children,
                    ),
                )
                for i in order
            ]
            edges = [(ids[p], ids[i]) for i in order for p in parents[i]]
            await tx.dependencies.insert_workflow(workflow_id, new, edges)
            if actor is not None:
                await self._audit.record(
                    tx, actor, "workflow.enqueue", f"workflow:{workflow_id}", {"name": title, "steps": len(given)}
                )
        return WorkflowResult(workflow_id, {step.name: ids[i] for i, step in enumerate(given)})

    async def workflow(self, workflow_id: int) -> WorkflowInfo:
        """A workflow and the state of each step."""
        workflow_id = rules.check_id(workflow_id, "workflow_id")
        row = await self._store.dependencies.workflow(workflow_id)
        if row is None:
            raise NotFound(f"no workflow {workflow_id}")
        steps = await self._store.dependencies.workflow_steps(workflow_id, self._clock.now())
        return WorkflowInfo(row.id, row.name, row.created_at, row.cancelled_at, row.cancelled_by, steps)

    async def cancel_workflow(self, workflow_id: int, *, actor: str) -> CancelResult:
        """Cancel every step of a workflow that has not started: blocked and waiting ones. Running
        steps finish (their results are kept), but nothing after them runs."""
        actor = _actor(actor)
        workflow_id = rules.check_id(workflow_id, "workflow_id")
        now = self._clock.now()
        reason = f"workflow {workflow_id} cancelled by {actor}"
        async with self._store.transaction() as tx:
            row = await tx.dependencies.workflow(workflow_id, lock=True)
            if row is None:
                raise NotFound(f"no workflow {workflow_id}")
            if row.cancelled_at is not None:
                raise Conflict(f"workflow {workflow_id} was already cancelled by {row.cancelled_by}")
            jobs = [s.job_id for s in await tx.dependencies.workflow_steps(workflow_id, now)]
            blocked = await tx.dependencies.cancel_blocked(jobs, reason, actor, now)
            waiting = await tx.dependencies.cancel_waiting(jobs, reason, actor, now)
            cancelled = sorted(blocked + waiting)
            # Jobs outside the workflow that wait on its steps follow their own policies.
            released = await tx.dependencies.settle(cancelled, "failed", now) if cancelled else 0
            await tx.dependencies.mark_workflow_cancelled(workflow_id, actor, now)
            await self._audit.record(
                tx, actor, "workflow.cancel", f"workflow:{workflow_id}", {"cancelled": cancelled, "released": released}
            )
        return CancelResult(cancelled, released)

    # -- one job's place in the graph ---------------------------------------------------------

    async def relations(self, job_id: int) -> Relations:
        """A job's parents and children (where each is now), its result, and why it was
        cancelled when it was: what ``fleetbox job ID``, the TUI and the dashboard show."""
        job_id = rules.check_id(job_id, "job_id")
        now = self._clock.now()
        deps = self._store.dependencies
        parents, children = await deps.parents(job_id, now), await deps.children(job_id, now)
        has_result, result = await deps.result(job_id)
        cancellation = await deps.cancellation(job_id)
        if not (parents or children or has_result or cancellation) and await self._store.jobs.get(job_id, now) is None:
            raise NotFound(f"no job {job_id}")
        return Relations(job_id, parents, children, has_result, result, cancellation)

    async def held_by(self, dead_letter_id: int) -> list[int]:
        """The jobs waiting on a dead letter's job (dependents under the hold policy)."""
        letter = await self._dead_letter(dead_letter_id)
        return await self._store.dependencies.held_by(letter.job_id)

    async def _dead_letter(self, dead_letter_id: int) -> Any:
        letter = await self._store.dead_letters.get(rules.check_id(dead_letter_id))
        if letter is None:
            raise NotFound(f"no dead letter {dead_letter_id}")
        return letter

    # -- the operator's way out of a held flow -----------------------------------------------

    async def skip(self, dead_letter_id: int, result: object, *, actor: str) -> int:
        """Treat a dead letter's job as succeeded with ``result`` (any JSON value) in its place:
        the dependents held on it resume, reading that result. The dead letter is discarded, on
        record. Returns how many dependents were released (now waiting)."""
        actor = _actor(actor)
        dead_letter_id = rules.check_id(dead_letter_id)
        encoded = rules.encode_result(result)
        now = self._clock.now()
        async with self._store.transaction() as tx:
            locked = await tx.dead_letters.lock(dead_letter_id)
            if locked is None:
                raise NotFound(f"no dead letter {dead_letter_id}")
            if locked.status is not DeadLetterStatus.OPEN:
                raise Conflict(f"dead letter {dead_letter_id} is {locked.status.value}, not open")
            letter = await tx.dead_letters.get(dead_letter_id)
            assert letter is not None
            await tx.dead_letters.discard(dead_letter_id, now)
            await tx.dependencies.store_result(letter.job_id, encoded, actor, now)
            released = await tx.dependencies.settle([letter.job_id], "skipped", now, [letter.job_id], [encoded])
            await self._audit.record(
                tx, actor, "dead.skip", f"dead:{dead_letter_id}", {"job_id": letter.job_id, "released": released}
            )
        return released

    async def cancel_held(self, dead_letter_id: int, *, actor: str) -> CancelResult:
        """Cancel every blocked job below a dead letter's job (its dependents, theirs, ...). The
        dead letter itself stays as it is."""
        actor = _actor(actor)
        dead_letter_id = rules.check_id(dead_letter_id)
        now = self._clock.now()
        async with self._store.transaction() as tx:
            locked = await tx.dead_letters.lock(dead_letter_id)
            if locked is None:
                raise NotFound(f"no dead letter {dead_letter_id}")
            letter = await tx.dead_letters.get(dead_letter_id)
            assert letter is not None
            below = await tx.dependencies.blocked_below([letter.job_id])
            reason = f"dependents of dead letter {dead_letter_id} cancelled by {actor}"
            cancelled = await tx.dependencies.cancel_blocked(below, reason, actor, now) if below else []
            released = await tx.dependencies.settle(cancelled, "failed", now) if cancelled else 0
            await self._audit.record(
                tx,
                actor,
                "dead.cancel_dependents",
                f"dead:{dead_letter_id}",
                {"job_id": letter.job_id, "cancelled": cancelled, "released": released},
            )
        return CancelResult(cancelled, released)

    async def cancel_blocked(self, job_id: int, *, actor: str) -> CancelResult:
        """Cancel a blocked job and every blocked job below it (for a job held on a parent that
        has no dead letter to act on, such as one whose queue was cleared). Conflict when the
        job is not blocked."""
        actor = _actor(actor)
        job_id = rules.check_id(job_id, "job_id")
        now = self._clock.now()
        async with self._store.transaction() as tx:
            below = await tx.dependencies.blocked_below([job_id])
            cancelled = await tx.dependencies.cancel_blocked([job_id, *below], f"cancelled by {actor}", actor, now)
            if job_id not in cancelled:
                info = await tx.jobs.get(job_id, now)
                if info is None:
                    raise NotFound(f"no job {job_id}")
                raise Conflict(f"job {job_id} is {info.state.value}; only a blocked job can be cancelled here")
            released = await tx.dependencies.settle(cancelled, "failed", now)
            await self._audit.record(
                tx, actor, "job.cancel", f"job:{job_id}", {"cancelled": cancelled, "released": released}
            )
        return CancelResult(cancelled, released)


def _topological(steps: Sequence[Step], parents: Sequence[Sequence[int]]) -> list[int]:
    """The steps' indexes, parents before children; InvalidInput naming a cycle if there is one."""
    children: list[list[int]] = [[] for _ in steps]
    missing = [len(p) for p in parents]
    for i, mine in enumerate(parents):
        for p in mine:
            children[p].append(i)
    ready = [i for i, n in enumerate(missing) if n == 0]
    order: list[int] = []
    while ready:
        i = ready.pop()
        order.append(i)
        for c in children[i]:
            missing[c] -= 1
            if missing[c] == 0:
                ready.append(c)
    if len(order) == len(steps):
        return order
    # Walk back from a step left over: its parents include another left over, until one repeats.
    left = {i for i, n in enumerate(missing) if n > 0}
    at = min(left)
    path: list[int] = []
    while at not in path:
        path.append(at)
        at = next(p for p in parents[at] if p in left)
    cycle = [*path[path.index(at) :], at]
    names = " -> ".join(steps[i].name for i in reversed(cycle))
    raise InvalidInput(f"the steps form a cycle: {names}", field="steps")


def _actor(value: object) -> str:
    checked = rules.check_text(value, "actor", limit=rules.MAX_ACTOR)
    assert checked is not None
    return checked
