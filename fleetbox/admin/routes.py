"""The admin API's endpoints: one handler each, and the route table that the server and the
OpenAPI document are both built from.

Handlers read their input through :mod:`fleetbox.admin.inputs`, act through the service layer
(:mod:`fleetbox.service`) or read through the monitor, and answer with the shapes in
:mod:`fleetbox.admin.views`. They raise errors and never pick a status for one (that is
:mod:`fleetbox.admin.errors`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiohttp import web

from fleetbox import protocol
from fleetbox.admin import inputs, views
from fleetbox.admin.auth import HEADER, Access, KeyCheck
from fleetbox.admin.errors import UpgradeRequired
from fleetbox.admin.stream import Sockets, Stream, serve
from fleetbox.config import AdminSettings
from fleetbox.errors import Conflict, InvalidInput, UnknownQueue
from fleetbox.models import JobPriority
from fleetbox.monitor import Monitor
from fleetbox.monitor.metrics import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE
from fleetbox.monitor.metrics import Metrics
from fleetbox.protocol import STREAM_PATH, GraphMode
from fleetbox.rules import MAX_ID, MAX_PAYLOAD_FILTER, MAX_TEXT_FILTER, parse_path_id
from fleetbox.service import Service
from fleetbox.service.dead_letters import MAX_BULK, check_filter
from fleetbox.service.jobs import JOB_STATUSES

#: Page sizes of every list.
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
#: The deepest ``offset`` (past it, page with ``after``, which costs the same on every page).
MAX_OFFSET = 100_000
TIME_RANGES = ("1h", "24h", "7d")
#: The longest look back of GET /api/queue/{queue}/errors, in minutes (a day).
MAX_ERROR_MINUTES = 1440
ALERT_STATUSES = ("open", "resolved")
THRESHOLD_FIELDS = ("maxBacklog", "maxFailureRate", "maxProcessingTime", "maxDeadLetterJobs")
ENQUEUE_FIELDS = ("data", "priority", "delay", "runAt", "singletonKey", "maxAttempts")
#: Field names of the Python API, as the HTTP API spells them.
_API_FIELD = {
    "run_at": "runAt",
    "singleton_key": "singletonKey",
    "max_attempts": "maxAttempts",
    "reviewed_by": "reviewedBy",
    "resolution_notes": "resolutionNotes",
}


@dataclass(frozen=True, slots=True)
class ApplianceInfo:
    """Which appliance answers (sent as the ``x-fleetbox-appliance`` header, and in the stream's hello)."""

    name: str
    worker_id: str
    version: str
    #: when the appliance started, epoch seconds
    started_at: float = 0.0
    #: how the Graph-backed queues reach Microsoft Graph ("off": no appliance runs them here)
    graph_mode: GraphMode = "off"

    def to_protocol(self, *, read_only: bool) -> protocol.ApplianceInfo:
        """The hello's ``appliance``; ``read_only`` when the client's key cannot change state."""
        return protocol.ApplianceInfo(
            name=self.name, version=self.version, workerId=self.worker_id, startedAt=self.started_at,
            graphMode=self.graph_mode, readOnly=read_only,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class AdminState:
    """What the handlers work with; stored in the application under :data:`STATE`."""

    service: Service
    monitor: Monitor
    settings: AdminSettings
    info: ApplianceInfo
    openapi: dict[str, Any]
    #: this process's Prometheus figures
    metrics: Metrics
    #: the live stream's sampler and subscribers
    stream: Stream
    #: the open stream WebSockets (closed on shutdown)
    sockets: Sockets
    keys: KeyCheck
    #: reads the configuration again and applies it (None: the appliance was configured in code)
    reload: Reload | None = None
    #: whether the appliance can do its work (None: the API runs without an appliance)
    readiness: Readiness | None = None


STATE = web.AppKey("fleetbox_admin_state", AdminState)

Reload = Callable[[], Awaitable[list[str]]]
Readiness = Callable[[], Awaitable[Any]]


def _state(request: web.Request) -> AdminState:
    return request.app[STATE]


def _default(value: object) -> object:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_dumps = partial(json.dumps, default=_default, ensure_ascii=False)


def reply(body: object, status: int = 200) -> web.Response:
    """A JSON response."""
    return web.json_response(body, status=status, dumps=_dumps)


def _api_field(exc: InvalidInput) -> InvalidInput:
    """The same error with the field named as the HTTP API names it."""
    if type(exc) is not InvalidInput or exc.field not in _API_FIELD:
        return exc
    reason = str(exc).removeprefix(f"{exc.field}: ")
    return InvalidInput(reason, field=_API_FIELD[exc.field])


def _limit(request: web.Request) -> int:
    value = inputs.query_int(request, "limit", default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
    assert value is not None
    return value


# -- monitoring ------------------------------------------------------------------------------


async def get_health(request: web.Request) -> web.Response:
    """The spec's health document: 200 when healthy, 503 when not (same shape)."""
    state = _state(request)
    report = await state.monitor.health()
    body = report.to_json()
    body["graph"] = {"mode": state.info.graph_mode, "note": GRAPH_NOTES[state.info.graph_mode]}
    return reply(body, 200 if report.healthy else 503)


#: what /api/queue/health says about Microsoft Graph
GRAPH_NOTES: dict[protocol.GraphMode, str] = {
    "simulated": "Microsoft Graph is simulated: the Graph queues run against the built-in simulator; "
    "nothing leaves this machine",
    "live": "the Graph queues talk to Microsoft Graph",
    "off": "no Graph processors run in this appliance",
}


async def get_stats(request: web.Request) -> web.Response:
    """Per-queue figures and totals."""
    return reply(await _state(request).monitor.stats())


async def get_metrics(request: web.Request) -> web.Response:
    """Time series from the stored statistics snapshots."""
    time_range = inputs.query_choice(request, "timeRange", TIME_RANGES) or "24h"
    return reply(await _state(request).monitor.metrics(time_range))


async def list_alerts(request: web.Request) -> web.Response:
    """Alerts, newest first, optionally only open or resolved ones."""
    status = inputs.query_choice(request, "status", ALERT_STATUSES)
    alerts = await _state(request).monitor.alerts(status=status, limit=_limit(request))
    return reply({"alerts": [a.to_json() for a in alerts]})


async def get_thresholds(request: web.Request) -> web.Response:
    """The alert thresholds in force."""
    return reply((await _state(request).service.thresholds.current()).to_json())


async def update_thresholds(request: web.Request) -> web.Response:
    """Change some alert thresholds at runtime (shared by every appliance on the database)."""
    who = inputs.actor(request)
    body = await inputs.json_body(request)
    inputs.reject_unknown(body, THRESHOLD_FIELDS)
    updated = await _state(request).service.thresholds.update(body, actor=who)
    return reply(updated.to_json())


async def get_prometheus(request: web.Request) -> web.Response:
    """This process's figures in the Prometheus text format; queue depth is counted now."""
    state = _state(request)
    state.metrics.set_depth(await state.service.queues.depth())
    return web.Response(body=state.metrics.render(), headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})


async def reload_config(request: web.Request) -> web.Response:
    """Read the configuration file again and apply it (as SIGHUP does)."""
    state = _state(request)
    who = inputs.actor(request)
    if state.reload is None:
        raise Conflict("this appliance was configured in code, not from a file: there is nothing to reload")
    restart = await state.reload()
    await state.service.audit.record(state.service.store, who, "config.reload", "config", {"needsRestart": restart})
    return reply({"reloaded": True, "needsRestart": restart})


async def stream_socket(request: web.Request) -> web.StreamResponse:
    """The live stream (WebSocket): hello, then ticks and events (fleetbox/protocol.py)."""
    state = _state(request)
    if not web.WebSocketResponse().can_prepare(request).ok:
        raise UpgradeRequired(f"{request.path} is a WebSocket: connect with Upgrade: websocket")
    local = inputs.via_control_socket(request)
    read_only = not local and not state.keys.grants(Access.ADMIN, request.headers.get(HEADER))
    return await serve(request, state.stream, state.sockets, state.info.to_protocol(read_only=read_only))


async def get_openapi(request: web.Request) -> web.Response:
    """This API's OpenAPI 3.1 document."""
    return reply(_state(request).openapi)


# -- jobs ------------------------------------------------------------------------------------


async def list_jobs(request: web.Request) -> web.Response:
    """A page of a queue's jobs, by status."""
    state = _state(request)
    queue = request.match_info["queue"]
    status = inputs.query_choice(request, "status", JOB_STATUSES)
    limit = _limit(request)
    offset = inputs.query_int(request, "offset", default=0, minimum=0, maximum=MAX_OFFSET)
    after = inputs.query_int(request, "after", default=None, minimum=1, maximum=MAX_ID)
    assert offset is not None
    await state.service.queues.get(queue)
    page = await state.service.jobs.page(queue, status, after=after, offset=offset, limit=limit)
    return reply({
        "queue": queue, "status": status, "limit": limit, "offset": offset,
        "jobs": [views.job(j) for j in page.jobs], "nextAfter": page.next_after,
    })  # fmt: skip


async def search_jobs(request: web.Request) -> web.Response:
    """Jobs of every queue and state, newest first: by payload containment and by error text."""
    state = _state(request)
    queue = inputs.query_text(request, "queue", limit=63)
    contains = inputs.query_text(request, "data", limit=MAX_PAYLOAD_FILTER)
    error = inputs.query_text(request, "error", limit=MAX_TEXT_FILTER)
    before = inputs.query_int(request, "before", default=None, minimum=1, maximum=MAX_ID)
    limit = _limit(request)
    if queue is not None:
        await state.service.queues.get(queue)
    page = await state.service.jobs.search(queue=queue, contains=contains, error=error, before=before, limit=limit)
    return reply({"jobs": [views.job(j) for j in page.jobs], "nextBefore": page.next_before})


def _run_at(value: object) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("must be an ISO 8601 time with a time zone (a string)", field="runAt")
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"not an ISO 8601 time: {value[:60]!r}", field="runAt") from None


async def enqueue_job(request: web.Request) -> web.Response:
    """Enqueue one job: 201 when created, 200 with ``created: false`` on a singleton hit."""
    state = _state(request)
    who = inputs.actor(request)
    queue = request.match_info["queue"]
    await state.service.queues.get(queue)
    body = await inputs.json_body(request)
    inputs.reject_unknown(body, ENQUEUE_FIELDS)
    if "data" not in body:
        raise InvalidInput("is required (the job's payload, a JSON object)", field="data")
    priority = body.get("priority")
    try:
        result = await state.service.enqueue.enqueue(
            queue, body["data"],
            priority=JobPriority.NORMAL if priority is None else priority,
            run_at=_run_at(body.get("runAt")), delay=body.get("delay"),
            singleton_key=body.get("singletonKey"), max_attempts=body.get("maxAttempts"), actor=who,
        )  # fmt: skip
    except UnknownQueue:
        raise
    except InvalidInput as exc:
        raise _api_field(exc) from None
    return reply({"id": result.id, "queue": queue, "created": result.created}, 201 if result.created else 200)


async def get_job(request: web.Request) -> web.Response:
    """A job wherever it is, with every attempt, and its dead letter if it has one."""
    job_id = inputs.path_id(request, "jobId")
    detail = await _state(request).service.jobs.detail(job_id)
    body = views.job(detail.job)
    body["history"] = [views.attempt(a) for a in detail.job.history]
    body["deadLetter"] = views.dead_letter(detail.dead_letter) if detail.dead_letter is not None else None
    body["operatorActions"] = [views.audit_entry(entry) for entry in detail.trail]
    return reply(body)


async def queue_errors(request: web.Request) -> web.Response:
    """A queue's failed attempts of the last ``minutes`` (default 60), grouped by error class."""
    state = _state(request)
    queue = request.match_info["queue"]
    minutes = inputs.query_int(request, "minutes", default=60, minimum=1, maximum=MAX_ERROR_MINUTES)
    assert minutes is not None
    await state.service.queues.get(queue)
    errors = await state.service.jobs.errors(queue, minutes)
    return reply({"queue": queue, "minutes": minutes, "errors": [views.error_group(e) for e in errors]})


async def list_failed(request: web.Request) -> web.Response:
    """A queue's jobs waiting for a retry, its open dead letters and its latest failed attempts."""
    state = _state(request)
    queue = request.match_info["queue"]
    limit = _limit(request)
    await state.service.queues.get(queue)
    failures = await state.service.jobs.failures(queue, limit)
    return reply({
        "queue": queue,
        "retrying": [views.job(j) for j in failures.retrying],
        "deadLetters": [views.dead_letter(d) for d in failures.dead_letters],
        "recentFailures": [views.attempt(a) for a in failures.attempts],
    })  # fmt: skip


async def retry_job(request: web.Request) -> web.Response:
    """Retry a failed job of the queue now (a dead one becomes a new job)."""
    state = _state(request)
    who = inputs.actor(request)
    queue = request.match_info["queue"]
    job_id = inputs.path_id(request, "jobId")
    await state.service.queues.get(queue)
    new_id = await state.service.jobs.retry(job_id, actor=who, queue=queue)
    return reply({"queue": queue, "retriedJobId": job_id, "jobId": new_id, "requeued": new_id != job_id})


# -- queues ----------------------------------------------------------------------------------


async def pause_queue(request: web.Request) -> web.Response:
    """Pause a queue: no appliance claims from it; running jobs finish."""
    who = inputs.actor(request)
    info = await _state(request).service.queues.set_paused(request.match_info["queue"], True, actor=who)
    return reply(views.queue(info))


async def resume_queue(request: web.Request) -> web.Response:
    """Resume a paused queue."""
    who = inputs.actor(request)
    info = await _state(request).service.queues.set_paused(request.match_info["queue"], False, actor=who)
    return reply(views.queue(info))


async def clear_queue(request: web.Request) -> web.Response:
    """Remove a queue's waiting jobs (never running ones); needs ``confirm=yes``."""
    state = _state(request)
    who = inputs.actor(request)
    queue = request.match_info["queue"]
    confirm = inputs.query_text(request, "confirm", limit=40)
    await state.service.queues.get(queue)
    if confirm != "yes":
        raise InvalidInput("must be yes: clearing removes every waiting job of the queue", field="confirm")
    cleared = await state.service.queues.clear(queue, actor=who)
    return reply({"queue": queue, "cleared": cleared})


# -- dead letters ----------------------------------------------------------------------------


async def list_dead_letters(request: web.Request) -> web.Response:
    """Dead letters newest first, with filters and keyset paging (``before``)."""
    state = _state(request)
    queue = inputs.query_text(request, "queue", limit=63)
    reviewed = inputs.query_bool(request, "reviewed")
    status = inputs.query_choice(request, "status", ("open", "retried", "discarded"))
    error_class = inputs.query_text(request, "errorClass", limit=100)
    text = inputs.query_text(request, "q", limit=MAX_TEXT_FILTER)
    before = inputs.query_int(request, "before", default=None, minimum=1, maximum=MAX_ID)
    limit = _limit(request)
    if queue is not None:
        await state.service.queues.get(queue)
    where = check_filter(queue=queue, reviewed=reviewed, status=status, error_class=error_class, text=text)
    page = await state.service.dead_letters.list(where, before=before, limit=limit)
    return reply({
        "deadLetters": [views.dead_letter(d) for d in page.letters], "nextBefore": page.next_before,
        "total": page.total, "totalCapped": page.total_capped,
    })  # fmt: skip


#: A dead letter named in a path by its own id: ``dl-17`` (a bare number is always a job id).
DEAD_LETTER_REF = "dl-"


async def _dead_letter_id(state: AdminState, ref: str) -> int:
    """The dead letter named in a path: by its job's id (``4711``, the spec's form) or by its own
    id (``dl-17``). Dead-letter ids and job ids come from different sequences, so the two forms
    never share a spelling and no path is ambiguous."""
    if ref.startswith(DEAD_LETTER_REF):
        return parse_path_id(ref.removeprefix(DEAD_LETTER_REF), "jobId")
    if ref.startswith("job-"):
        raise InvalidInput(
            f"{ref[:40]!r}: the path takes the job id itself (4711), or dl-<id> for a dead letter's own id",
            field="jobId",
        )
    return await state.service.dead_letters.of_job(parse_path_id(ref, "jobId"))


async def review_dead_letter(request: web.Request) -> web.Response:
    """Mark a dead letter reviewed: who, and resolution notes."""
    state = _state(request)
    dead_id = await _dead_letter_id(state, request.match_info["jobId"])
    body = await inputs.json_body(request)
    inputs.reject_unknown(body, ("reviewedBy", "resolutionNotes"))
    who = inputs.json_text(body, "reviewedBy", limit=200, required=True)
    notes = inputs.json_text(body, "resolutionNotes", limit=10_000)
    assert who is not None
    if not who.strip():
        raise InvalidInput("must not be blank", field="reviewedBy")
    letter = await state.service.dead_letters.review(dead_id, reviewed_by=who, resolution_notes=notes)
    return reply(views.dead_letter(letter))


async def retry_dead_letter(request: web.Request) -> web.Response:
    """Re-enqueue one dead letter as a new job on its original queue."""
    state = _state(request)
    who = inputs.actor(request)
    dead_id = await _dead_letter_id(state, request.match_info["jobId"])
    job_id = await state.service.dead_letters.retry(dead_id, actor=who)
    return reply({"deadLetterId": dead_id, "jobId": job_id})


async def discard_dead_letter(request: web.Request) -> web.Response:
    """Discard an open dead letter (it stays on record as discarded)."""
    state = _state(request)
    who = inputs.actor(request)
    dead_id = await _dead_letter_id(state, request.match_info["jobId"])
    return reply(views.dead_letter(await state.service.dead_letters.discard(dead_id, actor=who)))


async def retry_dead_letters(request: web.Request) -> web.Response:
    """Retry every open dead letter matching a filter, if exactly ``expectedCount`` match (else 409)."""
    state = _state(request)
    who = inputs.actor(request)
    body = await inputs.json_body(request)
    inputs.reject_unknown(body, ("queue", "errorClass", "q", "reviewed", "expectedCount"))
    queue = inputs.json_text(body, "queue", limit=63)
    error_class = inputs.json_text(body, "errorClass", limit=100)
    text = inputs.json_text(body, "q", limit=MAX_TEXT_FILTER)
    reviewed = inputs.json_bool(body, "reviewed")
    expected = inputs.json_int(body, "expectedCount", minimum=0, maximum=MAX_BULK, required=True)
    assert expected is not None
    if queue is not None:
        await state.service.queues.get(queue)
    where = check_filter(queue=queue, reviewed=reviewed, error_class=error_class, text=text)
    result = await state.service.dead_letters.retry_matching(where, expected=expected, actor=who)
    return reply({
        "matched": result.matched,
        "retried": [{"deadLetterId": d, "jobId": j} for d, j in result.retried],
        "skipped": result.skipped,
    })  # fmt: skip


# -- the route table -------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: method, path, handler, who may call it, and its OpenAPI operationId."""

    method: str
    path: str
    handler: Handler
    access: Access
    operation_id: str


def route_table(settings: AdminSettings) -> list[Route]:
    """Every endpoint, in matching order (a path with {queue} first, so a queue named "jobs" still
    lists its jobs and /api/queue/jobs/{jobId} gets only ids)."""
    health = Access.PUBLIC if settings.health_public else Access.READ
    q = "/api/queue"
    return [
        Route("GET", f"{q}/health", get_health, health, "getHealth"),
        Route("GET", f"{q}/stats", get_stats, Access.READ, "getStats"),
        Route("GET", f"{q}/metrics", get_metrics, Access.READ, "getMetrics"),
        Route("GET", f"{q}/alerts", list_alerts, Access.READ, "listAlerts"),
        Route("GET", f"{q}/thresholds", get_thresholds, Access.READ, "getThresholds"),
        Route("PUT", f"{q}/thresholds", update_thresholds, Access.ADMIN, "updateThresholds"),
        Route("GET", f"{q}/openapi.json", get_openapi, Access.PUBLIC, "getOpenApi"),
        Route("GET", STREAM_PATH, stream_socket, Access.READ, "streamQueues"),
        Route("POST", f"{q}/config/reload", reload_config, Access.ADMIN, "reloadConfig"),
        Route("GET", f"{q}/dead-letter", list_dead_letters, Access.READ, "listDeadLetters"),
        Route("POST", f"{q}/dead-letter/retry", retry_dead_letters, Access.ADMIN, "retryDeadLetters"),
        Route("GET", f"{q}/{{queue}}/jobs", list_jobs, Access.READ, "listJobs"),
        Route("POST", f"{q}/{{queue}}/jobs", enqueue_job, Access.ADMIN, "enqueueJob"),
        Route("GET", f"{q}/{{queue}}/failed", list_failed, Access.READ, "listFailed"),
        Route("GET", f"{q}/{{queue}}/errors", queue_errors, Access.READ, "listQueueErrors"),
        Route("POST", f"{q}/{{queue}}/pause", pause_queue, Access.ADMIN, "pauseQueue"),
        Route("POST", f"{q}/{{queue}}/resume", resume_queue, Access.ADMIN, "resumeQueue"),
        Route("DELETE", f"{q}/{{queue}}/clear", clear_queue, Access.ADMIN, "clearQueue"),
        Route("POST", f"{q}/{{queue}}/retry/{{jobId}}", retry_job, Access.ADMIN, "retryJob"),
        Route("POST", f"{q}/dead-letter/{{jobId}}/review", review_dead_letter, Access.ADMIN, "reviewDeadLetter"),
        Route("POST", f"{q}/dead-letter/{{jobId}}/retry", retry_dead_letter, Access.ADMIN, "retryDeadLetter"),
        Route("POST", f"{q}/dead-letter/{{jobId}}/discard", discard_dead_letter, Access.ADMIN, "discardDeadLetter"),
        Route("GET", f"{q}/jobs/{{jobId}}", get_job, Access.READ, "getJob"),
        Route("GET", f"{q}/jobs", search_jobs, Access.READ, "searchJobs"),
        Route("GET", "/metrics", get_prometheus, health, "getPrometheusMetrics"),
    ]
