"""The admin API's view of a job's place in a dependency graph
(``GET /api/queue/jobs/{jobId}/dependencies``): its parents and children, where each is now, its
result and why it was cancelled. What ``fleetbox job ID`` prints, for the TUI (over the control
socket) and the dashboard, which draws the graph from it. A handler over the service layer, its
route, and what the OpenAPI document says of it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fleetbox.admin import answers
from fleetbox.admin.auth import Access
from fleetbox.admin.models import JobPath
from fleetbox.admin.routes import STATE, Route, reply
from fleetbox.models import iso
from fleetbox.store.dependencies import Link


def _link(link: Link) -> answers.DependencyLink:
    values = {"job_id": link.job_id, "state": link.state, "edge": link.edge, "step": link.step}
    return answers.build(answers.DependencyLink, values)


async def get_job_dependencies(request: web.Request, path: JobPath) -> web.Response:
    """A job's parents and children (where each is now), its result, and why it was cancelled."""
    relations = await request.app[STATE].service.dependencies.relations(path.id)
    cancellation = relations.cancellation
    return reply(
        answers.build(
            answers.JobDependencies,
            {
                "job_id": relations.job_id,
                "parents": [_link(link) for link in relations.parents],
                "children": [_link(link) for link in relations.children],
                "has_result": relations.has_result,
                "result": relations.result if relations.has_result else None,
                "cancellation": None
                if cancellation is None
                else answers.build(
                    answers.DependencyCancellation,
                    {
                        "at": iso(cancellation.cancelled_at),
                        "reason": cancellation.reason,
                        "parent_id": cancellation.parent_id,
                        "actor": cancellation.actor,
                    },
                ),
            },
        )
    )


def route_table() -> list[Route]:
    """The dependency graph's endpoint."""
    return [
        Route("GET", "/api/queue/jobs/{jobId}/dependencies", get_job_dependencies, Access.READ, "getJobDependencies")
    ]


OPERATIONS: dict[str, dict[str, Any]] = {
    "getJobDependencies": {
        "summary": "A job's parents and children, where each is now, its result and why it was cancelled",
        "responses": {"200": answers.ok(answers.JobDependencies, "The job's place in its dependency graph")},
        "errors": [404, 503],
    },
}

TAGS = {"getJobDependencies": "jobs"}
