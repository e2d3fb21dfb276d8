"""Jobs: one job wherever it is, a queue's jobs page by page, its failures, and retrying one."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from fleetbox import rules
from fleetbox.errors import Conflict, InvalidInput, NotFound
from fleetbox.models import PENDING, STATE_ALIASES, Attempt, Clock, DeadLetter, JobInfo, JobState
from fleetbox.redaction import Redaction
from fleetbox.service.audit import Audit
from fleetbox.service.dead_letters import DeadLetters
from fleetbox.store import Store
from fleetbox.store.audit import AuditEntry
from fleetbox.store.dead_letters import FIRST_PAGE
from fleetbox.store.jobs import ErrorGroup

#: ``status`` of a job list: a state of a job still in its queue, or ``pending`` (the spec's word:
#: every job not yet started, so waiting, scheduled or retrying) ...
LIVE_STATUSES: tuple[str, ...] = (
    *(s.value for s in (JobState.WAITING, JobState.SCHEDULED, JobState.RETRYING, JobState.RUNNING, JobState.BLOCKED)),
    PENDING,
)
#: ... or of a finished one ...
DONE_STATUSES: tuple[str, ...] = tuple(
    s.value for s in (JobState.SUCCEEDED, JobState.DEAD, JobState.CLEARED, JobState.CANCELLED)
)
#: ... or another word for a state (the one alias table, fleetbox.models.STATE_ALIASES: the spec's
#: ``completed`` and ``failed``, and ``ready``, the old word for waiting).
ALIASES = STATE_ALIASES
JOB_STATUSES: tuple[str, ...] = LIVE_STATUSES + DONE_STATUSES + tuple(ALIASES)


def status_filter(status: str | None) -> str | None:
    """A job list's ``status`` as the store reads it (an alias becomes its state): one of
    LIVE_STATUSES or DONE_STATUSES. An unknown word raises InvalidInput naming every word."""
    if status is None:
        return None
    if status not in JOB_STATUSES:
        raise InvalidInput(f"must be one of {', '.join(JOB_STATUSES)}", field="status")
    return str(ALIASES.get(status, status))


#: The most failed attempts an error summary reads (newest first).
MAX_ERROR_ATTEMPTS = 100_000


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of a job list; ``next_after`` continues it (None: this was the last page)."""

    jobs: list[JobInfo]
    next_after: int | None


@dataclass(frozen=True, slots=True)
class JobSearch:
    """One page of a job search, newest first; ``next_before`` continues it (None: the last page)."""

    jobs: list[JobInfo]
    next_before: int | None


@dataclass(frozen=True, slots=True)
class JobDetail:
    """A job with its attempts, and its dead letter with every operator action on it."""

    job: JobInfo
    dead_letter: DeadLetter | None
    trail: list[AuditEntry]


@dataclass(frozen=True, slots=True)
class Failures:
    """A queue's jobs waiting for a retry, its open dead letters and its latest failed attempts."""

    retrying: list[JobInfo]
    dead_letters: list[DeadLetter]
    attempts: list[Attempt]


def _why_dead(info: JobInfo, letter: DeadLetter | None) -> JobInfo:
    """A dead job with its last error filled in: the finished-job row keeps none, so it comes from
    its dead letter (the error that killed it) or, without one, its last failed attempt."""
    if info.last_error is not None:
        return info
    if letter is not None:
        return replace(info, last_error_class=letter.error_class, last_error=letter.error)
    failed = [a for a in info.history if a.error_class is not None or a.error is not None]
    if failed:
        last = max(failed, key=lambda a: a.attempt)
        return replace(info, last_error_class=last.error_class, last_error=last.error)
    return info


