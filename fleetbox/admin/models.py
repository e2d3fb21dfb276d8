"""What each operation of the admin API reads: one pydantic model per path, query and body.

A handler declares them in its signature (``path: QueuePath, query: JobListQuery``); the server
validates the request against them before the handler runs (:func:`read_inputs`), and the OpenAPI
document takes its parameters and request bodies from the same models, so the two cannot
disagree. Bounds come from :mod:`fleetbox.rules` and the service layer. A pydantic error becomes
:class:`~fleetbox.errors.InvalidInput` naming the field, here and only here.

Patterns are written to run in linear time (no nested quantifiers).
"""

from __future__ import annotations

import datetime as dt
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, get_type_hints

from aiohttp import web
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from fleetbox import rules
from fleetbox.admin import inputs
from fleetbox.errors import ErrorClass, InvalidInput
from fleetbox.service.dead_letters import MAX_BULK
from fleetbox.service.jobs import ALIASES, JOB_STATUSES
from fleetbox.worker.registry import DEAD_LETTER_QUEUE

#: Page sizes of every list.
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
#: The deepest ``offset`` (past it, page with ``after``, which costs the same on every page).
MAX_OFFSET = 100_000
#: The longest look back of GET /api/queue/{queue}/errors, in minutes (a day).
MAX_ERROR_MINUTES = 1440
TIME_RANGES = ("1h", "24h", "7d")
ALERT_STATUSES = ("open", "resolved")
#: A dead letter named in a path by its own id: ``dl-17`` (a bare number is always a job id).
DEAD_LETTER_REF = "dl-"
#: The longest delay of an enqueue, in milliseconds.
MAX_DELAY_MS = rules.MAX_DELAY_SECONDS * 1000

NO_NUL = r"^[^\u0000]*$"
#: not blank and no NUL: leading white space, one visible character, then anything but NUL
NOT_BLANK = r"^\s*[^\s\u0000][^\u0000]*$"
QUEUE_PATTERN = f"^{rules.QUEUE_NAME.pattern}$"


def _storable(value: str) -> str:
    if not rules.storable(value):
        raise ValueError("must be valid Unicode without NUL")
    return value


def text(limit: int, *, blank: bool = True) -> Any:
    """A string of 1 to ``limit`` characters PostgreSQL can store (``blank=False``: not only spaces)."""
    return Annotated[
        str,
        Field(min_length=1, max_length=limit, pattern=NO_NUL if blank else NOT_BLANK),
        AfterValidator(_storable),
    ]


def _json_integer(value: object) -> object:
    # JSON has one number type: 5.0 is the integer 5; true and "5" are not numbers.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be an integer")
        return int(value)
    return value


def _json_bool(value: object) -> object:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _yes_no(value: object) -> object:
    return rules.parse_yes_no(value, "reviewed") if isinstance(value, str) else value


def json_int(ge: int, le: int) -> Any:
    """An integer from ``ge`` to ``le`` in a JSON body (the bounds come first, so the schema has them)."""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_json_integer)]


def _json_number(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    return value


def json_number(*, le: float, ge: float | None = None, gt: float | None = None) -> Any:
    """A number in a JSON body within the bounds (the bounds come first, so the schema has them)."""
    return Annotated[float, Field(ge=ge, gt=gt, le=le), BeforeValidator(_json_number)]


#: true or false in a JSON body
JsonBool = Annotated[bool, BeforeValidator(_json_bool)]
#: a yes/no query parameter: true, yes, false, no
YesNo = Literal["true", "yes", "false", "no"]
QueueName = Annotated[str, Field(min_length=1, max_length=63, pattern=QUEUE_PATTERN)]
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT)]
Id = Annotated[int, Field(ge=1, le=rules.MAX_ID)]
Include = Literal["payload"]


