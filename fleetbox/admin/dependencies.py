"""The admin API's view of a job's place in a dependency graph
(``GET /api/queue/jobs/{jobId}/dependencies``): its parents and children, where each is now, its
result and why it was cancelled. What ``fleetbox job ID`` prints, for the TUI (over the control
socket) and the dashboard, which draws the graph from it. A handler over the service layer, its
route, and what the OpenAPI document says of it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fleetbox.admin.auth import Access
from fleetbox.admin.models import JobPath
from fleetbox.admin.routes import STATE, Route, reply
from fleetbox.admin.schema import Schema
from fleetbox.admin.schema import obj as _obj
from fleetbox.admin.schema import ok as _ok
from fleetbox.admin.schema import ref as _ref
from fleetbox.models import iso
from fleetbox.store.dependencies import Link


def _link(link: Link) -> dict[str, Any]:
    return {"jobId": link.job_id, "state": link.state, "edge": link.edge, "step": link.step}


async def get_job_dependencies(request: web.Request, path: JobPath) -> web.Response:
    """A job's parents and children (where each is now), its result, and why it was cancelled."""
    relations = await request.app[STATE].service.dependencies.relations(path.id)
    cancellation = relations.cancellation
    return reply(
        {
            "jobId": relations.job_id,
            "parents": [_link(link) for link in relations.parents],
            "children": [_link(link) for link in relations.children],
            "hasResult": relations.has_result,
            "result": relations.result if relations.has_result else None,
            "cancellation": None
            if cancellation is None
            else {
                "at": iso(cancellation.cancelled_at),
                "reason": cancellation.reason,
                "parentId": cancellation.parent_id,
                "actor": cancellation.actor,
            },
        }
    )


def route_table() -> list[Route]:
    """The dependency graph's endpoint."""
    return [
        Route("GET", "/api/queue/jobs/{jobId}/dependencies", get_job_dependencies, Access.READ, "getJobDependencies")
    ]


_S_NULL: Schema = {"type": ["string", "null"]}
_LINK = _obj(
    {
        "jobId": {"type": "integer"},
        "state": {
            **_S_NULL,
            "description": "where the other job is now (null: deleted by retention): blocked, waiting, scheduled, "
            "retrying, running, succeeded, dead, cleared or cancelled",
        },
        "edge": {**_S_NULL, "description": "null while the parent is unresolved; succeeded, skipped, ignored, failed"},
        "step": {**_S_NULL, "description": "the other job's step name, when it is a workflow step"},
    }
)

SCHEMAS: dict[str, Schema] = {
    "DependencyLink": _LINK,
    "JobDependencies": _obj(
        {
            "jobId": {"type": "integer"},
            "parents": {"type": "array", "items": _ref("DependencyLink")},
            "children": {"type": "array", "items": _ref("DependencyLink")},
            "hasResult": {"type": "boolean"},
            "result": {"description": "the job's result (a handler's return value or an operator's stand-in)"},
            "cancellation": {
                "oneOf": [
                    {"type": "null"},
                    _obj(
                        {
                            "at": {"type": "string"},
                            "reason": {"type": "string"},
                            "parentId": {"type": ["integer", "null"]},
                            "actor": _S_NULL,
                        }
                    ),
                ]
            },
        }
    ),
}

OPERATIONS: dict[str, dict[str, Any]] = {
    "getJobDependencies": {
        "summary": "A job's parents and children, where each is now, its result and why it was cancelled",
        "responses": {"200": _ok("JobDependencies", "The job's place in its dependency graph")},
        "errors": [404, 503],
    },
}

TAGS = {"getJobDependencies": "jobs"}
