"""The admin API's cron schedules (``/api/schedules``) and retry experiments
(``/api/queue/{queue}/retry-variants``): handlers over the service layer, their routes, and what
the OpenAPI document says of them (the server and the document are built from the same table)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import ConfigDict, Field

from fleetbox import rules
from fleetbox.admin import answers, inputs, views
from fleetbox.admin.auth import Access
from fleetbox.admin.models import Body, Input, JsonBool, QueueName, json_int, json_number, text
from fleetbox.admin.routes import STATE, Route, reply
from fleetbox.config import QueueSettings
from fleetbox.models import Schedule
from fleetbox.service.schedules import ScheduleSpec

#: The longest a cron expression or a time zone name may be.
MAX_CRON = 120
MAX_ZONE = 64


class SchedulePath(Input):
    name: Annotated[QueueName, Field(description="the schedule's name (unknown: 404)")]


class ScheduleQuery(Input):
    next: Annotated[int, Field(ge=1, le=1000)] = Field(5, description="how many next runs to list (default 5)")


class ScheduleBody(Body):
    """A schedule to create or change (by name)."""

    name: QueueName
    cron: text(MAX_CRON, blank=False) = Field(  # type: ignore[valid-type]
        description="5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or "
        "@hourly/@daily/@weekly/@monthly/@yearly; read in timezone"
    )
    queue: QueueName
    data: dict[str, Any] = Field(default_factory=dict, description="every job's payload, a JSON object")
    timezone: text(MAX_ZONE, blank=False) = Field("UTC", description="an IANA time zone")  # type: ignore[valid-type]
    priority: json_int(rules.PRIORITY_MIN, rules.PRIORITY_MAX) = 5  # type: ignore[valid-type]
    enabled: JsonBool = True
    dst: Literal["once", "both"] = Field(
        "once", description="a local time the fall-back day repeats runs once or at both"
    )
    catch_up: Literal["none", "latest", "all"] = Field("latest", alias="catchUp")
    catch_up_max: json_int(1, 10_000) = Field(100, alias="catchUpMax")  # type: ignore[valid-type]
    overlap: Literal["allow", "skip", "queue", "cancel_previous"] = "allow"
    alert_after_seconds: json_number(gt=0, le=366 * 86400) | None = Field(  # type: ignore[valid-type]
        None, alias="alertAfterSeconds", description="dead-man alert: no job of it succeeded for this long"
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "nightly-sync",
                    "cron": "30 2 * * *",
                    "timezone": "Europe/Berlin",
                    "queue": "sync",
                    "data": {"scope": "all"},
                    "overlap": "skip",
                }
            ]
        }
    )


class VariantsPath(Input):
    queue: Annotated[QueueName, Field(description="the queue's name")]


class PromotePath(VariantsPath):
    label: Annotated[QueueName, Field(description="the variant to make the rules of every new job")]


def _state(request: web.Request) -> Any:
    return request.app[STATE]


async def _detail(request: web.Request, schedule: Schedule, count: int) -> answers.ScheduleDetail:
    schedules = _state(request).service.schedules
    upcoming = await schedules.upcoming(schedule.name, count) if schedule.enabled else []
    runs = await schedules.runs(schedule.name)
    return views.schedule_detail(schedule, upcoming, runs)


async def list_schedules(request: web.Request) -> web.Response:
    """Every cron schedule, by name."""
    every = await _state(request).service.schedules.all()
    return reply(answers.ScheduleList(schedules=[views.schedule(s) for s in every]))


async def put_schedule(request: web.Request, body: ScheduleBody) -> web.Response:
    """Create or change a schedule; it runs from its next tick after now."""
    who = inputs.actor(request)
    spec = ScheduleSpec(
        name=body.name,
        cron=body.cron,
        queue=body.queue,
        data=body.data,
        timezone=body.timezone,
        priority=body.priority,
        enabled=body.enabled,
        dst=body.dst,
        catch_up=body.catch_up,
        catch_up_max=body.catch_up_max,
        overlap=body.overlap,
        alert_after_seconds=body.alert_after_seconds,
    )
    schedule = await _state(request).service.schedules.put(spec, actor=who)
    return reply(await _detail(request, schedule, 5))


async def get_schedule(request: web.Request, path: SchedulePath, query: ScheduleQuery) -> web.Response:
    """A schedule, its next runs (what daylight saving did to each) and its latest runs."""
    schedule = await _state(request).service.schedules.get(path.name)
    return reply(await _detail(request, schedule, query.next))


async def remove_schedule(request: web.Request, path: SchedulePath) -> web.Response:
    """Delete a schedule (one from the config file comes back at the next reload)."""
    await _state(request).service.schedules.remove(path.name, actor=inputs.actor(request))
    return reply(answers.ScheduleRemoved(name=path.name, removed=True))


async def pause_schedule(request: web.Request, path: SchedulePath) -> web.Response:
    """Stop firing a schedule."""
    schedule = await _state(request).service.schedules.set_enabled(path.name, False, actor=inputs.actor(request))
    return reply(await _detail(request, schedule, 5))


async def resume_schedule(request: web.Request, path: SchedulePath) -> web.Response:
    """Fire a paused schedule again, from its next tick (the ticks while paused are not caught up)."""
    schedule = await _state(request).service.schedules.set_enabled(path.name, True, actor=inputs.actor(request))
    return reply(await _detail(request, schedule, 5))


async def run_schedule(request: web.Request, path: SchedulePath) -> web.Response:
    """Enqueue the schedule's job now, outside its ticks."""
    job_id = await _state(request).service.schedules.run_now(path.name, actor=inputs.actor(request))
    return reply(answers.ScheduleRun(name=path.name, job_id=job_id))


