"""What the admin API does beyond the client: job lists, clearing a queue, bulk dead-letter retry.

Each operator action writes its ``audit_log`` rows (in the same transaction where this module makes
the change) and is logged as an ``audit.*`` event with the actor.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from fleetbox.admin.inputs import parse_id
from fleetbox.client import Client
from fleetbox.db import Database, Row
from fleetbox.deadletter import FIRST_PAGE
from fleetbox.errors import Conflict, InvalidInput, NotFound, UnknownQueue
from fleetbox.models import Attempt, DeadLetter, DeadLetterStatus, JobInfo, JobState, QueueInfo, Tier
from fleetbox.monitor import iso

log = logging.getLogger("fleetbox.admin")

#: ``status`` of a job list. "pending" is the spec's word for every waiting job.
LIVE_STATUSES = ("ready", "scheduled", "retrying", "running", "pending")
DONE_STATUSES = ("succeeded", "dead", "cleared")
JOB_STATUSES = LIVE_STATUSES + DONE_STATUSES
#: The most dead letters one bulk retry takes.
MAX_BULK_RETRY = 10_000
#: What a queue name can be (the queues table checks the same).
_QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
#: The most failed attempts GET /api/queue/{queue}/errors reads (newest first).
MAX_ERROR_ATTEMPTS = 100_000


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of a job list; ``next_after`` continues it (None: this was the last page)."""

    jobs: list[JobInfo]
    next_after: int | None


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
class BulkRetry:
    """The outcome of a bulk dead-letter retry."""

    matched: int
    #: (dead letter id, new job id)
    retried: list[tuple[int, int]] = field(default_factory=list)
    #: dead letters left open: a job with the same singleton key is waiting or running
    skipped: list[int] = field(default_factory=list)


