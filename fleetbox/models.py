"""Domain values: jobs, attempts, dead letters, queue depth, and the enums that name their states."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Protocol


class RowLike(Protocol):
    """A database row: read by column name (asyncpg records, mappings)."""

    def __getitem__(self, key: str) -> Any: ...


class Tier(IntEnum):
    """Priority tier of a queue; each tier has its own bounded worker pool."""

    DEAD = 0  #: the dead-letter queue: holds failed jobs, runs nothing
    HIGH = 1
    MEDIUM = 2
    LOW = 3

    @classmethod
    def parse(cls, value: str | int | Tier) -> Tier:
        if isinstance(value, Tier):
            return value
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                raise ValueError(f"unknown tier {value!r} (use high, medium or low)") from None
        return cls(value)


class JobPriority(IntEnum):
    """Job priority: a lower number runs first within a queue (1..10 are all valid)."""

    CRITICAL = 1  #: emergency alerts, system failures
    HIGH = 3  #: important user-facing messages
    NORMAL = 5  #: regular operations
    LOW = 8  #: background tasks
    VERY_LOW = 10  #: cleanup, analytics


class JobState(StrEnum):
    """Where a job is in its life."""

    SCHEDULED = "scheduled"  #: waiting for its run_at
    READY = "ready"  #: due, waiting for a worker
    RUNNING = "running"  #: claimed by a worker holding a lease
    RETRYING = "retrying"  #: failed at least once, waiting for its next attempt
    SUCCEEDED = "succeeded"  #: finished
    DEAD = "dead"  #: moved to the dead-letter queue
    CLEARED = "cleared"  #: removed by an operator before it ran


class Outcome(StrEnum):
    """How one attempt ended."""

    SUCCEEDED = "succeeded"
    RETRY = "retry"  #: failed; another attempt is scheduled
    DEAD = "dead"  #: failed; the job went to the dead-letter queue
    LEASE_EXPIRED = "lease_expired"  #: the worker stopped heartbeating; the job went back


class DeadLetterStatus(StrEnum):
    OPEN = "open"  #: waiting for an operator
    RETRIED = "retried"  #: a new job was made from it
    DISCARDED = "discarded"  #: dropped by an operator


def _row(row: RowLike, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: row[name] for name in names}


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A claimed job, as a handler sees it."""

    id: int
    queue: str
    priority: int
    #: the payload given at enqueue (a JSON object)
    data: dict[str, Any]
    #: the number of this attempt, from 1
    attempt: int
    max_attempts: int | None
    #: retries used so far, by error class
    retries: Mapping[str, int]
    run_at: dt.datetime
    created_at: dt.datetime
    singleton_key: str | None = None
    #: set when this job retries a dead letter
    dead_letter_id: int | None = None

    @classmethod
    def from_row(cls, row: RowLike) -> Job:
        return cls(**_row(row, _JOB_FIELDS))


_JOB_FIELDS = (
    "id", "queue", "priority", "data", "attempt", "max_attempts", "retries", "run_at",
    "created_at", "singleton_key", "dead_letter_id",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One recorded attempt of a job."""

    job_id: int
    attempt: int
    queue: str
    worker_id: str | None
    started_at: dt.datetime
    finished_at: dt.datetime
    duration_ms: float
    outcome: Outcome
    error_class: str | None
    error: str | None

    @classmethod
    def from_row(cls, row: RowLike) -> Attempt:
        values = _row(row, _ATTEMPT_FIELDS)
        values["outcome"] = Outcome(values["outcome"])
        return cls(**values)


_ATTEMPT_FIELDS = (
    "job_id", "attempt", "queue", "worker_id", "started_at", "finished_at", "duration_ms",
    "outcome", "error_class", "error",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class JobInfo:
    """A job wherever it is (waiting, running or finished), with its attempts."""

    id: int
    queue: str
    priority: int
    state: JobState
    data: dict[str, Any]
    singleton_key: str | None
    attempts: int
    max_attempts: int | None
    run_at: dt.datetime
    created_at: dt.datetime
    finished_at: dt.datetime | None
    last_error_class: str | None
    last_error: str | None
    dead_letter_id: int | None
    history: tuple[Attempt, ...] = ()

    @classmethod
    def from_row(cls, row: RowLike, history: tuple[Attempt, ...] = ()) -> JobInfo:
        values = _row(row, _JOBINFO_FIELDS)
        values["state"] = JobState(values["state"])
        return cls(**values, history=history)


_JOBINFO_FIELDS = (
    "id", "queue", "priority", "state", "data", "singleton_key", "attempts", "max_attempts",
    "run_at", "created_at", "finished_at", "last_error_class", "last_error", "dead_letter_id",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """A job that failed for good, kept for an operator to review."""

    id: int
    job_id: int
    #: the queue the job came from
    queue: str
    priority: int
    data: dict[str, Any]
    singleton_key: str | None
    error_class: str
    error: str
    attempts: int
    #: every attempt: attempt, started_at, finished_at, duration_ms, outcome, error_class, error
    history: tuple[Mapping[str, Any], ...]
    job_created_at: dt.datetime
    failed_at: dt.datetime
    status: DeadLetterStatus
    reviewed_at: dt.datetime | None
    reviewed_by: str | None
    resolution_notes: str | None
    retried_job_id: int | None
    retried_at: dt.datetime | None
    discarded_at: dt.datetime | None

    @property
    def reviewed(self) -> bool:
        return self.reviewed_at is not None

    @classmethod
    def from_row(cls, row: RowLike) -> DeadLetter:
        values = _row(row, _DEAD_FIELDS)
        values["status"] = DeadLetterStatus(values["status"])
        values["history"] = tuple(values["history"])
        return cls(**values)


_DEAD_FIELDS = (
    "id", "job_id", "queue", "priority", "data", "singleton_key", "error_class", "error",
    "attempts", "history", "job_created_at", "failed_at", "status", "reviewed_at", "reviewed_by",
    "resolution_notes", "retried_job_id", "retried_at", "discarded_at",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class EnqueueResult:
    """The id of an enqueued job; ``created`` is False when a singleton key matched a live job."""

    id: int
    created: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueDepth:
    """Jobs of one queue by state."""

    queue: str
    tier: Tier
    paused: bool
    ready: int = 0
    scheduled: int = 0
    retrying: int = 0
    running: int = 0
    dead: int = 0

    @property
    def backlog(self) -> int:
        """Jobs waiting to run (ready, scheduled and retrying)."""
        return self.ready + self.scheduled + self.retrying


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueInfo:
    name: str
    tier: Tier
    paused: bool
    paused_at: dt.datetime | None = None
    paused_by: str | None = None


class Clock(Protocol):
    """What time it is for scheduling decisions (tests inject one they control)."""

    def now(self) -> dt.datetime: ...


@dataclass
class SystemClock:
    """The real wall clock, in UTC."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


@dataclass
class ManualClock:
    """A clock that moves only when told: ``advance(seconds)``."""

    current: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def now(self) -> dt.datetime:
        return self.current

    def advance(self, seconds: float) -> dt.datetime:
        self.current += dt.timedelta(seconds=seconds)
        return self.current