class Input(BaseModel):
    """An operation's input: unknown fields are refused (a typo would otherwise be ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the field named by an error about the whole input (not one field of it)
    whole: ClassVar[str] = "body"


class Body(Input):
    """A JSON request body (``application/json``, an object)."""


# -- paths ---------------------------------------------------------------------------------------


class QueuePath(Input):
    queue: Annotated[QueueName, Field(description="the queue's name (unknown: 404)")]


def _not_dead_letter(queue: str) -> str:
    if queue == DEAD_LETTER_QUEUE:
        raise ValueError("the dead-letter queue holds dead letters: no job is enqueued on it, and it cannot be paused")
    return queue


class WorkQueuePath(Input):
    """A queue jobs can be put on (not the dead-letter queue)."""

    queue: Annotated[
        QueueName,
        AfterValidator(_not_dead_letter),
        Field(
            description=f"the queue's name (unknown: 404; not {DEAD_LETTER_QUEUE})",
            json_schema_extra={"not": {"const": DEAD_LETTER_QUEUE}},
        ),
    ]


PATH_ID = Field(pattern=rules.PATH_ID_PATTERN, description="a job id (at most 18 digits)")


def _path_id(value: str) -> str:
    rules.parse_path_id(value, "jobId")
    return value


class JobPath(Input):
    job_id: Annotated[str, PATH_ID, AfterValidator(_path_id)] = Field(alias="jobId")

    @property
    def id(self) -> int:
        return int(self.job_id)


class QueueJobPath(JobPath):
    queue: QueueName


def _dead_ref(value: str) -> str:
    rules.parse_path_id(value.removeprefix(DEAD_LETTER_REF), "jobId")
    return value


class DeadRefPath(Input):
    """A dead letter: by its job's id (the spec's form) or by its own id as ``dl-<id>``."""

    ref: Annotated[
        str,
        Field(
            pattern=f"^({DEAD_LETTER_REF})?{rules.PATH_ID_DIGITS}$",
            description="the id of the job the dead letter holds (`4711`), or its own id as `dl-<id>` (`dl-17`)",
        ),
        AfterValidator(_dead_ref),
    ] = Field(alias="jobId")


# -- queries -------------------------------------------------------------------------------------


class MetricsQuery(Input):
    time_range: Literal["1h", "24h", "7d"] = Field(
        "24h", alias="timeRange", description="1h (5-minute buckets), 24h (hourly) or 7d (6-hourly)"
    )


class PageQuery(Input):
    limit: Limit = Field(DEFAULT_LIMIT, description="page size")


class AlertQuery(PageQuery):
    status: Literal["open", "resolved"] | None = Field(None, description="open or resolved")


class FailedQuery(PageQuery):
    include: Include | None = Field(None, description="payload: rows carry their payloads in full")


class JobListQuery(PageQuery):
    status: Literal[JOB_STATUSES] | None = Field(  # type: ignore[valid-type]
        None,
        description="only jobs in this state; pending is every job not yet started (waiting, "
        "scheduled or retrying), and " + ", ".join(f"{alias} = {name.value}" for alias, name in ALIASES.items()),
    )
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="jobs to skip")
    after: Id | None = Field(None, description="the last job id of the page before (keyset paging)")
    include: Include | None = Field(
        None,
        description="payload: rows carry their payloads in full (by default data is null and "
        "dataPreview/dataSize say what it holds); a page ends before 8 MiB and its cursor continues "
        "after the last row sent",
    )


def _iso_date_time(value: object) -> object:
    # pydantic would read "0.5" as a Unix time; the document says date-time, so the text must be one.
    if isinstance(value, str) and not re.match(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ]", value):
        raise ValueError("must be an ISO 8601 time with a time zone (2026-01-31T09:00:00Z)")
    return value


#: A job search's payload filter, as the document states it: JSON text of an object (sent as a
#: query parameter with content application/json); the server parses and bounds it
#: (rules.check_payload_filter), PostgreSQL refuses a NUL escape.
PAYLOAD_FILTER_SCHEMA: dict[str, Any] = {
    "type": "string",
    "contentMediaType": "application/json",
    "contentSchema": {
        "type": "object",
        "maxProperties": 4,
        "propertyNames": {"minLength": 1, "maxLength": 20, "pattern": NO_NUL},
        "additionalProperties": {
            "anyOf": [
                {"type": "string", "maxLength": 40, "pattern": NO_NUL},
                {"type": "integer", "minimum": -(2**53), "maximum": 2**53},
                {"type": "boolean"},
            ]
        },
    },
}


class JobSearchQuery(PageQuery):
    """The dashboard's job search (GET /api/queue/jobs)."""

    queue: QueueName | None = Field(None, description="only this queue (unknown: 404)")
    data: Annotated[text(rules.MAX_PAYLOAD_FILTER), WithJsonSchema(PAYLOAD_FILTER_SCHEMA)] | None = Field(  # type: ignore[valid-type]
        None, description='the JSON text of an object the payload contains (PostgreSQL\'s @>): {"userId": "u1"}'
    )
    error: text(rules.MAX_TEXT_FILTER, blank=False) | None = Field(  # type: ignore[valid-type]
        None,
        description="text the error holds, any case: the latest error of a job still queued, or any "
        "failed attempt of a finished one",
    )
    status: Literal[JOB_STATUSES] | None = Field(  # type: ignore[valid-type]
        None, description="only jobs in this state (the job lists' words and aliases)"
    )
    since: Annotated[AwareDatetime, BeforeValidator(_iso_date_time)] | None = Field(
        None, description="only jobs created at or after this time (ISO 8601 with a zone)"
    )
    before: Id | None = Field(None, description="the last job id of the page before (keyset paging)")
    include: Include | None = Field(None, description="payload: rows carry their payloads in full")


