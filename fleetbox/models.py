"""Domain values: jobs, attempts, dead letters, queue depth, and the enums that name their states."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from types import MappingProxyType
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
    """Where a job is in its life: the one set of state words every face shows (CLI, HTTP API,
    metrics labels, the live stream, the TUI, the dashboard)."""

    BLOCKED = "blocked"  #: waiting for its parents (depends_on); never claimed until released
    SCHEDULED = "scheduled"  #: waiting for its run_at
    WAITING = "waiting"  #: due, waiting for a worker
    RUNNING = "running"  #: claimed by a worker holding a lease
    RETRYING = "retrying"  #: failed at least once, waiting for its next attempt
    SUCCEEDED = "succeeded"  #: finished
    DEAD = "dead"  #: moved to the dead-letter queue
    CLEARED = "cleared"  #: removed by an operator before it ran
    CANCELLED = "cancelled"  #: a dependent cancelled before it ran (a parent failed, or an operator)


#: A filter word for every job not yet started (waiting, scheduled or retrying): the spec's "pending".
PENDING = "pending"
#: Other words a state filter accepts: the spec's ``completed`` and ``failed``, and ``ready``
#: (what fleetbox called a waiting job before its words were made one set).
STATE_ALIASES: Mapping[str, JobState] = MappingProxyType(
    {"ready": JobState.WAITING, "completed": JobState.SUCCEEDED, "failed": JobState.DEAD}
)


class Outcome(StrEnum):
    """How one attempt ended."""

    SUCCEEDED = "succeeded"
    RETRY = "retry"  #: failed; another attempt is scheduled
    DEAD = "dead"  #: failed; the job went to the dead-letter queue
    LEASE_EXPIRED = "lease_expired"  #: the worker stopped heartbeating; the job went back
    DEFERRED = "deferred"  #: the handler could not start yet; the job waits, the attempt does not count


class DeadLetterStatus(StrEnum):
    OPEN = "open"  #: waiting for an operator
    RETRIED = "retried"  #: a new job was made from it
    DISCARDED = "discarded"  #: dropped by an operator


class JsonText(str):
    """JSON already encoded (and validated) by the caller: sent to PostgreSQL as it is."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class UndecodablePayload:
    """A stored JSON value that cannot be decoded (nested deeper than any decoder's stack, stored
    before fleetbox limited nesting). Stands in for the value wherever it is read, so one such
    row never breaks a claim, a page or a stream tick; a job carrying one is dead-lettered."""

    #: the size of its JSON text in bytes
    size: int
    reason: str

    def summary(self) -> str:
        return f"(payload not shown: {self.reason}; {self.size} bytes)"


#: ``Job.parents`` of a job without dependencies (read-only, shared)
NO_PARENTS: Mapping[str, Any] = MappingProxyType({})


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
    #: for a job enqueued with ``depends_on`` (or a workflow step): what each parent's handler
    #: returned, by the parent's step name in a workflow, else by its job id as a string (null
    #: for a parent that returned nothing, or failed under ``on_failure="ignore"``)
    parents: Mapping[str, Any] = field(default_factory=lambda: NO_PARENTS)

    @classmethod
    def from_row(cls, row: RowLike) -> Job:
        return cls(**_row(row, _JOB_FIELDS))


_JOB_FIELDS = (
    "id",
    "queue",
    "priority",
    "data",
    "attempt",
    "max_attempts",
    "retries",
    "run_at",
    "created_at",
    "singleton_key",
    "dead_letter_id",
)


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
    "job_id",
    "attempt",
    "queue",
    "worker_id",
    "started_at",
    "finished_at",
    "duration_ms",
    "outcome",
    "error_class",
    "error",
)


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
    "id",
    "queue",
    "priority",
    "state",
    "data",
    "singleton_key",
    "attempts",
    "max_attempts",
    "run_at",
    "created_at",
    "finished_at",
    "last_error_class",
    "last_error",
    "dead_letter_id",
)


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
    "id",
    "job_id",
    "queue",
    "priority",
    "data",
    "singleton_key",
    "error_class",
    "error",
    "attempts",
    "history",
    "job_created_at",
    "failed_at",
    "status",
    "reviewed_at",
    "reviewed_by",
    "resolution_notes",
    "retried_job_id",
    "retried_at",
    "discarded_at",
)


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
    waiting: int = 0
    scheduled: int = 0
    retrying: int = 0
    running: int = 0
    dead: int = 0

    @property
    def backlog(self) -> int:
        """Jobs not yet started (waiting, scheduled and retrying)."""
        return self.waiting + self.scheduled + self.retrying


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueInfo:
    name: str
    tier: Tier
    paused: bool
    paused_at: dt.datetime | None = None
    paused_by: str | None = None


