"""Writes the outcomes of attempts in batches: one transaction for many jobs, not one each.

Workers hand finished attempts to :meth:`Completer.add` and move on; a background task writes
them when ``batch`` have gathered or ``flush_ms`` has passed since the first one. Every write is
conditional on the attempt still holding its job (id, attempt number, state running), so the
outcome of an attempt whose lease was lost changes nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from fleetbox.db import Database
from fleetbox.errors import DatabaseError
from fleetbox.models import Outcome, Tier

log = logging.getLogger("fleetbox.completer")

MAX_ERROR_TEXT = 4000


@dataclass(slots=True)
class Finished:
    """One finished attempt, waiting to be written."""

    job_id: int
    attempt: int
    queue: str
    tier: Tier
    #: when the attempt started and ended, in seconds since the epoch by the appliance's clock
    #: (floats: sent as float8[] and turned into timestamptz by the database, exact to the
    #: microsecond, for a fraction of what encoding datetime objects costs)
    started_at: float
    finished_at: float
    outcome: Outcome
    #: for RETRY: when the next attempt is due, and the retries used by class
    run_at: dt.datetime | None = None
    retries: dict[str, int] | None = None
    error_class: str | None = None
    error: str | None = None


class Completer:
    """Buffers finished attempts and writes them in batches."""

    def __init__(
        self,
        db: Database,
        worker_id: str,
        *,
        batch: int,
        flush_ms: float,
        on_retry_due: Callable[[set[Tier]], None],
        now: Callable[[], dt.datetime],
        on_written: Callable[[list[Finished]], None] | None = None,
    ) -> None:
        self._db = db
        self._worker_id = worker_id
        self._batch = batch
        self._flush_s = flush_ms / 1000
        self._on_retry_due = on_retry_due
        self._on_written = on_written
        self._now = now
        self._buffer: list[Finished] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.written = 0
        #: transactions written (each holds up to ``batch`` outcomes)
        self.batches = 0
        #: outcomes the database refused because the attempt no longer held its job
        self.stale = 0

    def __repr__(self) -> str:
        return f"<Completer pending={len(self._buffer)} written={self.written} stale={self.stale}>"

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def add(self, item: Finished) -> None:
        self._buffer.append(item)
        self._idle.clear()
        self._wake.set()

    async def run(self) -> None:
        """Write batches until cancelled (call :meth:`drain` first to write what is left)."""
        while True:
            await self._wake.wait()
            if len(self._buffer) < self._batch and self._flush_s > 0:
                # Let more outcomes gather: one transaction for many jobs.
                await asyncio.sleep(self._flush_s)
            await self._write_pending()

    async def _write_pending(self) -> None:
        while self._buffer:
            items, self._buffer = self._buffer[: self._batch], self._buffer[self._batch :]
            try:
                await self._write(items)
            except asyncio.CancelledError:
                # Stopped mid-write (shutdown cancels the run task): keep them for drain(). If
                # the write did commit, writing again changes nothing: each write is conditional
                # on the attempt still owning its job.
                self._buffer[:0] = items
                raise
            except DatabaseError as exc:
                # Keep them and try again: the leases keep the jobs ours for a while, and if the
                # database stays away, the jobs return to their queues when the leases expire.
                self._buffer[:0] = items
                log.warning("completion write failed", extra={"event": "completion_write_failed", "error": str(exc),
                                                              "pending": len(self._buffer)})  # fmt: skip
                await asyncio.sleep(1.0)
        self._wake.clear()
        self._idle.set()

    async def drain(self, within: float) -> bool:
        """Write everything buffered; False if it could not be written within ``within`` seconds."""
        try:
            await asyncio.wait_for(self._write_pending(), within)
        except TimeoutError:
            return False
        return True

    async def _write(self, items: list[Finished]) -> None:
        succeeded = Outcome.SUCCEEDED
        ok = [i for i in items if i.outcome is succeeded]
        if len(ok) == len(items):
            retry: list[Finished] = []
            dead: list[Finished] = []
        else:
            retry = [i for i in items if i.outcome is Outcome.RETRY]
            dead = [i for i in items if i.outcome is Outcome.DEAD]
        written = 0
        # One statement is atomic by itself; a transaction (two more round trips) only when the
        # batch needs more than one.
        single = (not ok) + (not retry) + (not dead) == 2
        async with self._db.acquire() if single else self._db.transaction() as conn:
            if ok:
                written += await conn.fetchval(
                    "complete_succeeded", [i.job_id for i in ok], [i.attempt for i in ok],
                    [i.started_at for i in ok], [i.finished_at for i in ok], self._worker_id,
                )  # fmt: skip
            if retry:
                rows = await conn.fetch(
                    "complete_retry", [i.job_id for i in retry], [i.attempt for i in retry],
                    [i.started_at for i in retry], [i.finished_at for i in retry], self._worker_id,
                    [i.run_at for i in retry], [i.retries for i in retry],
                    [i.error_class for i in retry], [_clip(i.error) for i in retry],
                )  # fmt: skip
                written += len(rows)
            if dead:
                rows = await conn.fetch(
                    "complete_dead", [i.job_id for i in dead], [i.attempt for i in dead],
                    [i.started_at for i in dead], [i.finished_at for i in dead], self._worker_id,
                    [i.error_class for i in dead], [_clip(i.error) or "" for i in dead],
                )  # fmt: skip
                written += len(rows)
                for r in rows:
                    extra = {"event": "job_dead_lettered", "job_id": r["job_id"], "queue": r["queue"]}
                    log.warning("job dead-lettered", extra={**extra, "dead_letter_id": r["id"]})
        self.batches += 1
        self.written += written
        self.stale += len(items) - written
        if written < len(items):
            log.warning("stale completions ignored", extra={"event": "completion_stale", "count": len(items) - written})
        if self._on_written is not None:
            self._on_written(items)
        now = self._now()
        due = {i.tier for i in retry if i.run_at is not None and i.run_at <= now}
        if due:
            self._on_retry_due(due)


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_ERROR_TEXT:
        return text
    return text[: MAX_ERROR_TEXT - 1] + "…"
