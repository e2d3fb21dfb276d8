"""Writes the outcomes of attempts in batches: one transaction for many jobs, not one each.

Workers hand finished attempts to :meth:`Completer.add` and move on; a background task writes
them when ``batch`` have gathered or ``flush_ms`` has passed since the first one. Every write is
conditional on the attempt still holding its job (id, attempt number, state running), so the
outcome of an attempt whose lease was lost changes nothing. Until its outcome is written, a job
stays among the leases the heartbeat extends (:meth:`Completer.held`), so a database that is away
for less than a lease cannot make a finished job run again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from fleetbox.errors import DatabaseError
from fleetbox.models import JsonText, Outcome, Tier
from fleetbox.store import Store, Stores

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
    #: for RETRY and DEFERRED: when the next attempt is due; for RETRY the retries used by class
    run_at: dt.datetime | None = None
    retries: dict[str, int] | None = None
    error_class: str | None = None
    error: str | None = None
    #: for SUCCEEDED: what the handler returned, as JSON text (None: nothing)
    result: JsonText | None = None


class Completer:
    """Buffers finished attempts and writes them in batches."""

    def __init__(
        self,
        store: Store,
        worker_id: str,
        *,
        batch: int,
        flush_ms: float,
        on_retry_due: Callable[[Iterable[tuple[Tier, dt.datetime]]], None],
        now: Callable[[], dt.datetime],
        on_written: Callable[[list[Finished]], None] | None = None,
    ) -> None:
        self._store = store
        self._worker_id = worker_id
        self._batch = batch
        self._flush_s = flush_ms / 1000
        self._on_retry_due = on_retry_due
        self._on_written = on_written
        self._now = now
        self._buffer: list[Finished] = []
        self._writing: list[Finished] = []
        self._wake = asyncio.Event()
        self.written = 0
        #: transactions written (each holds up to ``batch`` outcomes)
        self.batches = 0
        #: outcomes the database refused because the attempt no longer held its job
        self.stale = 0
        #: dependents released (now waiting) by the successes written (their last parent finished)
        self.released = 0

    def __repr__(self) -> str:
        return f"<Completer pending={self.pending} written={self.written} stale={self.stale}>"

    @property
    def pending(self) -> int:
        return len(self._buffer) + len(self._writing)

    def held(self) -> Iterator[tuple[int, int]]:
        """(job id, attempt) of every outcome not yet written: their leases must still be kept."""
        for item in self._writing:
            yield item.job_id, item.attempt
        for item in self._buffer:
            yield item.job_id, item.attempt

    def add(self, item: Finished) -> None:
        self._buffer.append(item)
        self._wake.set()

    def configure(self, *, batch: int, flush_ms: float) -> None:
        """A configuration reload: new batch size and flush delay apply to the next batch."""
        self._batch = batch
        self._flush_s = flush_ms / 1000

    async def run(self) -> None:
        """Write batches until cancelled (call :meth:`drain` first to write what is left)."""
        while True:
            await self._wake.wait()
            if len(self._buffer) < self._batch and self._flush_s > 0:
                # Let more outcomes gather: one transaction for many jobs.
                await asyncio.sleep(self._flush_s)
            await self._write_pending(retry_delay=1.0)

    async def _write_pending(self, *, retry_delay: float) -> None:
        while self._buffer:
            items, self._buffer = self._buffer[: self._batch], self._buffer[self._batch :]
            self._writing = items
            try:
                await self._write(items)
            except asyncio.CancelledError:
                # Stopped mid-write (shutdown cancels the run task): keep them for drain(). If
                # the write did commit, writing again changes nothing: each write is conditional
                # on the attempt still owning its job.
                self._buffer[:0] = items
                raise
            except DatabaseError as exc:
                # Keep them and try again: the heartbeat keeps their leases (held()), and if the
                # database stays away longer than a lease, the jobs return to their queues.
                self._buffer[:0] = items
                log.warning(
                    "completion write failed",
                    extra={"event": "completion_write_failed", "error": str(exc), "pending": len(self._buffer)},
                )
                await asyncio.sleep(retry_delay)
            finally:
                self._writing = []
        self._wake.clear()

    async def drain(self, within: float) -> bool:
        """Write everything buffered; False if it could not be written within ``within`` seconds."""
        try:
            await asyncio.wait_for(self._write_pending(retry_delay=0.2), within)
        except TimeoutError:
            return False
        return True

    async def _write(self, items: list[Finished]) -> None:
        succeeded = Outcome.SUCCEEDED
        ok = [i for i in items if i.outcome is succeeded]
        if len(ok) == len(items):
            retry: list[Finished] = []
            dead: list[Finished] = []
            deferred: list[Finished] = []
        else:
            retry = [i for i in items if i.outcome is Outcome.RETRY]
            dead = [i for i in items if i.outcome is Outcome.DEAD]
            deferred = [i for i in items if i.outcome is Outcome.DEFERRED]
        # One statement is atomic by itself; a transaction (two more round trips) only when the
        # batch needs more than one.
        if bool(ok) + bool(retry) + bool(dead) + bool(deferred) > 1:
            async with self._store.transaction() as tx:
                written = await self._write_to(tx, ok, retry, dead, deferred)
        else:
            written = await self._write_to(self._store, ok, retry, dead, deferred)
        self.batches += 1
        self.written += written
        self.stale += len(items) - written
        if written < len(items):
            log.warning("stale completions ignored", extra={"event": "completion_stale", "count": len(items) - written})
        if self._on_written is not None:
            self._on_written(items)
        # When each retry or deferral comes due (now, or a timer's wake later), once per time.
        due = {(i.tier, i.run_at) for i in retry + deferred if i.run_at is not None}
        if due:
            self._on_retry_due(due)

    async def _write_to(
        self, where: Stores, ok: list[Finished], retry: list[Finished], dead: list[Finished], deferred: list[Finished]
    ) -> int:
        jobs = where.jobs
        written = 0
        if ok:
            returned = [(i.job_id, i.result) for i in ok if i.result is not None]
            held, released = await jobs.complete_succeeded(
                [i.job_id for i in ok],
                [i.attempt for i in ok],
                [i.started_at for i in ok],
                [i.finished_at for i in ok],
                self._worker_id,
                [j for j, _r in returned],
                [r for _j, r in returned],
            )
            written += held
            self.released += released
        if retry:
            written += await jobs.complete_retry(
                [i.job_id for i in retry],
                [i.attempt for i in retry],
                [i.started_at for i in retry],
                [i.finished_at for i in retry],
                self._worker_id,
                [i.run_at for i in retry],
                [i.retries for i in retry],
                [i.error_class for i in retry],
                [_clip(i.error) for i in retry],
            )
        if dead:
            letters = await jobs.complete_dead(
                [i.job_id for i in dead],
                [i.attempt for i in dead],
                [i.started_at for i in dead],
                [i.finished_at for i in dead],
                self._worker_id,
                [i.error_class for i in dead],
                [_clip(i.error) or "" for i in dead],
            )
            written += len(letters)
            for d in letters:
                extra = {"event": "job_dead_lettered", "job_id": d.job_id, "queue": d.queue}
                log.warning("job dead-lettered", extra={**extra, "dead_letter_id": d.dead_letter_id})
        if deferred:
            now = self._now()
            moved = await jobs.defer(
                [i.job_id for i in deferred], [i.attempt for i in deferred], [i.run_at or now for i in deferred]
            )
            written += len(moved)
        return written


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_ERROR_TEXT:
        return text
    return text[: MAX_ERROR_TEXT - 1] + "…"
