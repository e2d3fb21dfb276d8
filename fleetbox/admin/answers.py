"""What each operation of the admin API answers: one pydantic model per JSON body.

The handlers build these models and send them (:func:`fleetbox.admin.routes.reply`), and the
OpenAPI document's response schemas are generated from the same classes (:func:`schemas`), so the
document cannot say one thing while the server sends another. Field names are snake_case here and
camelCase on the wire (the spec's spelling); every answer object is closed
(``additionalProperties: false``), as its model forbids unknown fields.

Times are ISO 8601 text with an offset, sent exactly as before this module existed: a job's and a
dead letter's times as PostgreSQL gave them (``…+00:00``, microseconds), the monitor's and the
schedules' as :func:`fleetbox.models.iso` writes them (``…Z``, milliseconds). A field holds the
text (:data:`Time`), so sending a row costs no conversion.

How they are built (:mod:`fleetbox.admin.views` from the store's typed results, or in the
handler): rows from the database with :func:`build` (no validation: the values were checked on
their way in, and a value stored by an older or newer appliance is still shown, as before), the
answers a handler makes of its own values with the validating constructor, and the figures the
monitor writes as JSON (health, statistics, metrics: it rounds them as the spec shows them) with
``model_validate``, so a key the monitor adds or drops fails loudly instead of drifting. They are
serialised by pydantic-core (:func:`fleetbox.admin.routes.encode`), compact, in field order.

A float field given an integer (a threshold set to ``15``) is written ``15.0``: the same JSON
number.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema

from fleetbox.admin.models import ALERT_STATUSES, MAX_ERROR_MINUTES, TIME_RANGES, Id
from fleetbox.models import JobState, Outcome
from fleetbox.service.dead_letters import COUNT_CAP
from fleetbox.service.jobs import JOB_STATUSES

#: How much of a payload's JSON text a list row shows (``dataPreview``).
PREVIEW_CHARS = 200

#: A time: ISO 8601 text with an offset.
Time = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
Count = Annotated[int, Field(ge=0)]
#: A job's or dead letter's payload as a row shows it (the job and the dead-letter answers).
Payload = Annotated[
    dict[str, Any] | None,
    Field(
        description="the payload; null in a list row unless include=payload; "
        '{"undecodable": true, "reason", "size"} when it cannot be shown'
    ),
]
PayloadPreview = Annotated[str, Field(description=f"the first {PREVIEW_CHARS} characters of its JSON text")]
PayloadSize = Annotated[Count, Field(description="bytes of its JSON text")]
TierName = Literal["high", "medium", "low"]
#: What an alert is about (Condition.kind in fleetbox.monitor).
AlertKind = Literal[
    "backlog", "failure_rate", "processing_time", "dead_letters", "no_consumer", "task_failing", "schedule_late"
]


class Answer(BaseModel):
    """A JSON answer (or a part of one): camelCase on the wire, no other fields."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="forbid", frozen=True
    )

    def to_json(self) -> bytes:
        """The answer as JSON text (UTF-8), as it is sent."""
        return self.__pydantic_serializer__.to_json(self, by_alias=True)


A = TypeVar("A", bound=Answer)
_set = object.__setattr__


def build(model: type[A], values: dict[str, Any]) -> A:
    """An answer from values that need no checking (the store's typed results), keyed by field
    name, every field given: what ``model_construct`` makes, without its walk over the fields'
    aliases and defaults. For a page of 500 dead letters (3 attempts each) the rows cost 6.4 ms
    of CPU this way and 13.4 ms through ``model_construct``; the whole answer 8-9 ms, against
    10-12 ms when it was built as dicts and written by ``json.dumps``. A field missing or unknown
    raises TypeError (the answer would silently lose or gain a key); a value of the wrong type is
    a pydantic serialisation warning (an error in the tests)."""
    if values.keys() != model.__pydantic_fields__.keys():
        wrong = sorted(values.keys() ^ model.__pydantic_fields__.keys())
        raise TypeError(f"{model.__name__}: fields missing or unknown: {', '.join(wrong)}")
    answer = model.__new__(model)
    _set(answer, "__dict__", values)
    _set(answer, "__pydantic_fields_set__", set(values))
    _set(answer, "__pydantic_extra__", None)
    _set(answer, "__pydantic_private__", None)
    return answer


# -- errors and probes ---------------------------------------------------------------------------


class ErrorDetail(Answer):
    code: str
    message: str
    field: Annotated[
        str | None,
        WithJsonSchema({"type": "string", "description": "the parameter or body field that was wrong"}),
    ] = Field(None, exclude_if=lambda v: v is None)


class Error(Answer):
    """Every error answer: ``{"error": {"code", "message", "field"?}}``."""

    error: ErrorDetail