class Jobs:
    """Reading jobs and retrying failed ones.

    Every job read here leaves with its payload masked by its queue's redaction policy
    (``redaction``, replaced on a reload); only :meth:`reveal` returns it in full, and audits it.
    """

    def __init__(
        self,
        store: Store,
        audit: Audit,
        dead_letters: DeadLetters,
        *,
        clock: Clock,
        redaction: Redaction | None = None,
    ) -> None:
        self._store = store
        self._audit = audit
        self._dead = dead_letters
        self._clock = clock
        self.redaction = redaction or Redaction.of()

    def _masked(self, info: JobInfo) -> JobInfo:
        masked = self.redaction.mask(info.queue, info.data)
        return info if masked is info.data else replace(info, data=masked)

    def _masked_all(self, jobs: list[JobInfo]) -> list[JobInfo]:
        return [self._masked(j) for j in jobs]

    async def _get(self, job_id: int) -> JobInfo:
        info = await self._store.jobs.get(rules.check_id(job_id, "job_id"), self._clock.now())
        if info is None:
            raise NotFound(f"no job {job_id}")
        return info

    async def get(self, job_id: int) -> JobInfo:
        """A job wherever it is, with every recorded attempt (its payload masked)."""
        return self._masked(await self._get(job_id))

    async def detail(self, job_id: int) -> JobDetail:
        """A job, and for a dead one its dead letter and the operators' actions on it (payloads
        masked)."""
        return await self._detail(await self.get(job_id), self._dead.get)

    async def reveal(self, job_id: int, *, actor: str) -> JobDetail:
        """:meth:`detail` with the payloads in full, for an operator who asked for them: the
        request is written to the audit log (``job.reveal``, who, which job) before it is read."""
        who = rules.check_text(actor, "actor", limit=rules.MAX_ACTOR)
        assert who is not None
        info = await self._get(job_id)
        await self._audit.record(self._store, who, "job.reveal", f"job:{info.id}", {"queue": info.queue})
        return await self._detail(info, self._dead.get_unmasked)

    async def _detail(self, info: JobInfo, letter_of: Callable[[int], Awaitable[DeadLetter]]) -> JobDetail:
        if info.state is not JobState.DEAD:
            return JobDetail(info, None, [])
        dead_id = await self._store.dead_letters.id_of_job(info.id)
        if dead_id is None:
            return JobDetail(_why_dead(info, None), None, [])
        letter = await letter_of(dead_id)
        return JobDetail(_why_dead(info, letter), letter, await self._dead.trail(dead_id))

    async def page(self, queue: str, status: str | None, *, after: int | None, offset: int, limit: int) -> JobPage:
        """A page of a queue's jobs.

        Jobs still in the queue (no status: waiting or running; or waiting, scheduled, retrying,
        running, pending, blocked) come oldest first (id order); finished ones (succeeded, dead,
        cleared, cancelled) last finished first.
        ``after`` is the last id of the page before.
        """
        status = status_filter(status)
        now = self._clock.now()
        start = after or 0
        async with self._store.transaction() as tx:
            await tx.jobs.plan_for_parameters()
            if status is None:
                jobs = await tx.jobs.page_live(queue, now, start, offset, limit + 1)
            elif status in (JobState.WAITING, JobState.SCHEDULED, PENDING):
                jobs = await tx.jobs.page_waiting(queue, status, now, start, offset, limit + 1)
            elif status == JobState.RETRYING:
                jobs = await tx.jobs.page_retrying(queue, start, offset, limit + 1)
            elif status == JobState.RUNNING:
                jobs = await tx.jobs.page_running(queue, start, offset, limit + 1)
            elif status == JobState.BLOCKED:
                jobs = await tx.jobs.page_blocked(queue, start, offset, limit + 1)
            else:
                top = FIRST_PAGE
                if after is not None:
                    at = await tx.jobs.done_cursor(after, queue, status)
                    if at is None:
                        raise NotFound(f"after: job {after} is not a {status} job of queue {queue!r}")
                    top = (at, after)
                jobs = await tx.jobs.page_done(queue, status, top, offset, limit + 1)
        return JobPage(self._masked_all(jobs[:limit]), jobs[limit - 1].id if len(jobs) > limit else None)

    async def search(
        self,
        *,
        queue: str | None,
        contains: str | None,
        error: str | None,
        before: int | None,
        limit: int,
        status: str | None = None,
        since: dt.datetime | None = None,
    ) -> JobSearch:
        """Jobs of every queue (or one) and every state, newest first: by payload containment
        (``contains``: the JSON text of an object, e.g. ``{"userId": "u1"}``) and by error text.
        ``before`` is the previous page's ``next_before``. A search that scans too long is
        stopped by the database (a DatabaseError naming the statement timeout). ``status`` takes
        the job lists' words (and their aliases); ``since`` keeps jobs created at or after it."""
        state = status_filter(status)
        if since is not None and since.tzinfo is None:
            raise InvalidInput("must have a time zone (2026-01-31T09:00:00+01:00 or …Z)", field="since")
        wanted = rules.check_payload_filter(contains) if contains is not None else None
        for key in json.loads(wanted) if wanted is not None else {}:
            # Trying guesses against a masked value would read it without a reveal.
            masking = self.redaction.masked_key(queue, key)
            if masking is not None:
                raise InvalidInput(
                    f"{key!r:.40} is masked by the redaction policy of queue {masking!r}; search by another key",
                    field="data",
                )
        text = rules.check_text(error, "error", limit=rules.MAX_TEXT_FILTER, required=False)
        if before is not None:
            rules.check_id(before, "before")
        async with self._store.transaction() as tx:
            await tx.jobs.plan_for_parameters()
            jobs = await tx.jobs.search(
                before=before or rules.MAX_ID,
                queue=queue,
                contains=wanted,
                error=text,
                state=state,
                since=since,
                limit=limit + 1,
                now=self._clock.now(),
            )
        return JobSearch(self._masked_all(jobs[:limit]), jobs[limit - 1].id if len(jobs) > limit else None)

    async def failures(self, queue: str, limit: int) -> Failures:
        """A queue's jobs waiting for a retry, its open dead letters and its latest failed attempts."""
        async with self._store.transaction() as tx:
            await tx.jobs.plan_for_parameters()
            return Failures(
                self._masked_all(await tx.jobs.page_retrying(queue, 0, 0, limit)),
                [self._dead.masked(d) for d in await tx.dead_letters.open_of_queue(queue, limit)],
                await tx.jobs.failed_attempts(queue, limit),
            )

    async def errors(self, queue: str, minutes: int) -> list[ErrorGroup]:
        """A queue's failed attempts of the last ``minutes``, grouped by error class, most first."""
        since = self._clock.now() - dt.timedelta(minutes=minutes)
        async with self._store.transaction() as tx:
            await tx.jobs.plan_for_parameters()
            return await tx.jobs.errors_by_class(queue, since, MAX_ERROR_ATTEMPTS)

    async def retry(self, job_id: int, *, actor: str, queue: str | None = None) -> int:
        """Retry a failed job now: one waiting for its next retry runs at once (its id is
        returned); a dead-lettered one is re-enqueued on its original queue as a new job linked
        to the dead letter (the new job's id is returned). With ``queue``, the job must be on it.
        """
        job_id = rules.check_id(job_id, "job_id")
        info: JobInfo | None
        try:
            info = await self.get(job_id)
        except NotFound:
            info = None  # finished long ago and archived: its dead letter may still be there
        dead_id = await self._store.dead_letters.id_of_job(job_id)
        if info is None and dead_id is None:
            raise NotFound(f"no job {job_id}")
        if queue is not None:
            job_queue = info.queue if info is not None else (await self._dead.get(dead_id)).queue  # type: ignore[arg-type]
            if job_queue != queue:
                raise NotFound(f"job {job_id} is not on queue {queue!r} (it is on {job_queue!r})")
        if info is not None and info.state not in (JobState.RETRYING, JobState.DEAD):
            raise Conflict(
                f"job {job_id} is {info.state.value}; only a job waiting for a retry or a dead one can be retried"
            )
        async with self._store.transaction() as tx:
            tier = await tx.jobs.run_now(job_id, self._clock.now())
            if tier is not None:
                await self._audit.record(tx, actor, "job.retry", f"job:{job_id}")
                await tx.jobs.notify([tier])
                return job_id
        if dead_id is None:
            raise NotFound(f"job {job_id} is not waiting for a retry and is not a dead letter")
        return await self._dead.retry(dead_id, actor=actor)