def _queue_settings(request: web.Request, queue: str) -> QueueSettings | None:
    settings: Mapping[str, QueueSettings] = _state(request).queue_settings()
    return settings.get(queue)


async def retry_variants(request: web.Request, path: VariantsPath) -> web.Response:
    """A queue's retry experiment: each variant's figures, how they compare, and the weights' history."""
    state = _state(request)
    await state.service.queues.get(path.queue)
    report = await state.service.experiments.report(path.queue, _queue_settings(request, path.queue))
    return reply(views.retry_report(report))


async def promote_retry_variant(request: web.Request, path: PromotePath) -> web.Response:
    """Make one variant the rules of every new job of the queue (the experiment's end)."""
    state = _state(request)
    await state.service.queues.get(path.queue)
    await state.service.experiments.promote(path.queue, path.label, actor=inputs.actor(request))
    report = await state.service.experiments.report(path.queue, _queue_settings(request, path.queue))
    return reply(views.retry_report(report))


def route_table() -> list[Route]:
    """The schedules' and retry experiments' endpoints."""
    s, q = "/api/schedules", "/api/queue"
    return [
        Route("GET", s, list_schedules, Access.READ, "listSchedules"),
        Route("POST", s, put_schedule, Access.ADMIN, "putSchedule"),
        Route("GET", f"{s}/{{name}}", get_schedule, Access.READ, "getSchedule"),
        Route("DELETE", f"{s}/{{name}}", remove_schedule, Access.ADMIN, "removeSchedule"),
        Route("POST", f"{s}/{{name}}/pause", pause_schedule, Access.ADMIN, "pauseSchedule"),
        Route("POST", f"{s}/{{name}}/resume", resume_schedule, Access.ADMIN, "resumeSchedule"),
        Route("POST", f"{s}/{{name}}/run", run_schedule, Access.ADMIN, "runSchedule"),
        Route("GET", f"{q}/{{queue}}/retry-variants", retry_variants, Access.READ, "getRetryVariants"),
        Route(
            "POST",
            f"{q}/{{queue}}/retry-variants/{{label}}/promote",
            promote_retry_variant,
            Access.ADMIN,
            "promoteRetryVariant",
        ),
    ]


# -- the OpenAPI document's part -------------------------------------------------------------


OPERATIONS: dict[str, dict[str, Any]] = {
    "listSchedules": {
        "summary": "Every cron schedule",
        "responses": {"200": answers.ok(answers.ScheduleList, "The schedules")},
        "errors": [503],
    },
    "putSchedule": {
        "summary": "Create or change a cron schedule (by name); it runs from its next tick",
        "description": "Checked like an enqueue (the queue must exist, the payload pass its limits); a cron "
        "expression or time zone that does not parse is a 400 naming the field.",
        "responses": {"200": answers.ok(answers.ScheduleDetail, "The schedule")},
        "errors": [404, 503],
    },
    "getSchedule": {
        "summary": "A schedule, its next runs (DST flagged) and latest runs",
        "responses": {"200": answers.ok(answers.ScheduleDetail, "The schedule")},
        "errors": [404, 503],
    },
    "removeSchedule": {
        "summary": "Delete a schedule",
        "responses": {"200": answers.ok(answers.ScheduleRemoved, "Removed")},
        "errors": [404, 503],
    },
    "pauseSchedule": {
        "summary": "Stop firing a schedule",
        "responses": {"200": answers.ok(answers.ScheduleDetail, "Paused")},
        "errors": [404, 503],
    },
    "resumeSchedule": {
        "summary": "Fire a paused schedule again, from its next tick",
        "responses": {"200": answers.ok(answers.ScheduleDetail, "Resumed")},
        "errors": [404, 503],
    },
    "runSchedule": {
        "summary": "Enqueue a schedule's job now",
        "responses": {"200": answers.ok(answers.ScheduleRun, "Enqueued")},
        "errors": [404, 503],
    },
    "getRetryVariants": {
        "summary": "A queue's retry experiment: each variant's figures, the comparison and the verdict",
        "responses": {"200": answers.ok(answers.RetryReport, "The report")},
        "errors": [404, 503],
    },
    "promoteRetryVariant": {
        "summary": "Make one retry variant the rules of every new job of the queue",
        "responses": {"200": answers.ok(answers.RetryReport, "The report after the promotion")},
        "errors": [404, 503],
    },
}

TAGS = {operation: "schedules" if "Schedule" in operation else "retry experiments" for operation in OPERATIONS}