class Alive(Answer):
    alive: Literal[True]


class Ready(Answer):
    ready: bool
    draining: bool
    reasons: list[str] = Field(description="why ready is false")
    failing_tasks: dict[str, str | None] = Field(
        description="background tasks failing now: name -> last error (null without a key)"
    )


class Reloaded(Answer):
    reloaded: bool
    needs_restart: list[str]


# -- monitoring ----------------------------------------------------------------------------------


class Thresholds(Answer):
    max_backlog: Annotated[int, Field(ge=0, le=10**12)]
    max_failure_rate: Annotated[float, Field(ge=0, le=100)]
    max_processing_time: Annotated[float, Field(gt=0, le=10**12)]
    max_dead_letter_jobs: Annotated[int, Field(ge=0, le=10**12)]


class QueueHealth(Answer):
    """One queue's current figures."""

    is_running: bool
    backlog: int
    failure_rate: float
    avg_processing_time: float
    tier: TierName
    waiting: int
    scheduled: int
    retrying: int
    running: int
    p95_processing_time: float
    completed: int
    failed: int
    throughput_per_minute: float
    dead_letters: int
    consumers: int | None = Field(description="live appliances that can run this queue")


class GraphNote(Answer):
    mode: Literal["simulated", "live", "off"]
    note: str


class Health(Answer):
    healthy: bool
    queues: dict[str, QueueHealth]
    dead_letter_count: int
    last_checked: Time
    reasons: list[str] = Field(description="why healthy is false")
    database: Literal["ok", "unreachable"]
    database_error: Annotated[
        str | None,
        WithJsonSchema(
            {
                "type": "string",
                "description": "only when the database is unreachable: the driver's message for keyed "
                "readers, `database unreachable` for everyone else",
            }
        ),
    ] = Field(None, exclude_if=lambda v: v is None)
    ready: bool = Field(description="what /readyz says")
    draining: bool = Field(description="the appliance is stopping and finishes its jobs")
    thresholds: Thresholds
    window_seconds: float
    graph: GraphNote


class PeriodTotals(Answer):
    """Figures summed over statistics snapshots (peakBacklog only per queue)."""

    completed: int
    failed: int
    dead_lettered: int
    attempts: int
    failure_rate: float
    avg_processing_time: float
    p95_processing_time: float
    peak_backlog: Annotated[int | None, WithJsonSchema({"type": "integer"})] = Field(
        None, exclude_if=lambda v: v is None
    )


class QueueStats(QueueHealth):
    last24h: PeriodTotals = Field(alias="last24h")


class StatsTotals(Answer):
    backlog: int
    waiting: int
    scheduled: int
    retrying: int
    running: int
    dead_letters: int
    completed: int
    failed: int
    dead_letter_count: int
    failure_rate: float
    avg_processing_time: float
    throughput_per_minute: float
    last24h: PeriodTotals = Field(alias="last24h")


class Stats(Answer):
    generated_at: Time
    window_seconds: float
    queues: dict[str, QueueStats]
    totals: StatsTotals


class MetricsPoint(Answer):
    at: Time
    completed: int
    failed: int
    dead_lettered: int
    attempts: int
    failure_rate: float
    avg_processing_time: float
    p95_processing_time: float
    backlog: int
    peak_backlog: int
    dead_letters: int


class Metrics(Answer):
    time_range: Literal[TIME_RANGES]  # type: ignore[valid-type]
    from_: Time = Field(alias="from")
    to: Time
    bucket_seconds: int
    series: dict[str, list[MetricsPoint]]
    totals: list[MetricsPoint]


class Alert(Answer):
    id: Id
    queue: str | None
    subject: str | None = Field(description="what else the alert concerns: <appliance>/<task>, schedule:<name>")
    kind: AlertKind
    status: Literal[ALERT_STATUSES]  # type: ignore[valid-type]
    message: str
    value: float | None
    threshold: float | None
    opened_at: Time
    resolved_at: Time | None


class AlertList(Answer):
    alerts: list[Alert]


# -- jobs ----------------------------------------------------------------------------------------


class Job(Answer):
    """A job; in a list row without ``include=payload`` its data is null."""

    id: Id
    queue: str
    priority: Annotated[int, Field(ge=1, le=10)]
    state: JobState
    data: Payload
    data_preview: PayloadPreview
    data_size: PayloadSize
    singleton_key: str | None
    attempts: Count
    max_attempts: int | None
    run_at: Time
    created_at: Time
    finished_at: Time | None
    last_error_class: str | None
    last_error: str | None
    retry_of_dead_letter_id: int | None


class Attempt(Answer):
    job_id: Id
    attempt: int
    queue: str
    worker_id: str | None
    started_at: Time
    finished_at: Time
    duration_ms: float
    outcome: Outcome
    error_class: str | None
    error: str | None


