"""The dead-letter queue: list, retry, review and discard jobs that failed for good.

Each operator action is a conditional change in PostgreSQL and is written to the audit log.
"""

from __future__ import annotations

import builtins
import datetime as dt
import logging

from fleetbox.db import Database
from fleetbox.errors import Conflict, InvalidInput, NotFound
from fleetbox.models import Clock, DeadLetter, DeadLetterStatus, SystemClock

log = logging.getLogger("fleetbox.deadletter")

#: ``before`` of the first page: a keyset after every dead letter
FIRST_PAGE = (dt.datetime.max.replace(tzinfo=dt.UTC), 2**63 - 1)

MAX_LIST = 1000
#: the most dead letters :meth:`DeadLetters.count` counts
COUNT_CAP = 10_000
#: the longest text filter
MAX_TEXT = 200


def _text(value: object, field: str, *, limit: int, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise InvalidInput("must be a non-empty string", field=field)
    if len(value) > limit or "\x00" in value:
        raise InvalidInput(f"must be at most {limit} characters, without NUL", field=field)
    return value


class DeadLetters:
    """Operations on dead letters (``client.dead_letters``)."""

    def __init__(self, db: Database, *, clock: Clock | None = None, actor: str = "client") -> None:
        self.db = db
        self.clock = clock or SystemClock()
        self.actor = actor

    async def get(self, dead_letter_id: int) -> DeadLetter:
        row = await self.db.fetchrow("dead_letter_get", _id(dead_letter_id))
        if row is None:
            raise NotFound(f"no dead letter {dead_letter_id}")
        return DeadLetter.from_row(row)

    async def list(
        self,
        *,
        queue: str | None = None,
        reviewed: bool | None = None,
        status: DeadLetterStatus | str | None = None,
        error_class: str | None = None,
        text: str | None = None,
        before: tuple[dt.datetime, int] | None = None,
        limit: int = 100,
    ) -> builtins.list[DeadLetter]:
        """Newest first; pass the last item's ``(failed_at, id)`` as ``before`` for the next page.

        ``text`` keeps the dead letters whose error message contains it, ignoring case.
        """
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIST:
            raise InvalidInput(f"must be from 1 to {MAX_LIST}", field="limit")
        status_value = _status(status)
        text = _text(text, "text", limit=MAX_TEXT, required=False)
        top_at, top_id = before if before is not None else FIRST_PAGE
        rows = await self.db.fetch(
            "dead_letter_list", queue, reviewed, status_value, error_class, top_at, top_id, limit, text
        )
        return [DeadLetter.from_row(r) for r in rows]

    async def count(
        self,
        *,
        queue: str | None = None,
        reviewed: bool | None = None,
        status: DeadLetterStatus | str | None = None,
        error_class: str | None = None,
        text: str | None = None,
        cap: int = COUNT_CAP,
    ) -> tuple[int, bool]:
        """How many dead letters match the filters of :meth:`list`, counting at most ``cap``.

        Returns ``(count, capped)``: when ``capped`` is true, at least ``count`` match (the count
        stops there, so it costs no more than reading ``cap`` index entries).
        """
        if not isinstance(cap, int) or isinstance(cap, bool) or not 1 <= cap <= COUNT_CAP:
            raise InvalidInput(f"must be from 1 to {COUNT_CAP}", field="cap")
        text = _text(text, "text", limit=MAX_TEXT, required=False)
        found = int(
            await self.db.fetchval("dead_letter_count", queue, reviewed, _status(status), error_class, text, cap + 1)
        )
        return min(found, cap), found > cap

    async def retry(self, dead_letter_id: int, *, actor: str | None = None) -> int:
        """Re-enqueue a dead letter on its original queue as a new job; returns the job's id."""
        actor = _text(actor or self.actor, "actor", limit=200)
        now = self.clock.now()
        async with self.db.transaction() as conn:
            row = await conn.fetchrow("dead_letter_lock", _id(dead_letter_id))
            if row is None:
                raise NotFound(f"no dead letter {dead_letter_id}")
            if row["status"] == DeadLetterStatus.RETRIED:
                raise Conflict(f"dead letter {dead_letter_id} was already retried as job {row['retried_job_id']}")
            if row["status"] == DeadLetterStatus.DISCARDED:
                raise Conflict(f"dead letter {dead_letter_id} was discarded")
            job_id = await conn.fetchval("dead_letter_requeue", dead_letter_id, now)
            if job_id is None:
                raise Conflict(
                    f"dead letter {dead_letter_id}: a job with the same singleton key is already waiting or running"
                )
            await conn.execute("dead_letter_mark_retried", dead_letter_id, job_id, now)
            await conn.execute("audit", actor, "dead.retry", f"dead:{dead_letter_id}", {"job_id": job_id})
        log.info("dead letter retried", extra={"event": "audit.dead.retry", "actor": actor,
                                               "dead_letter_id": dead_letter_id, "job_id": job_id})  # fmt: skip
        return int(job_id)

    async def review(self, dead_letter_id: int, *, reviewed_by: str, resolution_notes: str | None = None) -> DeadLetter:
        """Mark a dead letter reviewed: who, when, and resolution notes."""
        who = _text(reviewed_by, "reviewed_by", limit=200)
        notes = _text(resolution_notes, "resolution_notes", limit=10_000, required=False)
        async with self.db.transaction() as conn:
            found = await conn.fetchval("dead_letter_review", _id(dead_letter_id), who, notes, self.clock.now())
            if found is None:
                raise NotFound(f"no dead letter {dead_letter_id}")
            await conn.execute("audit", who, "dead.review", f"dead:{dead_letter_id}", {"notes": notes})
        log.info("dead letter reviewed", extra={"event": "audit.dead.review", "actor": who,
                                                "dead_letter_id": dead_letter_id})  # fmt: skip
        return await self.get(dead_letter_id)

    async def discard(self, dead_letter_id: int, *, actor: str | None = None) -> None:
        """Drop an open dead letter (it stays on record as discarded)."""
        actor = _text(actor or self.actor, "actor", limit=200)
        async with self.db.transaction() as conn:
            found = await conn.fetchval("dead_letter_discard", _id(dead_letter_id), self.clock.now())
            if found is None:
                current = await conn.fetchrow("dead_letter_lock", dead_letter_id)
                if current is None:
                    raise NotFound(f"no dead letter {dead_letter_id}")
                raise Conflict(f"dead letter {dead_letter_id} is {current['status']}, not open")
            await conn.execute("audit", actor, "dead.discard", f"dead:{dead_letter_id}", {})
        log.info("dead letter discarded", extra={"event": "audit.dead.discard", "actor": actor,
                                                 "dead_letter_id": dead_letter_id})  # fmt: skip

    async def audit_trail(self, dead_letter_id: int) -> builtins.list[dict[str, object]]:
        """Every operator action on this dead letter, oldest first."""
        rows = await self.db.fetch("audit_for_target", f"dead:{_id(dead_letter_id)}")
        return [dict(r) for r in rows]


def _status(value: DeadLetterStatus | str | None) -> str | None:
    if value is None:
        return None
    try:
        return DeadLetterStatus(value).value
    except ValueError:
        raise InvalidInput("must be open, retried or discarded", field="status") from None


def _id(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidInput("must be a positive integer", field="id")
    return value
