"""Dead letters: pages, counts, and the conditional changes operators make to them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from fleetbox.models import DeadLetter, DeadLetterStatus
from fleetbox.store.pool import Runner

#: ``before`` of the first page: a keyset after every dead letter
FIRST_PAGE = (dt.datetime.max.replace(tzinfo=dt.UTC), 2**63 - 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadFilter:
    """Which dead letters a list, a count or a bulk action takes (None: any)."""

    queue: str | None = None
    reviewed: bool | None = None
    status: DeadLetterStatus | None = None
    error_class: str | None = None
    #: contained in the error message, ignoring case
    text: str | None = None

    def args(self) -> tuple[object, ...]:
        status = None if self.status is None else self.status.value
        return (self.queue, self.reviewed, status, self.error_class, self.text)


@dataclass(frozen=True, slots=True)
class Locked:
    """A dead letter locked for a change: its status and the job a retry made."""

    status: DeadLetterStatus
    retried_job_id: int | None


@dataclass(frozen=True, slots=True)
class ErrorGroupRow:
    """Dead letters that failed the same way: error class and message, how many, which queues."""

    error_class: str
    message: str
    count: int
    queues: tuple[str, ...]
    last_failed_at: dt.datetime


class DeadLetterStore:
    """The ``dead_letters`` table."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def get(self, dead_letter_id: int) -> DeadLetter | None:
        row = await self._run.fetchrow("dead_letter_get", dead_letter_id)
        return None if row is None else DeadLetter.from_row(row)

    async def id_of_job(self, job_id: int) -> int | None:
        """The dead letter a job became, if it did."""
        value = await self._run.fetchval("dead_letter_by_job", job_id)
        return None if value is None else int(value)

    async def lock(self, dead_letter_id: int) -> Locked | None:
        """Lock one dead letter until the transaction ends (run in a transaction)."""
        row = await self._run.fetchrow("dead_letter_lock", dead_letter_id)
        return None if row is None else Locked(DeadLetterStatus(row["status"]), row["retried_job_id"])

    async def cursor(self, dead_letter_id: int) -> dt.datetime | None:
        """Where a page continues: the failure time of the dead letter it ended with."""
        value: dt.datetime | None = await self._run.fetchval("admin_dead_letter_cursor", dead_letter_id)
        return value

    async def page(self, where: DeadFilter, before: tuple[dt.datetime, int], limit: int) -> list[DeadLetter]:
        """Newest first, starting below ``before`` = (failed_at, id)."""
        queue, reviewed, status, error_class, text = where.args()
        rows = await self._run.fetch(
            "dead_letter_list", queue, reviewed, status, error_class, before[0], before[1], limit, text
        )
        return [DeadLetter.from_row(r) for r in rows]

    async def count(self, where: DeadFilter, most: int) -> int:
        """How many match, counting at most ``most``."""
        return int(await self._run.fetchval("dead_letter_count", *where.args(), most))

    async def groups(self, where: DeadFilter, most: int) -> list[ErrorGroupRow]:
        """Matching dead letters grouped by error class and message, largest group first; the
        grouping reads at most ``most`` dead letters (newest first)."""
        rows = await self._run.fetch("dead_letter_groups", *where.args(), most)
        return [
            ErrorGroupRow(
                error_class=r["error_class"],
                message=r["message"],
                count=int(r["count"]),
                queues=tuple(r["queues"]),
                last_failed_at=r["last_failed_at"],
            )
            for r in rows
        ]

    async def open_of_queue(self, queue: str, limit: int) -> list[DeadLetter]:
        """A queue's open dead letters, newest first."""
        return [DeadLetter.from_row(r) for r in await self._run.fetch("admin_dead_letters_open_of_queue", queue, limit)]

    async def requeue(self, dead_letter_id: int, now: dt.datetime) -> int | None:
        """A new job on the dead letter's original queue, linked back; None when a job with the same
        singleton key is waiting or running."""
        value = await self._run.fetchval("dead_letter_requeue", dead_letter_id, now)
        return None if value is None else int(value)

    async def mark_retried(self, dead_letter_id: int, job_id: int, now: dt.datetime) -> None:
        await self._run.execute("dead_letter_mark_retried", dead_letter_id, job_id, now)

    async def review(self, dead_letter_id: int, reviewed_by: str, notes: str | None, now: dt.datetime) -> bool:
        """Mark reviewed; False when there is no such dead letter."""
        return await self._run.fetchval("dead_letter_review", dead_letter_id, reviewed_by, notes, now) is not None

    async def discard(self, dead_letter_id: int, now: dt.datetime) -> bool:
        """Discard an open dead letter; False when it is not open (or does not exist)."""
        return await self._run.fetchval("dead_letter_discard", dead_letter_id, now) is not None

    async def lock_matching(self, where: DeadFilter, limit: int) -> list[int]:
        """The open dead letters matching ``where`` (status is ignored: open only), locked until the
        transaction ends, at most ``limit``, in id order."""
        rows = await self._run.fetch(
            "admin_dead_letters_lock_for_retry", where.queue, where.error_class, where.reviewed, limit, where.text
        )
        return [int(r["id"]) for r in rows]

    async def requeue_many(self, ids: Sequence[int], now: dt.datetime) -> list[tuple[int, int]]:
        """Re-enqueue locked dead letters as new jobs: (dead letter id, job id) for each one retried
        (one whose singleton key is held by a live job stays open and is missing)."""
        rows = await self._run.fetch("admin_dead_letters_requeue", list(ids), now)
        return [(int(r["dead_letter_id"]), int(r["job_id"])) for r in rows]

    async def review_many(self, ids: Sequence[int], reviewed_by: str, notes: str | None, now: dt.datetime) -> list[int]:
        """Mark locked dead letters reviewed; the ids changed."""
        rows = await self._run.fetch("dead_letters_review_many", list(ids), reviewed_by, notes, now)
        return [int(r["id"]) for r in rows]

    async def discard_many(self, ids: Sequence[int], now: dt.datetime) -> list[int]:
        """Discard locked open dead letters; the ids changed."""
        return [int(r["id"]) for r in await self._run.fetch("dead_letters_discard_many", list(ids), now)]
