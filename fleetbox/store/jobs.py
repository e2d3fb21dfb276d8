"""Jobs: enqueue, claim, leases, outcomes, and reading a job wherever it is.

The hot path of the appliance runs here: :meth:`JobStore.insert`, :meth:`JobStore.insert_many`,
:meth:`JobStore.claim` and the three ``complete_*`` writes. Their speed tricks (positional row
access, JSON text passed through unparsed, COPY for large batches, arrays instead of joins) stay in
this module, each with the benchmark figure it buys.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from fleetbox.models import NO_PARENTS, Attempt, EnqueueResult, Job, JobInfo, JsonText, Tier
from fleetbox.store.pool import Runner

#: COPY is the fastest way in, but costs a few round trips: below this many rows, unnest wins
#: (``fleetbox bench`` bulk enqueue, chunks of 1,000: COPY about 1.4x unnest).
COPY_THRESHOLD = 64
_COPY_COLUMNS = ("id", "queue", "tier", "priority", "run_at", "data", "max_attempts")


class NewRow(NamedTuple):
    """A validated job ready to be written (rules.encode_payload made ``data``).

    A tuple, not a frozen dataclass: one is built per job on the bulk path. Measured 2026-12-06
    (docs/performance.md, "What the hot-path tricks buy"): 0.27 µs a row against 0.67 µs for a
    frozen dataclass, about 1 % of ``fleetbox bench``'s bulk enqueue time per job (~40 µs at 25k
    jobs/s on the shared machine).
    """

    queue: str
    tier: Tier
    data: JsonText
    priority: int
    #: None: due at once
    run_at: dt.datetime | None
    singleton_key: str | None
    max_attempts: int | None


@dataclass(frozen=True, slots=True)
class LeaseRule:
    """How often a queue's jobs may lose their lease, and its cap on attempts (the retry policy's)."""

    queue: str
    max_lost: int
    max_attempts: int | None


@dataclass(frozen=True, slots=True)
class Reaped:
    """A job whose lease ran out: back to its queue, or dead-lettered (``dead``)."""

    job_id: int
    tier: Tier
    dead: bool


@dataclass(frozen=True, slots=True)
class DeadLettered:
    """A job moved to the dead-letter queue by a completion."""

    job_id: int
    queue: str
    dead_letter_id: int


class JobStore:
    """Reads and writes of the ``jobs`` table and the finished-job tables."""

    def __init__(self, runner: Runner, schema: str) -> None:
        self._run = runner
        self._schema = schema

    # -- enqueue ----------------------------------------------------------------------------

    async def insert(
        self, queue: str, priority: int, run_at: dt.datetime, data: JsonText, max_attempts: int | None
    ) -> int:
        """One validated job without a singleton key: a plain insert, the cheapest way in."""
        return int(await self._run.fetchval("enqueue_plain", queue, priority, run_at, data, max_attempts))

    async def enqueue(
        self,
        queue: str,
        data: JsonText,
        priority: int,
        run_at: dt.datetime | None,
        singleton_key: str | None,
        max_attempts: int | None,
    ) -> EnqueueResult:
        """Through the SQL function ``enqueue`` (validates again, resolves singleton keys)."""
        row = await self._run.fetchrow("enqueue_one", queue, data, priority, run_at, singleton_key, max_attempts)
        assert row is not None  # the function returns one row or raises
        return EnqueueResult(id=row[0], created=row[1])

    async def insert_many(self, rows: Sequence[NewRow], now: dt.datetime) -> list[int]:
        """Jobs without singleton keys in one statement (COPY for many); ids in the given order.
        A row without ``run_at`` is due at ``now``.

        With other writes that must land together, run it in a transaction.
        """
        if len(rows) >= COPY_THRESHOLD:
            ids: list[int] = await self._run.fetchval("reserve_job_ids", len(rows))
            records = [
                (job_id, r.queue, r.tier, r.priority, r.run_at or now, r.data, r.max_attempts)
                for job_id, r in zip(ids, rows, strict=True)
            ]
            await self._run.copy_records("jobs", self._schema, _COPY_COLUMNS, records)
            return ids
        fetched = await self._run.fetch(
            "enqueue_many",
            [r.queue for r in rows],
            [int(r.tier) for r in rows],
            [r.priority for r in rows],
            [r.run_at or now for r in rows],
            [r.data for r in rows],
            [r.max_attempts for r in rows],
        )
        # Row order of INSERT ... SELECT FROM unnest follows the input; ids are increasing in it,
        # so sorting makes the pairing independent of that detail.
        return sorted(r[0] for r in fetched)

    async def notify(self, tiers: Iterable[Tier]) -> None:
        """Wake the dispatchers of these tiers on every appliance."""
        await self._run.fetchval("notify_tiers", ",".join(sorted({str(int(t)) for t in tiers})))

    # -- claim, leases, outcomes (the hot path) ---------------------------------------------

    async def claim(
        self,
        tier: Tier,
        limit: int,
        worker_id: str,
        now: dt.datetime,
        lease_until: dt.datetime,
        queues: Sequence[str] | None = None,
    ) -> list[Job]:
        """Claim up to ``limit`` due jobs of ``tier`` from queues that are not paused (and only of
        ``queues`` when given: an appliance claims only what it can run).

        A payload that cannot be decoded arrives as an UndecodablePayload in ``data``; the
        executor dead-letters it as poison without running it.
        """
        rows = await self._run.fetch("claim", int(tier), limit, worker_id, now, lease_until, queues)
        # By position, not by column name: the claim's RETURNING list is in this order. Measured
        # 2026-12-06 (docs/performance.md, "What the hot-path tricks buy"): 1.4 µs a claimed job
        # against 1.9 µs by name, under 1 % of ``fleetbox bench``'s drain time per job (~110 µs at
        # 9k jobs/s on the shared machine); the 20k-job bench itself cannot tell the two apart there.
        return [
            Job(
                id=r[0],
                queue=r[1],
                priority=r[2],
                data=r[3],
                attempt=r[4],
                max_attempts=r[5],
                retries=r[6],
                run_at=r[7],
                created_at=r[8],
                singleton_key=r[9],
                dead_letter_id=r[10],
                parents=r[11] or NO_PARENTS,
            )
            for r in rows
        ]

    async def release(self, ids: Sequence[int], attempts: Sequence[int]) -> list[int]:
        """Hand back claimed jobs that never started (shutdown): the attempt did not happen."""
        return [r[0] for r in await self._run.fetch("release", list(ids), list(attempts))]

    async def defer(self, ids: Sequence[int], attempts: Sequence[int], run_ats: Sequence[dt.datetime]) -> list[int]:
        """Put running jobs back to wait until ``run_ats`` without counting the attempt (a handler
        that could not start yet, such as one waiting for a Graph rate limit)."""
        return [r[0] for r in await self._run.fetch("defer", list(ids), list(attempts), list(run_ats))]

    async def heartbeat(self, ids: Sequence[int], attempts: Sequence[int], lease_until: dt.datetime) -> set[int]:
        """Extend the leases this process still holds; the ids whose lease is still ours."""
        return {r[0] for r in await self._run.fetch("heartbeat", list(ids), list(attempts), lease_until)}

    async def reap(
        self,
        now: dt.datetime,
        limit: int,
        rules: Sequence[LeaseRule],
        default_max_lost: int,
        skip: Sequence[int] = (),
    ) -> list[Reaped]:
        """Jobs whose lease ran out go back to their queues, or to the dead letters when they have
        lost their lease more often than the policy allows (a job that crashes or stalls its
        workers, whatever the cause) or used up their attempts. ``skip``: jobs the calling
        process still holds (their outcome is on its way)."""
        rows = await self._run.fetch(
            "reap_expired",
            now,
            limit,
            [r.queue for r in rules],
            [r.max_lost for r in rules],
            default_max_lost,
            [r.max_attempts for r in rules],
            list(skip),
        )
        return [Reaped(job_id=r[0], tier=Tier(r[1]), dead=r[2]) for r in rows]

    async def complete_succeeded(
        self,
        ids: Sequence[int],
        attempts: Sequence[int],
        started: Sequence[float],
        finished: Sequence[float],
        worker_id: str,
        result_ids: Sequence[int] = (),
        results: Sequence[JsonText] = (),
    ) -> tuple[int, int]:
        """Record successful attempts (times in epoch seconds) and the results some returned
        (``result_ids``, ``results``); settles their dependents. Returns how many still held their
        job, and how many dependents were released (now waiting)."""
        row = await self._run.fetchrow(
            "complete_succeeded", ids, attempts, started, finished, worker_id, result_ids, results
        )
        assert row is not None  # one row, always
        return int(row[0]), int(row[1])

    async def complete_retry(
        self,
        ids: Sequence[int],
        attempts: Sequence[int],
        started: Sequence[float],
        finished: Sequence[float],
        worker_id: str,
        run_ats: Sequence[dt.datetime | None],
        retries: Sequence[dict[str, int] | None],
        error_classes: Sequence[str | None],
        errors: Sequence[str | None],
    ) -> int:
        """Put failed attempts back to wait for their next run; returns how many held their job."""
        rows = await self._run.fetch(
            "complete_retry", ids, attempts, started, finished, worker_id, run_ats, retries, error_classes, errors
        )
        return len(rows)

    async def complete_dead(
        self,
        ids: Sequence[int],
        attempts: Sequence[int],
        started: Sequence[float],
        finished: Sequence[float],
        worker_id: str,
        error_classes: Sequence[str | None],
        errors: Sequence[str],
    ) -> list[DeadLettered]:
        """Move failed jobs to the dead-letter queue with their payload and attempt history."""
        rows = await self._run.fetch(
            "complete_dead", ids, attempts, started, finished, worker_id, error_classes, errors
        )
        return [DeadLettered(job_id=r["job_id"], queue=r["queue"], dead_letter_id=r["id"]) for r in rows]

    # -- one job ----------------------------------------------------------------------------

    async def get(self, job_id: int, now: dt.datetime) -> JobInfo | None:
        """A job wherever it is (waiting, running, finished or archived), with its attempts."""
        row = await self._run.fetchrow("job_get", job_id, now)
        if row is None:
            return None
        history = tuple(Attempt.from_row(r) for r in await self._run.fetch("job_attempts", job_id))
        return JobInfo.from_row(row, history)

    async def run_now(self, job_id: int, now: dt.datetime) -> Tier | None:
        """A job waiting for its next retry runs now; its tier (None: not such a job)."""
        row = await self._run.fetchrow("job_run_now", job_id, now)
        return None if row is None else Tier(row["tier"])

    # -- lists ------------------------------------------------------------------------------

    async def plan_for_parameters(self) -> None:
        """Plan the lists of this transaction for their actual parameters (see admin_custom_plans)."""
        await self._run.execute("admin_custom_plans")

    async def page_waiting(
        self, queue: str, which: str, now: dt.datetime, after: int, offset: int, limit: int
    ) -> list[JobInfo]:
        """Jobs of a queue not yet started, in id order; ``which`` is waiting (due), scheduled or
        pending (all of them)."""
        rows = await self._run.fetch("admin_jobs_waiting", queue, which, now, after, offset, limit)
        return [JobInfo.from_row(r) for r in rows]

    async def page_retrying(self, queue: str, after: int, offset: int, limit: int) -> list[JobInfo]:
        return [JobInfo.from_row(r) for r in await self._run.fetch("admin_jobs_retrying", queue, after, offset, limit)]

    async def page_running(self, queue: str, after: int, offset: int, limit: int) -> list[JobInfo]:
        return [JobInfo.from_row(r) for r in await self._run.fetch("admin_jobs_running", queue, after, offset, limit)]

    async def page_live(self, queue: str, now: dt.datetime, after: int, offset: int, limit: int) -> list[JobInfo]:
        return [JobInfo.from_row(r) for r in await self._run.fetch("admin_jobs_live", queue, now, after, offset, limit)]

    async def page_blocked(self, queue: str, after: int, offset: int, limit: int) -> list[JobInfo]:
        """Jobs of a queue waiting for their parents, in id order."""
        return [JobInfo.from_row(r) for r in await self._run.fetch("admin_jobs_blocked", queue, after, offset, limit)]

    async def done_cursor(self, job_id: int, queue: str, state: str) -> dt.datetime | None:
        """Where a page of finished jobs continues: the finish time of the job it ended with."""
        value: dt.datetime | None = await self._run.fetchval("admin_job_done_cursor", job_id, queue, state)
        return value

    async def page_done(
        self, queue: str, state: str, before: tuple[dt.datetime, int], offset: int, limit: int
    ) -> list[JobInfo]:
        """Finished jobs of a queue (succeeded, dead or cleared), last finished first."""
        if state == "succeeded":
            rows = await self._run.fetch("admin_jobs_succeeded", queue, before[0], before[1], offset, limit)
        else:
            rows = await self._run.fetch("admin_jobs_unsucceeded", queue, state, before[0], before[1], offset, limit)
        return [JobInfo.from_row(r) for r in rows]

    async def search(
        self,
        *,
        before: int,
        queue: str | None,
        contains: JsonText | None,
        error: str | None,
        state: str | None,
        since: dt.datetime | None,
        limit: int,
        now: dt.datetime,
    ) -> list[JobInfo]:
        """Jobs newest first, below id ``before``: payload containing ``contains``, error text
        holding ``error``, in ``state`` (a job-list status), created at or after ``since``;
        stopped by a statement timeout (a search may scan)."""
        await self._run.execute("admin_search_timeout")
        rows = await self._run.fetch("admin_jobs_search", before, queue, contains, error, limit, now, state, since)
        return [JobInfo.from_row(r) for r in rows]

    async def failed_attempts(self, queue: str, limit: int) -> list[Attempt]:
        """The latest attempts of a queue that did not succeed, newest first."""
        return [Attempt.from_row(r) for r in await self._run.fetch("admin_failed_attempts", queue, limit)]

    async def errors_by_class(self, queue: str, since: dt.datetime, most: int) -> list[ErrorGroup]:
        """A queue's failed attempts since ``since`` by error class, most first (at most ``most`` read)."""
        rows = await self._run.fetch("queue_errors", queue, since, most)
        return [
            ErrorGroup(
                error_class=r["error_class"],
                count=int(r["count"]),
                last_at=r["last_at"],
                last_message=r["last_message"],
            )
            for r in rows
        ]

    async def clear(self, queue: str, now: dt.datetime) -> int:
        """Move a queue's waiting jobs to jobs_done as cleared (never running ones); how many."""
        return int(await self._run.fetchval("admin_queue_clear", queue, now))

    async def table_counts(self) -> dict[str, int]:
        """Rows in the hot table, in jobs_done and in job_attempts (the benchmark's audit)."""
        row = await self._run.fetchrow("bench_counts")
        assert row is not None
        return {"waiting": int(row["waiting"]), "done": int(row["done"]), "attempts": int(row["attempts"])}

    async def vacuum(self) -> None:
        """Vacuum the hot table (on a pooled connection, never inside a transaction)."""
        await self._run.execute("vacuum_jobs")

    async def bench_empty(self) -> bool:
        """True when the hot table holds nothing (``fleetbox bench --processes`` stops then)."""
        return bool(await self._run.fetchval("bench_empty"))

    async def bench_run_twice(self) -> int:
        """Jobs with more than one attempt recorded (the benchmark's duplicate audit)."""
        return int(await self._run.fetchval("bench_run_twice"))

    async def bench_rate_windows(self, seconds: float) -> tuple[float, list[int]]:
        """The span from the first attempt's start to the last one's finish, and the attempts
        finished in each window of ``seconds`` in between."""
        rows = await self._run.fetch("bench_rate_windows", seconds)
        if not rows:
            return 0.0, []
        counts = [0] * (max(int(r["bucket"]) for r in rows) + 1)
        for r in rows:
            counts[int(r["bucket"])] = int(r["jobs"])
        return float(rows[0]["span"]), counts

    async def bench_table_stats(self) -> list[TableStats]:
        """Every table of the schema: live and dead tuples, total size, vacuums so far."""
        rows = await self._run.fetch("bench_table_stats")
        return [TableStats(r["name"], int(r["live"]), int(r["dead"]), int(r["bytes"]), int(r["vacuums"])) for r in rows]


@dataclass(frozen=True, slots=True)
class TableStats:
    """One table's figures from pg_stat_user_tables (the benchmark's bloat report)."""

    name: str
    live: int
    dead: int
    bytes: int
    vacuums: int


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    """Failed attempts of one error class."""

    error_class: str
    count: int
    last_at: dt.datetime
    last_message: str | None
