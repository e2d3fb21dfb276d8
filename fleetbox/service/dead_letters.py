"""The dead-letter queue: list, count, group, retry, review and discard jobs that failed for good,
one at a time or every one matching a filter.

Each change is conditional in PostgreSQL and audited in the transaction that makes it. A bulk
action takes the matching dead letters under lock and acts only when exactly ``expected`` match
(what the operator previewed), so nothing the operator did not see is touched.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field, replace

from fleetbox import rules
from fleetbox.errors import Conflict, ErrorClass, InvalidInput, NotFound
from fleetbox.models import Clock, DeadLetter, DeadLetterStatus
from fleetbox.redaction import Redaction
from fleetbox.service.audit import Audit
from fleetbox.store import Store, Tx
from fleetbox.store.audit import AuditEntry
from fleetbox.store.dead_letters import FIRST_PAGE, DeadFilter, ErrorGroupRow

#: The longest page.
MAX_PAGE = 1000
#: The most dead letters a count counts (past it the count says "at least").
COUNT_CAP = 10_000
#: The most dead letters one bulk action takes.
MAX_BULK = 10_000
#: The most dead letters the grouping by error reads (the newest).
GROUP_READ = 50_000
#: The filter that matches every dead letter.
EVERY = DeadFilter()


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    """One page of the dead-letter list."""

    letters: list[DeadLetter]
    #: the ``before`` of the next page (None: this was the last page)
    next_before: int | None
    #: how many dead letters match the filter (at least this many when ``total_capped``)
    total: int
    total_capped: bool


@dataclass(frozen=True, slots=True)
class BulkResult:
    """The outcome of a bulk action on the dead letters matching a filter."""

    matched: int
    #: (dead letter id, new job id) of each one retried
    retried: list[tuple[int, int]] = field(default_factory=list)
    #: dead letters reviewed or discarded
    changed: list[int] = field(default_factory=list)
    #: dead letters left as they were (a retry whose singleton key is held by a live job)
    skipped: list[int] = field(default_factory=list)


def check_filter(
    *,
    queue: object = None,
    reviewed: object = None,
    status: object = None,
    error_class: object = None,
    text: object = None,
) -> DeadFilter:
    """A dead-letter filter from outside values, each checked (InvalidInput naming it)."""
    if reviewed is not None and not isinstance(reviewed, bool):
        raise InvalidInput("must be true or false", field="reviewed")
    checked_status = None
    if status is not None:
        try:
            checked_status = DeadLetterStatus(str(status))
        except ValueError:
            raise InvalidInput("must be open, retried or discarded", field="status") from None
    checked_class = rules.check_text(error_class, "error_class", limit=rules.MAX_ERROR_CLASS, required=False)
    if checked_class is not None and checked_class not in ErrorClass._value2member_map_:
        # A word that is no class matches nothing: say so, rather than answer "0 matching".
        raise InvalidInput(f"must be one of {', '.join(c.value for c in ErrorClass)}", field="error_class")
    return DeadFilter(
        queue=rules.check_text(queue, "queue", limit=63, required=False),
        reviewed=reviewed,
        status=checked_status,
        error_class=checked_class,
        text=rules.check_text(text, "text", limit=rules.MAX_TEXT_FILTER, required=False),
    )


class DeadLetters:
    """Operations on dead letters.

    Every dead letter read here leaves with its payload masked by its original queue's
    redaction policy; only :meth:`reveal` returns it in full, and audits it.
    """

    def __init__(self, store: Store, audit: Audit, *, clock: Clock, redaction: Redaction | None = None) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock
        self.redaction = redaction or Redaction.of()

    def masked(self, letter: DeadLetter) -> DeadLetter:
        """The dead letter with its payload masked by its queue's policy."""
        data = self.redaction.mask(letter.queue, letter.data)
        return letter if data is letter.data else replace(letter, data=data)

    async def get_unmasked(self, dead_letter_id: int) -> DeadLetter:
        """The dead letter with its payload in full: only for :meth:`reveal` and
        ``Jobs.reveal``, which audit the request."""
        letter = await self._store.dead_letters.get(rules.check_id(dead_letter_id))
        if letter is None:
            raise NotFound(f"no dead letter {dead_letter_id}")
        return letter

    async def get(self, dead_letter_id: int) -> DeadLetter:
        """A dead letter (its payload masked)."""
        return self.masked(await self.get_unmasked(dead_letter_id))

    async def reveal(self, dead_letter_id: int, *, actor: str) -> DeadLetter:
        """A dead letter with its payload in full, for an operator who asked for it: the request
        is written to the audit log (``dead.reveal``, who, which dead letter) before it is read."""
        who = _actor(actor)
        letter = await self.get_unmasked(dead_letter_id)
        await self._audit.record(
            self._store, who, "dead.reveal", f"dead:{letter.id}", {"job_id": letter.job_id, "queue": letter.queue}
        )
        return letter

    async def of_job(self, job_id: int) -> int:
        """The id of the dead letter a job became (NotFound when it did not)."""
        found = await self._store.dead_letters.id_of_job(rules.check_id(job_id, "job_id"))
        if found is None:
            raise NotFound(f"job {job_id} has no dead letter")
        return found

    async def list(self, where: DeadFilter = EVERY, *, before: int | None = None, limit: int = 100) -> DeadLetterPage:
        """Newest first; ``before`` is the last id of the previous page."""
        if not rules.is_int(limit) or not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"must be from 1 to {MAX_PAGE}", field="limit")
        top = FIRST_PAGE
        if before is not None:
            at = await self._store.dead_letters.cursor(rules.check_id(before, "before"))
            if at is None:
                raise NotFound(f"before: no dead letter {before} to continue after")
            top = (at, before)
        async with self._store.transaction() as tx:
            await tx.jobs.plan_for_parameters()
            rows = await tx.dead_letters.page(where, top, limit + 1)
        letters = [self.masked(d) for d in rows[:limit]]
        total, capped = await self.count(where)
        return DeadLetterPage(letters, letters[-1].id if len(rows) > limit else None, total, capped)

    async def count(self, where: DeadFilter = EVERY, *, cap: int = COUNT_CAP) -> tuple[int, bool]:
        """How many match, counting at most ``cap``: ``(count, capped)``; when capped, at least
        ``count`` match (the count stops there, so it costs no more than reading ``cap`` entries)."""
        if not rules.is_int(cap) or not 1 <= cap <= COUNT_CAP:
            raise InvalidInput(f"must be from 1 to {COUNT_CAP}", field="cap")
        found = await self._store.dead_letters.count(where, cap + 1)
        return min(found, cap), found > cap

    async def groups(self, where: DeadFilter = EVERY) -> builtins.list[ErrorGroupRow]:
        """The matching dead letters grouped by error class and message, largest group first
        (over the newest ``GROUP_READ`` that match)."""
        return await self._store.dead_letters.groups(where, GROUP_READ)

    async def trail(self, dead_letter_id: int) -> builtins.list[AuditEntry]:
        """Every operator action on this dead letter, oldest first."""
        return await self._audit.trail(f"dead:{rules.check_id(dead_letter_id)}")

    # -- one dead letter --------------------------------------------------------------------

    async def retry(self, dead_letter_id: int, *, actor: str) -> int:
        """Re-enqueue a dead letter on its original queue as a new job; returns the job's id."""
        actor = _actor(actor)
        dead_letter_id = rules.check_id(dead_letter_id)
        now = self._clock.now()
        async with self._store.transaction() as tx:
            locked = await tx.dead_letters.lock(dead_letter_id)
            if locked is None:
                raise NotFound(f"no dead letter {dead_letter_id}")
            if locked.status is DeadLetterStatus.RETRIED:
                raise Conflict(f"dead letter {dead_letter_id} was already retried as job {locked.retried_job_id}")
            if locked.status is DeadLetterStatus.DISCARDED:
                raise Conflict(f"dead letter {dead_letter_id} was discarded")
            job_id = await tx.dead_letters.requeue(dead_letter_id, now)
            if job_id is None:
                raise Conflict(
                    f"dead letter {dead_letter_id}: a job with the same singleton key is already waiting or running"
                )
            await tx.dead_letters.mark_retried(dead_letter_id, job_id, now)
            # Dependents held on the failed job now wait on the new one (the hold policy).
            await tx.dependencies.follow_retries([dead_letter_id])
            await self._audit.record(tx, actor, "dead.retry", f"dead:{dead_letter_id}", {"job_id": job_id})
        return job_id

    async def review(
        self,
        dead_letter_id: int,
        *,
        reviewed_by: str,
        resolution_notes: str | None = None,
        actor: str | None = None,
    ) -> DeadLetter:
        """Mark a dead letter reviewed: who, when, and resolution notes. The audit log names
        ``actor`` (who sent it, as for a retry or discard) when given, else the reviewer."""
        who = _actor(reviewed_by, "reviewed_by")
        by = _actor(actor) if actor is not None else who
        notes = rules.check_text(resolution_notes, "resolution_notes", limit=rules.MAX_NOTES, required=False)
        dead_letter_id = rules.check_id(dead_letter_id)
        async with self._store.transaction() as tx:
            if not await tx.dead_letters.review(dead_letter_id, who, notes, self._clock.now()):
                raise NotFound(f"no dead letter {dead_letter_id}")
            await self._audit.record(
                tx, by, "dead.review", f"dead:{dead_letter_id}", {"notes": notes, "reviewed_by": who}
            )
        return await self.get(dead_letter_id)

    async def discard(self, dead_letter_id: int, *, actor: str) -> DeadLetter:
        """Drop an open dead letter (it stays on record as discarded)."""
        actor = _actor(actor)
        dead_letter_id = rules.check_id(dead_letter_id)
        async with self._store.transaction() as tx:
            if not await tx.dead_letters.discard(dead_letter_id, self._clock.now()):
                current = await tx.dead_letters.lock(dead_letter_id)
                if current is None:
                    raise NotFound(f"no dead letter {dead_letter_id}")
                raise Conflict(f"dead letter {dead_letter_id} is {current.status.value}, not open")
            await self._audit.record(tx, actor, "dead.discard", f"dead:{dead_letter_id}")
        return await self.get(dead_letter_id)

    # -- every one matching a filter --------------------------------------------------------

    async def _lock_expected(self, tx: Tx, where: DeadFilter, expected: int) -> builtins.list[int]:
        if not rules.is_int(expected) or not 0 <= expected <= MAX_BULK:
            raise InvalidInput(f"must be an integer from 0 to {MAX_BULK}", field="expected_count")
        ids = await tx.dead_letters.lock_matching(where, MAX_BULK + 1)
        if len(ids) > MAX_BULK:
            raise Conflict(f"more than {MAX_BULK} open dead letters match; narrow the filter")
        if len(ids) != expected:
            raise Conflict(
                f"{len(ids)} open dead letters match the filter, not the expected {expected}; nothing changed"
            )
        return ids

    async def retry_matching(self, where: DeadFilter, *, expected: int, actor: str) -> BulkResult:
        """Retry every open dead letter matching ``where``, if exactly ``expected`` match (else
        Conflict, and nothing changes)."""
        actor = _actor(actor)
        now = self._clock.now()
        async with self._store.transaction() as tx:
            ids = await self._lock_expected(tx, where, expected)
            retried = await tx.dead_letters.requeue_many(ids, now) if ids else []
            if retried:
                await tx.dependencies.follow_retries([d for d, _j in retried])
            await self._audit.record_many(
                tx,
                actor,
                "dead.retry",
                [f"dead:{d}" for d, _j in retried],
                [{"job_id": job_id, "bulk": True} for _d, job_id in retried],
                _summary(where),
            )
        got = {d for d, _j in retried}
        return BulkResult(matched=len(ids), retried=retried, skipped=[i for i in ids if i not in got])

    async def review_matching(
        self,
        where: DeadFilter,
        *,
        expected: int,
        reviewed_by: str,
        resolution_notes: str | None = None,
        actor: str | None = None,
    ) -> BulkResult:
        """Mark every open dead letter matching ``where`` reviewed, if exactly ``expected`` match
        (audited as :meth:`review` is)."""
        who = _actor(reviewed_by, "reviewed_by")
        by = _actor(actor) if actor is not None else who
        notes = rules.check_text(resolution_notes, "resolution_notes", limit=rules.MAX_NOTES, required=False)
        async with self._store.transaction() as tx:
            ids = await self._lock_expected(tx, where, expected)
            changed = await tx.dead_letters.review_many(ids, who, notes, self._clock.now()) if ids else []
            await self._audit.record_many(
                tx,
                by,
                "dead.review",
                [f"dead:{d}" for d in changed],
                [{"notes": notes, "reviewed_by": who, "bulk": True} for _ in changed],
                _summary(where),
            )
        return BulkResult(matched=len(ids), changed=changed, skipped=[i for i in ids if i not in set(changed)])

    async def discard_matching(self, where: DeadFilter, *, expected: int, actor: str) -> BulkResult:
        """Discard every open dead letter matching ``where``, if exactly ``expected`` match."""
        actor = _actor(actor)
        async with self._store.transaction() as tx:
            ids = await self._lock_expected(tx, where, expected)
            changed = await tx.dead_letters.discard_many(ids, self._clock.now()) if ids else []
            await self._audit.record_many(
                tx,
                actor,
                "dead.discard",
                [f"dead:{d}" for d in changed],
                [{"bulk": True} for _ in changed],
                _summary(where),
            )
        return BulkResult(matched=len(ids), changed=changed, skipped=[i for i in ids if i not in set(changed)])


def _actor(value: object, field: str = "actor") -> str:
    checked = rules.check_text(value, field, limit=rules.MAX_ACTOR)
    assert checked is not None
    return checked


def _summary(where: DeadFilter) -> dict[str, object]:
    return {"queue": where.queue, "error_class": where.error_class, "reviewed": where.reviewed, "text": where.text}