class DetailQuery(Input):
    """A job's or a dead letter's detail."""

    reveal: YesNo | None = Field(
        None,
        description="true: the payload in full, not masked by the queue's redaction policy; needs the admin key "
        "(or an admin dashboard session, or the control socket) and is written to the audit log",
    )

    @property
    def revealed(self) -> bool:
        return self.reveal is not None and rules.YES_NO[self.reveal]


class ErrorsQuery(Input):
    minutes: int = Field(60, ge=1, le=MAX_ERROR_MINUTES, description="how far back")


class ClearQuery(Input):
    confirm: Literal["yes"] = Field(description="must be yes: clearing removes every waiting job of the queue")


class DeadFilterQuery(Input):
    queue: QueueName | None = Field(None, description="only dead letters from this queue")
    reviewed: YesNo | None = Field(None, description="only reviewed (true, yes) or unreviewed (false, no) ones")
    status: Literal["open", "retried", "discarded"] | None = Field(None, description="only this status")
    # The enum, so a word that is no class is refused (it would match nothing) and the schema lists them.
    error_class: ErrorClass | None = Field(None, alias="errorClass", description="only this error class")
    q: text(rules.MAX_TEXT_FILTER) | None = Field(  # type: ignore[valid-type]
        None, description="only errors with this text (any case)"
    )

    @property
    def reviewed_flag(self) -> bool | None:
        return None if self.reviewed is None else rules.YES_NO[self.reviewed]


class DeadListQuery(DeadFilterQuery):
    before: Id | None = Field(None, description="the id of the last dead letter of the page before (keyset paging)")
    limit: Limit = Field(DEFAULT_LIMIT, description="page size")
    include: Include | None = Field(None, description="payload: rows carry their payloads in full")


# -- bodies --------------------------------------------------------------------------------------


def _iso_text(value: object) -> object:
    # A time is ISO 8601 text; a bare number would be read as a Unix time.
    if value is not None and not isinstance(value, str):
        raise ValueError("must be an ISO 8601 time with a time zone (a string)")
    return value


class EnqueueBody(Body):
    data: dict[str, Any] = Field(description="the payload, a JSON object (at most appliance.max_payload_bytes)")
    priority: json_int(rules.PRIORITY_MIN, rules.PRIORITY_MAX) | None = Field(  # type: ignore[valid-type]
        None, description="1 runs first, 10 last (default 5)"
    )
    delay: json_number(ge=0, le=MAX_DELAY_MS) | None = (  # type: ignore[valid-type]
        Field(None, description="run no earlier than this many milliseconds from now (not with runAt)")
    )
    run_at: Annotated[dt.datetime, BeforeValidator(_iso_text)] | None = Field(
        None, alias="runAt", description="run no earlier than this time, with a time zone (not with delay)"
    )
    singleton_key: text(rules.SINGLETON_KEY_MAX) | None = Field(  # type: ignore[valid-type]
        None, alias="singletonKey", description="at most one waiting or running job per queue and key"
    )
    max_attempts: json_int(1, rules.MAX_ATTEMPTS_MAX) | None = Field(None, alias="maxAttempts")  # type: ignore[valid-type]
    depends_on: list[Annotated[int, Field(ge=1, le=rules.MAX_ID)]] | None = Field(
        None,
        alias="dependsOn",
        min_length=1,
        max_length=1000,
        description="job ids this job waits for: it stays blocked until every one has succeeded",
    )
    on_failure: Literal["cancel", "ignore", "hold"] | None = Field(
        None,
        alias="onFailure",
        description="with dependsOn, when a parent fails: cancel this job (default), run it anyway, or hold it "
        "on the parent's dead letter",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "not": {"required": ["delay", "runAt"]},
            "examples": [{"data": {"chatId": "c1", "content": "hello"}, "priority": 3, "singletonKey": "chat-c1"}],
        }
    )

    @field_validator("run_at")
    @classmethod
    def _one_time(cls, value: dt.datetime | None, info: ValidationInfo) -> dt.datetime | None:
        if value is not None and info.data.get("delay") is not None:
            raise ValueError("give delay or runAt, not both")
        return value


class ReviewBody(Body):
    reviewed_by: text(rules.MAX_ACTOR, blank=False) = Field(alias="reviewedBy")  # type: ignore[valid-type]
    resolution_notes: text(rules.MAX_NOTES) | None = Field(None, alias="resolutionNotes")  # type: ignore[valid-type]

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reviewedBy": "admin@example.com", "resolutionNotes": "Fixed upstream"}]}
    )