class HistoryEntry(Answer):
    """An attempt as the dead letter's copy of the history recorded it."""

    attempt: int | None
    started_at: str | None
    finished_at: str | None
    duration_ms: float | None
    outcome: str | None
    error_class: str | None
    error: str | None


class OperatorAction(Answer):
    at: Time
    actor: str
    action: str
    details: dict[str, Any]


class DeadLetter(Answer):
    id: Id
    job_id: Id
    queue: str
    priority: int
    data: Payload
    data_preview: PayloadPreview
    data_size: PayloadSize
    singleton_key: str | None
    error_class: str
    error: str
    attempts: int
    history: list[HistoryEntry]
    job_created_at: Time
    failed_at: Time
    status: Literal["open", "retried", "discarded"]
    reviewed: bool
    reviewed_at: Time | None
    reviewed_by: str | None
    resolution_notes: str | None
    retried_job_id: int | None
    retried_at: Time | None
    discarded_at: Time | None


class DeadLetterDetail(DeadLetter):
    operator_actions: list[OperatorAction] = Field(
        description="every review, retry and discard of it, oldest first (the audit log)"
    )


class JobDetail(Job):
    history: list[Attempt] = Field(description="every recorded attempt")
    dead_letter_id: int | None = Field(
        description="the dead letter this job became (use dl-<id> to address it), when it is dead"
    )
    dead_letter: DeadLetter | None = Field(description="the job's dead letter, when it is dead")
    operator_actions: list[OperatorAction] = Field(
        description="every review, retry and discard of its dead letter, oldest first (the audit log)"
    )


class JobList(Answer):
    queue: str
    status: Literal[JOB_STATUSES] | None  # type: ignore[valid-type]
    limit: int
    offset: int
    jobs: list[Job]
    next_after: int | None = Field(description="pass as `after` for the next page; null on the last page")


class JobSearch(Answer):
    jobs: list[Job]
    next_before: int | None = Field(description="pass as `before` for the next page; null on the last page")


class FailedJobs(Answer):
    queue: str
    retrying: list[Job] = Field(description="jobs waiting for their next attempt")
    dead_letters: list[DeadLetter] = Field(description="open dead letters")
    recent_failures: list[Attempt] = Field(description="latest failed attempts")
    truncated: bool = Field(description="true: the lists were cut to stay under 8 MiB")


class ErrorGroup(Answer):
    error_class: str
    count: Annotated[int, Field(ge=1)]
    last_at: Time
    last_message: str | None


class QueueErrors(Answer):
    queue: str
    minutes: Annotated[int, Field(ge=1, le=MAX_ERROR_MINUTES)]
    errors: list[ErrorGroup]


class Enqueued(Answer):
    id: Id
    queue: str
    created: bool = Field(description="false: a job with the singleton key exists; id is its id")


class RetriedJob(Answer):
    queue: str
    retried_job_id: Id
    job_id: Id = Field(description="the job that will run: the same id, or a new job for a dead one")
    requeued: bool = Field(description="true when a dead job was re-enqueued as a new job")


class DependencyLink(Answer):
    """One dependency seen from one side."""

    job_id: int
    state: str | None = Field(
        description="where the other job is now (null: deleted by retention): blocked, waiting, scheduled, "
        "retrying, running, succeeded, dead, cleared or cancelled"
    )
    edge: str | None = Field(description="null while the parent is unresolved; succeeded, skipped, ignored, failed")
    step: str | None = Field(description="the other job's step name, when it is a workflow step")


class DependencyCancellation(Answer):
    at: str
    reason: str
    parent_id: int | None
    actor: str | None


class JobDependencies(Answer):
    job_id: int
    parents: list[DependencyLink]
    children: list[DependencyLink]
    has_result: bool
    result: Any = Field(description="the job's result (a handler's return value or an operator's stand-in)")
    cancellation: DependencyCancellation | None


# -- queues --------------------------------------------------------------------------------------


class Queue(Answer):
    name: str
    tier: Literal["high", "medium", "low", "dead"]
    paused: bool
    paused_at: Time | None
    paused_by: str | None


class Cleared(Answer):
    queue: str
    cleared: Count


# -- dead letters --------------------------------------------------------------------------------


class DeadLetterList(Answer):
    dead_letters: list[DeadLetter]
    next_before: int | None = Field(description="pass as `before` for the next page; null on the last page")
    total: Count = Field(description="how many dead letters match the filter")
    total_capped: bool = Field(description=f"true: the count stopped at {COUNT_CAP}, at least that many match")


class RetriedDeadLetter(Answer):
    dead_letter_id: Id
    job_id: Id