class AdminOperations:
    """The admin API's own reads and writes, on the appliance's database."""

    def __init__(self, db: Database, client: Client) -> None:
        self.db = db
        self.client = client

    def _now(self) -> dt.datetime:
        return self.client.clock.now()

    async def _read(self, query: str, *args: Any) -> list[Row]:
        """A list query, planned for its actual parameters (see admin_custom_plans)."""
        async with self.db.transaction() as conn:
            await conn.execute("admin_custom_plans")
            return await conn.fetch(query, *args)

    async def queue(self, name: str) -> QueueInfo:
        """A queue by name, or :class:`UnknownQueue`."""
        if not _QUEUE_NAME.fullmatch(name):
            raise UnknownQueue(name[:80], field="queue")  # not a possible name: no need to ask
        row = await self.db.fetchrow("admin_queue_get", name)
        if row is None:
            raise UnknownQueue(name, field="queue")
        return QueueInfo(name=row["name"], tier=Tier(row["tier"]), paused=row["paused"],
                         paused_at=row["paused_at"], paused_by=row["paused_by"])  # fmt: skip

    async def list_jobs(self, queue: str, status: str | None, *, after: int | None, offset: int, limit: int) -> JobPage:
        """A page of a queue's jobs.

        Jobs still in the queue (no status, or ready, scheduled, retrying, running, pending) come
        oldest first (id order); finished ones (succeeded, dead, cleared) last finished first.
        ``after`` is the last id of the page before.
        """
        if status is not None and status not in JOB_STATUSES:
            raise InvalidInput(f"must be one of {', '.join(JOB_STATUSES)}", field="status")
        now = self._now()
        start = after or 0
        if status is None:
            rows = await self._read("admin_jobs_live", queue, now, start, offset, limit + 1)
        elif status in ("ready", "scheduled", "pending"):
            rows = await self._read("admin_jobs_waiting", queue, status, now, start, offset, limit + 1)
        elif status == "retrying":
            rows = await self._read("admin_jobs_retrying", queue, start, offset, limit + 1)
        elif status == "running":
            rows = await self._read("admin_jobs_running", queue, start, offset, limit + 1)
        else:
            top_at, top_id = FIRST_PAGE
            if after is not None:
                top_at = await self.db.fetchval("admin_job_done_cursor", after, queue, status)
                if top_at is None:
                    raise InvalidInput(f"job {after} is not a {status} job of queue {queue!r}", field="after")
                top_id = after
            if status == "succeeded":
                rows = await self._read("admin_jobs_succeeded", queue, top_at, top_id, offset, limit + 1)
            else:
                rows = await self._read("admin_jobs_unsucceeded", queue, status, top_at, top_id, offset, limit + 1)
        jobs = [JobInfo.from_row(r) for r in rows[:limit]]
        return JobPage(jobs, jobs[-1].id if len(rows) > limit else None)

    async def failed(self, queue: str, limit: int) -> tuple[list[JobInfo], list[DeadLetter], list[Attempt]]:
        """A queue's jobs waiting for a retry, its open dead letters and its latest failed attempts."""
        retrying = await self._read("admin_jobs_retrying", queue, 0, 0, limit)
        dead = await self._read("admin_dead_letters_open_of_queue", queue, limit)
        attempts = await self._read("admin_failed_attempts", queue, limit)
        return (
            [JobInfo.from_row(r) for r in retrying],
            [DeadLetter.from_row(r) for r in dead],
            [Attempt.from_row(r) for r in attempts],
        )

    async def list_dead_letters(
        self,
        *,
        queue: str | None,
        reviewed: bool | None,
        status: str | None,
        error_class: str | None,
        text: str | None,
        before: int | None,
        limit: int,
    ) -> DeadLetterPage:
        """Dead letters newest first: the page, the ``before`` of the next one, and how many match."""
        top_at, top_id = FIRST_PAGE
        if before is not None:
            top_at = await self.db.fetchval("admin_dead_letter_cursor", before)
            if top_at is None:
                raise InvalidInput(f"no dead letter {before}", field="before")
            top_id = before
        rows = await self._read(
            "dead_letter_list", queue, reviewed, status, error_class, top_at, top_id, limit + 1, text
        )
        letters = [DeadLetter.from_row(r) for r in rows[:limit]]
        total, capped = await self.client.dead_letters.count(
            queue=queue, reviewed=reviewed, status=status, error_class=error_class, text=text
        )
        return DeadLetterPage(letters, letters[-1].id if len(rows) > limit else None, total, capped)

    async def errors(self, queue: str, minutes: int) -> list[dict[str, Any]]:
        """A queue's failed attempts of the last ``minutes``, grouped by error class, most first."""
        since = self._now() - dt.timedelta(minutes=minutes)
        rows = await self._read("queue_errors", queue, since, MAX_ERROR_ATTEMPTS)
        return [
            {"errorClass": r["error_class"], "count": int(r["count"]), "lastAt": iso(r["last_at"]),
             "lastMessage": r["last_message"]}
            for r in rows
        ]  # fmt: skip

    async def config_reloaded(self, needs_restart: list[str], *, actor: str) -> None:
        """Record a configuration reload through the API (audit log and audit event)."""
        await self.db.execute("audit", actor, "config.reload", "config", {"needsRestart": needs_restart})
        log.info("configuration reloaded", extra={"event": "audit.config.reload", "actor": actor,
                                                  "needs_restart": needs_restart})  # fmt: skip

    async def dead_letter_id(self, ref: str) -> int:
        """The dead letter named by ``ref``: its own id (``17``) or its job's id (``job-4711``)."""
        if ref.startswith("job-"):
            job_id = parse_id(ref[4:], "jobId")
            found = await self.db.fetchval("dead_letter_by_job", job_id)
            if found is None:
                raise NotFound(f"job {job_id} has no dead letter")
            return int(found)
        return parse_id(ref, "jobId")

    async def job(self, job_id: int) -> tuple[JobInfo, DeadLetter | None, list[dict[str, object]]]:
        """A job with its attempts, and its dead letter with every operator action on it, if it has one."""
        info = await self.client.get_job(job_id)
        dead: DeadLetter | None = None
        trail: list[dict[str, object]] = []
        if info.state is JobState.DEAD:
            dead_id = await self.db.fetchval("dead_letter_by_job", job_id)
            if dead_id is not None:
                dead = await self.client.dead_letters.get(int(dead_id))
                trail = await self.client.dead_letters.audit_trail(int(dead_id))
        return info, dead, trail

    async def enqueued(self, queue: str, job_id: int, created: bool, *, actor: str) -> None:
        """Record a job enqueued through the API (audit log and audit event)."""
        await self.db.execute("audit", actor, "job.enqueue", f"job:{job_id}", {"queue": queue, "created": created})
        log.info("job enqueued", extra={"event": "audit.job.enqueue", "actor": actor, "queue": queue,
                                        "job_id": job_id, "new_job": created})  # fmt: skip

    async def retry_job(self, queue: str, job_id: int, *, actor: str) -> int:
        """Retry a failed job of ``queue`` now: a retrying job runs at once, a dead one is re-enqueued."""
        dead_id = await self.db.fetchval("dead_letter_by_job", job_id)
        try:
            info: JobInfo | None = await self.client.get_job(job_id)
        except NotFound:
            info = None  # finished long ago and archived: its dead letter may still be there
        if info is None and dead_id is None:
            raise NotFound(f"no job {job_id}")
        job_queue = info.queue if info is not None else (await self.client.dead_letters.get(int(dead_id))).queue
        if job_queue != queue:
            raise NotFound(f"job {job_id} is not on queue {queue!r} (it is on {job_queue!r})")
        if info is not None and info.state not in (JobState.RETRYING, JobState.DEAD):
            raise Conflict(
                f"job {job_id} is {info.state.value}; only a job waiting for a retry or a dead one can be retried"
            )
        new_id = await self.client.retry_failed_job(job_id, actor=actor)
        log.info("job retried", extra={"event": "audit.job.retry", "actor": actor, "job_id": job_id,
                                       "queue": queue, "new_job_id": new_id})  # fmt: skip
        return new_id

    async def set_paused(self, queue: str, paused: bool, *, actor: str) -> QueueInfo:
        """Pause or resume a queue for every appliance on the database (running jobs finish)."""
        info = await self.queue(queue)
        if info.tier is Tier.DEAD:
            raise InvalidInput(f"{queue!r} holds dead letters and runs nothing, so it cannot be paused", field="queue")
        result = await self.client.set_paused(queue, paused, actor=actor)
        action = "pause" if paused else "resume"
        log.info(f"queue {action}d", extra={"event": f"audit.queue.{action}", "actor": actor, "queue": queue})
        return result

    async def clear(self, queue: str, *, actor: str) -> int:
        """Move a queue's waiting jobs (ready, scheduled, retrying) to jobs_done as cleared; never running ones."""
        await self.queue(queue)
        async with self.db.transaction() as conn:
            cleared = int(await conn.fetchval("admin_queue_clear", queue, self._now()))
            await conn.execute("audit", actor, "queue.clear", queue, {"cleared": cleared})
        log.info("queue cleared", extra={"event": "audit.queue.clear", "actor": actor, "queue": queue,
                                         "cleared": cleared})  # fmt: skip
        return cleared

    async def retry_dead_letters(
        self,
        *,
        queue: str | None,
        error_class: str | None,
        reviewed: bool | None,
        text: str | None,
        expected: int,
        actor: str,
    ) -> BulkRetry:
        """Retry every open dead letter matching the filter, if there are exactly ``expected``.

        The count is checked under lock in the same transaction: when it differs, :class:`Conflict`
        is raised and nothing changes.
        """
        if queue is not None:
            await self.queue(queue)
        now = self._now()
        async with self.db.transaction() as conn:
            rows = await conn.fetch(
                "admin_dead_letters_lock_for_retry", queue, error_class, reviewed, MAX_BULK_RETRY + 1, text
            )
            ids = [int(r["id"]) for r in rows]
            if len(ids) > MAX_BULK_RETRY:
                raise Conflict(
                    f"more than {MAX_BULK_RETRY} open dead letters match; "
                    "narrow the filter (queue, errorClass, q, reviewed)"
                )
            if len(ids) != expected:
                raise Conflict(
                    f"{len(ids)} open dead letters match the filter, not the expected {expected}; nothing was retried"
                )
            done = await conn.fetch("admin_dead_letters_requeue", ids, now) if ids else []
            retried = [(int(r["dead_letter_id"]), int(r["job_id"])) for r in done]
            if retried:
                details: list[dict[str, Any]] = [{"job_id": job_id, "bulk": True} for _d, job_id in retried]
                await conn.execute("admin_audit_many", actor, "dead.retry", [f"dead:{d}" for d, _j in retried], details)
        got = {d for d, _j in retried}
        result = BulkRetry(matched=len(ids), retried=retried, skipped=[i for i in ids if i not in got])
        log.info("dead letters retried", extra={"event": "audit.dead.retry_bulk", "actor": actor, "queue": queue,
                                                "error_class": error_class, "reviewed": reviewed, "text": text,
                                                "retried": len(retried), "skipped": result.skipped})  # fmt: skip
        return result

    async def discard(self, dead_letter_id: int, *, actor: str) -> DeadLetter:
        """Discard an open dead letter (it stays on record)."""
        await self.client.dead_letters.discard(dead_letter_id, actor=actor)
        return await self.client.dead_letters.get(dead_letter_id)

    async def retry_dead_letter(self, dead_letter_id: int, *, actor: str) -> int:
        """Re-enqueue one dead letter as a new job; returns the job's id."""
        return await self.client.dead_letters.retry(dead_letter_id, actor=actor)

    async def review(self, dead_letter_id: int, *, reviewed_by: str, notes: str | None) -> DeadLetter:
        """Mark a dead letter reviewed."""
        return await self.client.dead_letters.review(dead_letter_id, reviewed_by=reviewed_by, resolution_notes=notes)


def check_dead_status(value: str | None) -> str | None:
    """A dead letter status filter (open, retried, discarded)."""
    if value is not None and value not in {s.value for s in DeadLetterStatus}:
        raise InvalidInput("must be open, retried or discarded", field="status")
    return value