class BulkBody(Body):
    """Every open dead letter matching the filter, if exactly ``expectedCount`` match."""

    queue: QueueName | None = Field(None, description="only this original queue")
    # The enum, so a word that is no class is refused (it would match nothing) and the schema lists them.
    error_class: ErrorClass | None = Field(None, alias="errorClass", description="only this error class")
    q: text(rules.MAX_TEXT_FILTER) | None = Field(  # type: ignore[valid-type]
        None, description="only those whose error message contains this text (any case)"
    )
    reviewed: JsonBool | None = None
    expected_count: json_int(0, MAX_BULK) = Field(  # type: ignore[valid-type]
        alias="expectedCount",
        description="how many open dead letters the caller expects to match (409 and no change otherwise)",
    )

    model_config = ConfigDict(json_schema_extra={"examples": [{"queue": "sync", "expectedCount": 0}]})


class BulkReviewBody(BulkBody):
    reviewed_by: text(rules.MAX_ACTOR, blank=False) = Field(alias="reviewedBy")  # type: ignore[valid-type]
    resolution_notes: text(rules.MAX_NOTES) | None = Field(None, alias="resolutionNotes")  # type: ignore[valid-type]

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"queue": "sync", "expectedCount": 0, "reviewedBy": "ana"}]}
    )


class ThresholdsBody(Body):
    """The thresholds to change; the others keep their values (null is not a threshold)."""

    whole: ClassVar[str] = "thresholds"

    max_backlog: json_int(0, 10**12) = Field(None, alias="maxBacklog")  # type: ignore[valid-type]
    max_failure_rate: json_number(ge=0, le=100) = Field(  # type: ignore[valid-type]
        None, alias="maxFailureRate"
    )
    max_processing_time: json_number(gt=0, le=10**12) = (  # type: ignore[valid-type]
        Field(None, alias="maxProcessingTime")
    )
    max_dead_letter_jobs: json_int(0, 10**12) = Field(None, alias="maxDeadLetterJobs")  # type: ignore[valid-type]

    model_config = ConfigDict(
        json_schema_extra={"minProperties": 1, "examples": [{"maxBacklog": 2000, "maxFailureRate": 15}]}
    )

    @model_validator(mode="after")
    def _some(self) -> ThresholdsBody:
        if not self.model_fields_set:
            raise ValueError("give at least one threshold")
        return self

    def changes(self) -> dict[str, Any]:
        """The thresholds given, as the API names them."""
        return self.model_dump(by_alias=True, exclude_unset=True)


# -- reading a request ---------------------------------------------------------------------------

#: A handler's parameters that are read from the request, and where from.
SOURCES = ("path", "query", "body")


@dataclass(frozen=True, slots=True)
class Reads:
    """What a handler reads: a model per source (None: nothing from there)."""

    path: type[Input] | None = None
    query: type[Input] | None = None
    body: type[Body] | None = None


def reads(handler: Callable[..., Awaitable[web.StreamResponse]]) -> Reads:
    """The models a handler declares in its signature (``path``, ``query``, ``body``)."""
    hints = get_type_hints(handler)
    found = {name: hints[name] for name in inspect.signature(handler).parameters if name in SOURCES}
    return Reads(**found)


def _field_name(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "body"
    first = loc[0]
    info = model.model_fields.get(str(first))
    name = info.alias if info is not None and info.alias else str(first)
    return name


def _invalid(model: type[Input], exc: ValidationError, source: str) -> InvalidInput:
    error = exc.errors(include_url=False, include_input=False)[0]
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        known = ", ".join(f.alias or n for n, f in model.model_fields.items())
        field = str(loc[0]) if source != "body" else "body"
        return InvalidInput(f"unknown field {str(loc[0])[:40]!r}; known: {known}", field=field)
    reason = str(error["msg"]).removeprefix("Value error, ")
    field = _field_name(model, loc) if loc else (model.whole if source == "body" else source)
    return InvalidInput(reason, field=field)


def parse(model: type[Input], values: Mapping[str, Any], source: str) -> Input:
    """``values`` as ``model``; a pydantic error becomes InvalidInput naming the field."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise _invalid(model, exc, source) from None


def _query_values(request: web.Request) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in request.query:
        if len(request.query.getall(name)) > 1:
            raise InvalidInput("given more than once", field=name)
        values[name] = request.query[name]
    return values


async def read_inputs(request: web.Request, wanted: Reads) -> dict[str, Input]:
    """The request's path, query and body as the handler's models (InvalidInput when not)."""
    out: dict[str, Input] = {}
    if wanted.path is not None:
        out["path"] = parse(wanted.path, dict(request.match_info), "path")
    if wanted.query is not None:
        out["query"] = parse(wanted.query, _query_values(request), "query")
    if wanted.body is not None:
        out["body"] = parse(wanted.body, await inputs.json_body(request), "body")
    return out