class BulkChanged(Answer):
    matched: Count
    changed: list[Id] = Field(description="the dead letters changed (their own ids)")
    skipped: list[Id] = Field(description="matched but left as they were")


class BulkRetried(Answer):
    matched: Count
    retried: list[RetriedDeadLetter]
    skipped: list[Id] = Field(description="left open: a job with the same singleton key is waiting or running")


class DeadLetterGroup(Answer):
    error_class: str
    message: str
    count: Annotated[int, Field(ge=1)]
    queues: list[str]
    last_failed_at: Time


class DeadLetterGroups(Answer):
    groups: list[DeadLetterGroup]


# -- schedules and retry experiments ---------------------------------------------------------------


class Schedule(Answer):
    name: str
    cron: str
    queue: str
    data: dict[str, Any]
    priority: int
    timezone: str
    enabled: bool
    dst: Literal["once", "both"]
    catch_up: Literal["none", "latest", "all"]
    catch_up_max: int
    overlap: Literal["allow", "skip", "queue", "cancel_previous"]
    alert_after_seconds: float | None
    source: Literal["config", "api"]
    next_run_at: Time | None
    last_tick: Time | None
    last_run_at: Time | None
    last_job_id: int | None
    created_at: Time
    updated_at: Time
    updated_by: str | None


class ScheduleTick(Answer):
    at: Time
    local: str
    dst: Literal["skipped-forward", "repeated-first", "repeated-second"] | None


class ScheduleRunRecord(Answer):
    tick: Time
    fired_at: Time
    outcome: Literal["enqueued", "skipped", "missed"]
    job_id: int | None
    worker_id: str | None


class ScheduleDetail(Schedule):
    next: list[ScheduleTick]
    runs: list[ScheduleRunRecord]


class ScheduleList(Answer):
    schedules: list[Schedule]


class ScheduleRemoved(Answer):
    name: str
    removed: Literal[True]


class ScheduleRun(Answer):
    name: str
    job_id: int


class VariantFigures(Answer):
    label: str
    weight: float
    jobs: int
    succeeded: int
    dead: int
    success_rate: float | None
    attempts_per_success: float | None
    extra_requests: int
    time_to_success_p50_seconds: float | None
    time_to_success_p95_seconds: float | None
    dead_letter_rate: float | None


class Comparison(Answer):
    label: str
    control: str
    p_value: float | None
    verdict: str


class WeightEpoch(Answer):
    started_at: Time
    weights: dict[str, float]
    source: Literal["config", "promote", "guardrail", "bandit"]
    reason: str | None
    actor: str | None


class RetryReport(Answer):
    queue: str
    since: Time | None
    mode: Literal["fixed", "bandit", "none"]
    variants: list[VariantFigures]
    comparisons: list[Comparison]
    verdict: str
    history: list[WeightEpoch]


# -- the document's part ---------------------------------------------------------------------------

#: Every answer the document names (the parts they hold come along as their own components).
ANSWERS: tuple[type[Answer], ...] = (
    Error,
    Alive,
    Ready,
    Reloaded,
    Thresholds,
    Health,
    Stats,
    Metrics,
    AlertList,
    JobList,
    JobSearch,
    JobDetail,
    FailedJobs,
    QueueErrors,
    Enqueued,
    RetriedJob,
    JobDependencies,
    Queue,
    Cleared,
    DeadLetter,
    DeadLetterDetail,
    DeadLetterList,
    RetriedDeadLetter,
    BulkChanged,
    BulkRetried,
    DeadLetterGroups,
    Schedule,
    ScheduleDetail,
    ScheduleList,
    ScheduleRemoved,
    ScheduleRun,
    RetryReport,
)


def ref(model: type[Answer]) -> dict[str, str]:
    """A reference to an answer's schema in the document's components."""
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def ok(model: type[Answer], description: str) -> dict[str, Any]:
    """An operation's JSON response carrying this answer."""
    return {"description": description, "content": {"application/json": {"schema": ref(model)}}}


class _Document(GenerateJsonSchema):
    """The answers' schemas without the titles pydantic gives every field (the names say it)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def generate(self, schema: Any, mode: Any = "validation") -> JsonSchemaValue:
        out = super().generate(schema, mode)
        out.pop("title", None)
        return out


def schemas(ref_template: str = "#/components/schemas/{model}") -> dict[str, dict[str, Any]]:
    """The JSON schema of every answer and of each part it holds, by model name, as sent
    (``mode="serialization"``, camelCase)."""
    _, document = models_json_schema(
        [(model, "serialization") for model in ANSWERS],
        by_alias=True,
        ref_template=ref_template,
        schema_generator=_Document,
    )
    defs: dict[str, dict[str, Any]] = document["$defs"]
    for schema in defs.values():
        schema.pop("title", None)
    return defs
