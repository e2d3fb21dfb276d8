"""The admin API's endpoints: one handler each, and the route table that the server and the
OpenAPI document are both built from.

Handlers declare what they read in their signature (the models of :mod:`fleetbox.admin.models`,
validated before they run), act through the service layer
(:mod:`fleetbox.service`) or read through the monitor, and answer with the shapes in
:mod:`fleetbox.admin.views`. They raise errors and never pick a status for one (that is
:mod:`fleetbox.admin.errors`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aiohttp import web
from pydantic_core import PydanticSerializationError

from fleetbox import protocol
from fleetbox.admin import answers, dashboard, inputs, views
from fleetbox.admin.answers import Answer
from fleetbox.admin.auth import HEADER, Access, KeyCheck
from fleetbox.admin.errors import ReadOnlyKey, UpgradeRequired, compact_json
from fleetbox.admin.models import (
    DEAD_LETTER_REF,
    AlertQuery,
    BulkBody,
    BulkReviewBody,
    ClearQuery,
    DeadFilterQuery,
    DeadListQuery,
    DeadRefPath,
    DetailQuery,
    EnqueueBody,
    ErrorsQuery,
    FailedQuery,
    JobListQuery,
    JobPath,
    JobSearchQuery,
    MetricsQuery,
    QueueJobPath,
    QueuePath,
    ReviewBody,
    ThresholdsBody,
    WorkQueuePath,
)
from fleetbox.admin.stream import Sockets, Stream, serve
from fleetbox.config import AdminSettings, QueueSettings
from fleetbox.errors import Conflict, DatabaseError, InvalidInput, UnknownQueue
from fleetbox.models import JobPriority
from fleetbox.monitor import Monitor
from fleetbox.monitor.metrics import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE
from fleetbox.monitor.metrics import Metrics
from fleetbox.protocol import STREAM_PATH, GraphMode
from fleetbox.service import Service
from fleetbox.service.dead_letters import check_filter
from fleetbox.store.dead_letters import DeadFilter
from fleetbox.store.migrations import current_version, latest_version

#: The most JSON one page of a list carries: it ends before this, and its cursor continues after
#: the last row sent.
PAGE_BYTES = 8 * 1024 * 1024
#: How long /readyz waits for the database (without an appliance behind the API), in seconds.
READY_TIMEOUT = 5
#: Field names of the Python API, as the HTTP API spells them.
_API_FIELD = {
    "run_at": "runAt",
    "singleton_key": "singletonKey",
    "max_attempts": "maxAttempts",
    "reviewed_by": "reviewedBy",
    "resolution_notes": "resolutionNotes",
    "depends_on": "dependsOn",
    "on_failure": "onFailure",
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
            name=self.name,
            version=self.version,
            workerId=self.worker_id,
            startedAt=self.started_at,
            graphMode=self.graph_mode,
            readOnly=read_only,
        )


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
    #: the queues' configuration in force (retry experiments read their variant key and mode)
    queue_settings: Callable[[], Mapping[str, QueueSettings]] = dict


STATE = web.AppKey("fleetbox_admin_state", AdminState)


class ReadinessReport(Protocol):
    """Whether the appliance can do its work (the appliance's ``Readiness``)."""

    @property
    def ready(self) -> bool: ...
    @property
    def reasons(self) -> tuple[str, ...]: ...
    @property
    def failing(self) -> Mapping[str, str | None]: ...
    @property
    def draining(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class DatabaseReadiness:
    """Readiness of an admin API that runs without an appliance: the database and its schema."""

    ready: bool
    reasons: tuple[str, ...]
    failing: Mapping[str, str | None] = field(default_factory=dict)
    draining: bool = False


Reload = Callable[[], Awaitable[list[str]]]
Readiness = Callable[[], Awaitable[ReadinessReport]]


def _state(request: web.Request) -> AdminState:
    return request.app[STATE]


Row = TypeVar("Row", bound=Answer)


def encode(answer: Answer) -> bytes:
    """An answer as JSON text, serialised by pydantic-core; a payload nested deeper than it goes
    (``appliance.max_payload_depth`` allows up to 512 levels) is written by the standard library."""
    try:
        return answer.to_json()
    except PydanticSerializationError:
        plain = answer.model_dump(mode="python", by_alias=True)
        return compact_json(plain).encode()


def reply(answer: Answer, status: int = 200) -> web.Response:
    """A JSON response of one of the answers in :mod:`fleetbox.admin.answers`."""
    return web.Response(body=encode(answer), status=status, content_type="application/json", charset="utf-8")


def _api_field(exc: InvalidInput) -> InvalidInput:
    """The same error with the field named as the HTTP API names it."""
    if type(exc) is not InvalidInput or exc.field not in _API_FIELD:
        return exc
    reason = str(exc).removeprefix(f"{exc.field}: ")
    return InvalidInput(reason, field=_API_FIELD[exc.field])


def _fit(rows: list[Row], budget: int = PAGE_BYTES) -> list[Row]:
    """The leading rows whose JSON fits in ``budget`` bytes (at least one, so paging moves on)."""
    used = 0
    for n, row in enumerate(rows):
        used += len(encode(row)) + 1
        if used > budget and n > 0:
            return rows[:n]
    return rows


# -- monitoring ------------------------------------------------------------------------------


def _keyed(request: web.Request) -> bool:
    """Whether the caller may read more than the public sees: it came over the control socket or
    sent a key that grants reads (a driver's message can name hosts, ports and stored values)."""
    return inputs.via_control_socket(request) or _state(request).keys.grants(Access.READ, request.headers.get(HEADER))


async def _readiness(state: AdminState) -> ReadinessReport:
    if state.readiness is not None:
        return await state.readiness()
    # No appliance behind this API: ready when the database answers with a current schema.
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            version = await current_version(state.service.store)
    except (DatabaseError, TimeoutError):
        return DatabaseReadiness(False, ("database unreachable",))
    if version < latest_version():
        return DatabaseReadiness(False, (f"schema at version {version}, this fleetbox needs {latest_version()}",))
    return DatabaseReadiness(True, ())


def _cannot_work(readiness: ReadinessReport) -> bool:
    """Not ready for a reason other than draining (a draining appliance still finishes its jobs)."""
    return not readiness.ready and any(not r.startswith("draining") for r in readiness.reasons)


async def get_health(request: web.Request) -> web.Response:
    """The spec's health document. A crossed threshold is ``healthy: false`` with the reasons but
    200 (the appliance works; an orchestrator must not restart it); 503 only when the database is
    unreachable or the appliance cannot work (not ready for a reason other than draining)."""
    state = _state(request)
    report = await state.monitor.health()
    readiness = await _readiness(state)
    # The monitor writes its figures as JSON (rounded as the spec shows them); the model checks
    # them and adds nothing.
    body = report.to_json()
    extra = [r for r in readiness.reasons if r not in report.reasons]
    if not readiness.ready:
        body["healthy"] = False
        body["reasons"] = [*body["reasons"], *extra]
    body["ready"] = readiness.ready
    body["draining"] = readiness.draining
    if report.database_error is not None:
        body["databaseError"] = report.database_error if _keyed(request) else "database unreachable"
    body["graph"] = {"mode": state.info.graph_mode, "note": GRAPH_NOTES[state.info.graph_mode]}
    down = report.database != "ok" or _cannot_work(readiness)
    return reply(answers.Health.model_validate(body), 503 if down else 200)


async def get_livez(_request: web.Request) -> web.Response:
    """Liveness: the process's event loop answers (nothing else is asked)."""
    return reply(answers.Alive(alive=True))


async def get_readyz(request: web.Request) -> web.Response:
    """Readiness: 200 when the database answers with a current schema and no critical task is
    failing; 503 (with the reasons) otherwise, draining included (send no new work to it)."""
    readiness = await _readiness(_state(request))
    keyed = _keyed(request)
    body = answers.Ready(
        ready=readiness.ready,
        draining=readiness.draining,
        reasons=list(readiness.reasons),
        # the task's last error may quote a driver message: keyed readers only
        failing_tasks={name: (error if keyed else None) for name, error in readiness.failing.items()},
    )
    return reply(body, 200 if readiness.ready else 503)


#: what /api/queue/health says about Microsoft Graph
GRAPH_NOTES: dict[protocol.GraphMode, str] = {
    "simulated": "Microsoft Graph is simulated: the Graph queues run against the built-in simulator; "
    "nothing leaves this machine",
    "live": "the Graph queues talk to Microsoft Graph",
    "off": "no Graph processors run in this appliance",
}


async def get_stats(request: web.Request) -> web.Response:
    """Per-queue figures and totals."""
    return reply(answers.Stats.model_validate(await _state(request).monitor.stats()))


async def get_metrics(request: web.Request, query: MetricsQuery) -> web.Response:
    """Time series from the stored statistics snapshots."""
    return reply(answers.Metrics.model_validate(await _state(request).monitor.metrics(query.time_range)))


async def list_alerts(request: web.Request, query: AlertQuery) -> web.Response:
    """Alerts, newest first, optionally only open or resolved ones."""
    alerts = await _state(request).monitor.alerts(status=query.status, limit=query.limit)
    return reply(answers.AlertList(alerts=[views.alert(a) for a in alerts]))


async def get_thresholds(request: web.Request) -> web.Response:
    """The alert thresholds in force."""
    return reply(views.thresholds(await _state(request).service.thresholds.current()))


async def update_thresholds(request: web.Request, body: ThresholdsBody) -> web.Response:
    """Change some alert thresholds at runtime (shared by every appliance on the database)."""
    who = inputs.actor(request)
    updated = await _state(request).service.thresholds.update(body.changes(), actor=who)
    return reply(views.thresholds(updated))


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
    return reply(answers.Reloaded(reloaded=True, needs_restart=restart))


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
    return web.json_response(_state(request).openapi, dumps=compact_json)


# -- jobs ------------------------------------------------------------------------------------


async def list_jobs(request: web.Request, path: QueuePath, query: JobListQuery) -> web.Response:
    """A page of a queue's jobs, by status."""
    state = _state(request)
    full = query.include == "payload"
    await state.service.queues.get(path.queue)
    page = await state.service.jobs.page(
        path.queue, query.status, after=query.after, offset=query.offset, limit=query.limit
    )
    rows = _fit([views.job(j, full=full) for j in page.jobs])
    next_after = rows[-1].id if len(rows) < len(page.jobs) else page.next_after
    return reply(
        answers.JobList.model_construct(
            queue=path.queue,
            status=query.status,
            limit=query.limit,
            offset=query.offset,
            jobs=rows,
            next_after=next_after,
        )
    )


async def search_jobs(request: web.Request, query: JobSearchQuery) -> web.Response:
    """Jobs of every queue and state, newest first: by payload containment and by error text."""
    state = _state(request)
    if query.queue is not None:
        await state.service.queues.get(query.queue)
    page = await state.service.jobs.search(
        queue=query.queue,
        contains=query.data,
        error=query.error,
        before=query.before,
        limit=query.limit,
        status=query.status,
        since=query.since,
    )
    rows = _fit([views.job(j, full=query.include == "payload") for j in page.jobs])
    next_before = rows[-1].id if len(rows) < len(page.jobs) else page.next_before
    return reply(answers.JobSearch.model_construct(jobs=rows, next_before=next_before))


async def enqueue_job(request: web.Request, path: WorkQueuePath, body: EnqueueBody) -> web.Response:
    """Enqueue one job: 201 when created, 200 with ``created: false`` on a singleton hit."""
    state = _state(request)
    who = inputs.actor(request)
    queue = path.queue
    await state.service.queues.get(queue)
    try:
        result = await state.service.enqueue.enqueue(
            queue,
            body.data,
            priority=JobPriority.NORMAL if body.priority is None else body.priority,
            run_at=body.run_at,
            delay=body.delay,
            singleton_key=body.singleton_key,
            max_attempts=body.max_attempts,
            depends_on=body.depends_on,
            on_failure=body.on_failure or "cancel",
            actor=who,
        )
    except UnknownQueue:
        raise
    except InvalidInput as exc:
        raise _api_field(exc) from None
    answer = answers.Enqueued(id=result.id, queue=queue, created=result.created)
    return reply(answer, 201 if result.created else 200)


def _may_reveal(request: web.Request) -> str:
    """Who asks for a payload in full, once the request is known to carry admin rights (the
    control socket, the admin key, an admin dashboard session); a read-only caller gets 403."""
    if not inputs.via_control_socket(request):
        try:
            dashboard.guard(request, Access.ADMIN, _state(request).keys)
        except ReadOnlyKey:
            raise ReadOnlyKey(
                "a payload in full (reveal=true) needs the admin key; the read-only key sees it masked"
            ) from None
    return inputs.actor(request)


async def get_job(request: web.Request, path: JobPath, query: DetailQuery) -> web.Response:
    """A job wherever it is, with every attempt, and its dead letter if it has one; payloads are
    masked by their queue's redaction policy unless an admin asks for ``reveal=true`` (audited)."""
    jobs = _state(request).service.jobs
    if query.revealed:
        detail = await jobs.reveal(path.id, actor=_may_reveal(request))
    else:
        detail = await jobs.detail(path.id)
    return reply(views.job_detail(detail.job, detail.dead_letter, detail.trail))


async def queue_errors(request: web.Request, path: QueuePath, query: ErrorsQuery) -> web.Response:
    """A queue's failed attempts of the last ``minutes`` (default 60), grouped by error class."""
    state = _state(request)
    await state.service.queues.get(path.queue)
    errors = await state.service.jobs.errors(path.queue, query.minutes)
    groups = [views.error_group(e) for e in errors]
    return reply(answers.QueueErrors.model_construct(queue=path.queue, minutes=query.minutes, errors=groups))


async def list_failed(request: web.Request, path: QueuePath, query: FailedQuery) -> web.Response:
    """A queue's jobs waiting for a retry, its open dead letters and its latest failed attempts."""
    state = _state(request)
    full = query.include == "payload"
    await state.service.queues.get(path.queue)
    failures = await state.service.jobs.failures(path.queue, query.limit)
    retrying = _fit([views.job(j, full=full) for j in failures.retrying], PAGE_BYTES // 2)
    dead = _fit([views.dead_letter(d, full=full) for d in failures.dead_letters], PAGE_BYTES // 2)
    return reply(
        answers.FailedJobs.model_construct(
            queue=path.queue,
            retrying=retrying,
            dead_letters=dead,
            recent_failures=[views.attempt(a) for a in failures.attempts],
            truncated=len(retrying) < len(failures.retrying) or len(dead) < len(failures.dead_letters),
        )
    )


async def retry_job(request: web.Request, path: QueueJobPath) -> web.Response:
    """Retry a failed job of the queue now (a dead one becomes a new job)."""
    state = _state(request)
    who = inputs.actor(request)
    await state.service.queues.get(path.queue)
    new_id = await state.service.jobs.retry(path.id, actor=who, queue=path.queue)
    return reply(
        answers.RetriedJob(queue=path.queue, retried_job_id=path.id, job_id=new_id, requeued=new_id != path.id)
    )


# -- queues ----------------------------------------------------------------------------------


async def pause_queue(request: web.Request, path: WorkQueuePath) -> web.Response:
    """Pause a queue: no appliance claims from it; running jobs finish."""
    who = inputs.actor(request)
    info = await _state(request).service.queues.set_paused(path.queue, True, actor=who)
    return reply(views.queue(info))


async def resume_queue(request: web.Request, path: WorkQueuePath) -> web.Response:
    """Resume a paused queue."""
    who = inputs.actor(request)
    info = await _state(request).service.queues.set_paused(path.queue, False, actor=who)
    return reply(views.queue(info))


async def clear_queue(request: web.Request, path: QueuePath, query: ClearQuery) -> web.Response:
    """Remove a queue's waiting jobs (never running ones); needs ``confirm=yes``."""
    state = _state(request)
    who = inputs.actor(request)
    await state.service.queues.get(path.queue)
    cleared = await state.service.queues.clear(path.queue, actor=who)
    return reply(answers.Cleared(queue=path.queue, cleared=cleared))


# -- dead letters ----------------------------------------------------------------------------


def _dead_filter_of_query(query: DeadFilterQuery) -> DeadFilter:
    """The dead-letter filter of a list or grouping."""
    return check_filter(
        queue=query.queue,
        reviewed=query.reviewed_flag,
        status=query.status,
        error_class=query.error_class,
        text=query.q,
    )


async def _dead_filter_of_body(state: AdminState, body: BulkBody) -> DeadFilter:
    """The dead-letter filter of a bulk action's body (an unknown queue: 404)."""
    if body.queue is not None:
        await state.service.queues.get(body.queue)
    return check_filter(queue=body.queue, reviewed=body.reviewed, error_class=body.error_class, text=body.q)


async def list_dead_letters(request: web.Request, query: DeadListQuery) -> web.Response:
    """Dead letters newest first, with filters and keyset paging (``before``)."""
    state = _state(request)
    where = _dead_filter_of_query(query)
    if where.queue is not None:
        await state.service.queues.get(where.queue)
    page = await state.service.dead_letters.list(where, before=query.before, limit=query.limit)
    rows = _fit([views.dead_letter(d, full=query.include == "payload") for d in page.letters])
    next_before = rows[-1].id if len(rows) < len(page.letters) else page.next_before
    return reply(
        answers.DeadLetterList.model_construct(
            dead_letters=rows, next_before=next_before, total=page.total, total_capped=page.total_capped
        )
    )


#: What the dead-letter detail route matches (the id itself is checked by the handler).
DEAD_REF_ROUTE = r"(?:dl-)?[0-9]+"


async def _dead_letter_id(state: AdminState, path: DeadRefPath) -> int:
    """The dead letter named in a path: by its job's id (``4711``, the spec's form) or by its own
    id (``dl-17``). Dead-letter ids and job ids come from different sequences, so the two forms
    never share a spelling and no path is ambiguous."""
    if path.ref.startswith(DEAD_LETTER_REF):
        return int(path.ref.removeprefix(DEAD_LETTER_REF))
    return await state.service.dead_letters.of_job(int(path.ref))


async def review_dead_letter(request: web.Request, path: DeadRefPath, body: ReviewBody) -> web.Response:
    """Mark a dead letter reviewed: who, and resolution notes."""
    state = _state(request)
    dead_id = await _dead_letter_id(state, path)
    letter = await state.service.dead_letters.review(
        dead_id,
        reviewed_by=body.reviewed_by,
        resolution_notes=body.resolution_notes,
        actor=inputs.named_actor(request),
    )
    return reply(views.dead_letter(letter))


async def retry_dead_letter(request: web.Request, path: DeadRefPath) -> web.Response:
    """Re-enqueue one dead letter as a new job on its original queue."""
    state = _state(request)
    who = inputs.actor(request)
    dead_id = await _dead_letter_id(state, path)
    job_id = await state.service.dead_letters.retry(dead_id, actor=who)
    return reply(answers.RetriedDeadLetter(dead_letter_id=dead_id, job_id=job_id))


async def discard_dead_letter(request: web.Request, path: DeadRefPath) -> web.Response:
    """Discard an open dead letter (it stays on record as discarded)."""
    state = _state(request)
    who = inputs.actor(request)
    dead_id = await _dead_letter_id(state, path)
    return reply(views.dead_letter(await state.service.dead_letters.discard(dead_id, actor=who)))


async def get_dead_letter(request: web.Request, path: DeadRefPath, query: DetailQuery) -> web.Response:
    """One dead letter with its payload (masked by its queue's redaction policy unless an admin
    asks for ``reveal=true``, audited) and every operator action on it."""
    state = _state(request)
    dead_id = await _dead_letter_id(state, path)
    if query.revealed:
        letter = await state.service.dead_letters.reveal(dead_id, actor=_may_reveal(request))
    else:
        letter = await state.service.dead_letters.get(dead_id)
    return reply(views.dead_letter_detail(letter, await state.service.dead_letters.trail(dead_id)))


async def dead_letter_groups(request: web.Request, query: DeadFilterQuery) -> web.Response:
    """The dead letters matching a filter grouped by error class and message, largest first."""
    state = _state(request)
    where = _dead_filter_of_query(query)
    if where.queue is not None:
        await state.service.queues.get(where.queue)
    groups = await state.service.dead_letters.groups(where)
    return reply(answers.DeadLetterGroups.model_construct(groups=[views.dead_group(g) for g in groups]))


async def retry_dead_letters(request: web.Request, body: BulkBody) -> web.Response:
    """Retry every open dead letter matching a filter, if exactly ``expectedCount`` match (else 409)."""
    state = _state(request)
    who = inputs.actor(request)
    where = await _dead_filter_of_body(state, body)
    result = await state.service.dead_letters.retry_matching(where, expected=body.expected_count, actor=who)
    retried = [answers.RetriedDeadLetter(dead_letter_id=d, job_id=j) for d, j in result.retried]
    return reply(answers.BulkRetried(matched=result.matched, retried=retried, skipped=result.skipped))


async def review_dead_letters(request: web.Request, body: BulkReviewBody) -> web.Response:
    """Mark every open dead letter matching a filter reviewed, if exactly ``expectedCount`` match."""
    state = _state(request)
    where = await _dead_filter_of_body(state, body)
    result = await state.service.dead_letters.review_matching(
        where,
        expected=body.expected_count,
        reviewed_by=body.reviewed_by,
        resolution_notes=body.resolution_notes,
        actor=inputs.named_actor(request),
    )
    return reply(answers.BulkChanged(matched=result.matched, changed=result.changed, skipped=result.skipped))


async def discard_dead_letters(request: web.Request, body: BulkBody) -> web.Response:
    """Discard every open dead letter matching a filter, if exactly ``expectedCount`` match."""
    state = _state(request)
    who = inputs.actor(request)
    where = await _dead_filter_of_body(state, body)
    result = await state.service.dead_letters.discard_matching(where, expected=body.expected_count, actor=who)
    return reply(answers.BulkChanged(matched=result.matched, changed=result.changed, skipped=result.skipped))


# -- the route table -------------------------------------------------------------------------

#: An endpoint: the request, then the models it declares (``path``, ``query``, ``body``; see
#: :mod:`fleetbox.admin.models`), validated before it runs.
Handler = Callable[..., Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: method, path, handler, who may call it, and its OpenAPI operationId."""

    method: str
    path: str
    handler: Handler
    access: Access
    operation_id: str
    #: the path as aiohttp matches it, when narrower than ``path`` (a pattern for a placeholder)
    match: str | None = None


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
        Route("GET", f"{q}/dead-letter/groups", dead_letter_groups, Access.READ, "listDeadLetterGroups"),
        Route("POST", f"{q}/dead-letter/retry", retry_dead_letters, Access.ADMIN, "retryDeadLetters"),
        Route("POST", f"{q}/dead-letter/review", review_dead_letters, Access.ADMIN, "reviewDeadLetters"),
        Route("POST", f"{q}/dead-letter/discard", discard_dead_letters, Access.ADMIN, "discardDeadLetters"),
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
        # Only ids match here, so GET on a bulk path (/dead-letter/retry) is 405, not a bad id.
        Route(
            "GET",
            f"{q}/dead-letter/{{jobId}}",
            get_dead_letter,
            Access.READ,
            "getDeadLetter",
            match=f"{q}/dead-letter/{{jobId:{DEAD_REF_ROUTE}}}",
        ),
        Route("GET", "/metrics", get_prometheus, health, "getPrometheusMetrics"),
        Route("GET", "/livez", get_livez, Access.PUBLIC, "getLivez"),
        Route("GET", "/readyz", get_readyz, Access.PUBLIC, "getReadyz"),
    ]