def iso(value: dt.datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, to the millisecond (``2025-11-16T00:00:00.000Z``)."""
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    """Alert thresholds (the spec's defaults). A figure above its threshold opens an alert and
    makes health report ``healthy: false`` with the reason."""

    #: jobs not yet started (waiting, scheduled and retrying) in one queue
    max_backlog: int = 1000
    #: percent of a queue's attempts in the window that failed
    max_failure_rate: float = 10.0
    #: average processing time of a queue's attempts in the window, in milliseconds
    max_processing_time: float = 60000.0
    #: open dead letters, all queues together
    max_dead_letter_jobs: int = 50

    def to_json(self) -> dict[str, int | float]:
        """The spec's shape: ``{"maxBacklog", "maxFailureRate", "maxProcessingTime", "maxDeadLetterJobs"}``."""
        return {
            "maxBacklog": self.max_backlog,
            "maxFailureRate": self.max_failure_rate,
            "maxProcessingTime": self.max_processing_time,
            "maxDeadLetterJobs": self.max_dead_letter_jobs,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """A threshold alert: open while its condition lasts, then resolved (one open per kind and queue)."""

    id: int
    #: None for an alert that concerns no one queue (all dead letters together, an appliance)
    queue: str | None
    #: backlog, failure_rate, processing_time, dead_letters, no_consumer, task_failing, ...
    kind: str
    message: str
    #: the figure when the alert opened
    value: float | None
    threshold: float | None
    opened_at: dt.datetime
    resolved_at: dt.datetime | None
    #: what else it concerns (an appliance's task: ``<appliance>/<task>``)
    subject: str | None = None

    @property
    def status(self) -> str:
        return "open" if self.resolved_at is None else "resolved"

    @classmethod
    def from_row(cls, row: RowLike) -> Alert:
        return cls(**_row(row, _ALERT_FIELDS))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "queue": self.queue,
            "subject": self.subject,
            "kind": self.kind,
            "status": self.status,
            "message": self.message,
            "value": self.value,
            "threshold": self.threshold,
            "openedAt": iso(self.opened_at),
            "resolvedAt": None if self.resolved_at is None else iso(self.resolved_at),
        }


_ALERT_FIELDS = ("id", "queue", "subject", "kind", "message", "value", "threshold", "opened_at", "resolved_at")


class Overlap(StrEnum):
    """What a schedule does when its previous run is still waiting or running."""

    ALLOW = "allow"  #: enqueue anyway
    SKIP = "skip"  #: skip this run (recorded)
    QUEUE = "queue"  #: wait: the run is enqueued once the previous one has finished
    CANCEL_PREVIOUS = "cancel_previous"  #: clear the previous run if it is still waiting, then enqueue


class CatchUp(StrEnum):
    """What a schedule does with the runs it missed while no appliance was running."""

    NONE = "none"  #: drop them (recorded as missed)
    LATEST = "latest"  #: run the latest of them once
    ALL = "all"  #: run each of them, up to ``catch_up_max``


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """A cron schedule: a job enqueued on ``queue`` at every tick of ``cron`` in ``timezone``."""

    name: str
    cron: str
    queue: str
    data: dict[str, Any]
    priority: int
    timezone: str
    enabled: bool
    dst: str
    catch_up: CatchUp
    catch_up_max: int
    overlap: Overlap
    #: the dead-man alert: a job of this schedule must have succeeded within this many seconds
    alert_after_seconds: float | None
    #: "config" (from [[schedules]], applied at start and on reload) or "api"
    source: str
    next_run_at: dt.datetime | None
    last_tick: dt.datetime | None
    last_run_at: dt.datetime | None
    last_job_id: int | None
    created_at: dt.datetime
    updated_at: dt.datetime
    updated_by: str | None

    @classmethod
    def from_row(cls, row: RowLike) -> Schedule:
        values = _row(row, _SCHEDULE_FIELDS)
        values["catch_up"] = CatchUp(values["catch_up"])
        values["overlap"] = Overlap(values["overlap"])
        return cls(**values)


_SCHEDULE_FIELDS = (
    "name",
    "cron",
    "queue",
    "data",
    "priority",
    "timezone",
    "enabled",
    "dst",
    "catch_up",
    "catch_up_max",
    "overlap",
    "alert_after_seconds",
    "source",
    "next_run_at",
    "last_tick",
    "last_run_at",
    "last_job_id",
    "created_at",
    "updated_at",
    "updated_by",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleRun:
    """What happened at one tick of a schedule."""

    schedule: str
    tick: dt.datetime
    fired_at: dt.datetime
    #: enqueued, skipped (the overlap policy) or missed (downtime, the catch_up policy)
    outcome: str
    job_id: int | None
    worker_id: str | None

    @classmethod
    def from_row(cls, row: RowLike) -> ScheduleRun:
        return cls(**_row(row, ("schedule", "tick", "fired_at", "outcome", "job_id", "worker_id")))


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
