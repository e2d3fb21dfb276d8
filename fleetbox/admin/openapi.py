"""The OpenAPI 3.1 document of the admin API, built from the same route table as the server.

Paths, methods and security come from :func:`fleetbox.admin.routes.route_table` (so the document
cannot list an endpoint the server lacks, or miss one); parameters and request bodies from the
models each handler declares (:mod:`fleetbox.admin.models`); response bodies from the models the
handlers answer with (:mod:`fleetbox.admin.answers`, generated into ``components/schemas``).
Here: each operation's summary, which answer it gives per status, and its errors. Every error
response is the one error body of :mod:`fleetbox.admin.errors` (``answers.Error``). The
schemathesis test in ``tests/admin`` checks the server against this document.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from fleetbox.admin import answers, dependencies, schedules
from fleetbox.admin.auth import HEADER, Access
from fleetbox.admin.inputs import ACTOR_HEADER, ACTOR_PATTERN
from fleetbox.admin.models import MAX_OFFSET, Input, reads
from fleetbox.admin.routes import Route
from fleetbox.graph import webhooks
from fleetbox.protocol import OPERATOR_HEADER
from fleetbox.rules import MAX_ACTOR
from fleetbox.service.dead_letters import MAX_BULK as MAX_BULK_RETRY

Schema = dict[str, Any]


# -- parameters ----------------------------------------------------------------------------------


ACTOR: Schema = {
    "name": ACTOR_HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ACTOR, "pattern": ACTOR_PATTERN},
    "description": "who acts, recorded in the audit log (default: admin-api; socket:<uid> on the control socket)",
}
OPERATOR: Schema = {
    "name": OPERATOR_HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ACTOR, "pattern": ACTOR_PATTERN},
    "description": f"the operator's login name (the terminal UI sends it), as {ACTOR_HEADER}; both sent: this one",
}

_ERROR_TEXT = {
    400: "Bad input: a parameter or body field is wrong (named in error.field), or the body is not JSON",
    401: f"No {HEADER} header",
    403: f"The {HEADER} header matches no key, the read-only key was sent to change state or to reveal a "
    "payload, or no admin key is configured",
    404: "No such queue, job or dead letter",
    409: "The object is not in a state that allows this",
    426: "This is a WebSocket: connect with Upgrade: websocket",
    429: "Too many wrong keys from this address: requests with a key wait for Retry-After seconds",
    413: "The request body is too large",
    415: "The request body is not application/json",
    422: "The configuration file is invalid (the reason is in the message); nothing changed",
    503: "The database is unreachable or the schema is not ready",
}


def _error(status: int) -> Schema:
    return answers.ok(answers.Error, _ERROR_TEXT[status])


#: operationId -> (summary, parameters, request body schema | None, {status: response}, errors)
def _operations() -> dict[str, dict[str, Any]]:
    body_errors = [400, 413, 415]
    return {
        "getHealth": {
            "summary": "Health: per queue isRunning, backlog, failureRate (%), avgProcessingTime (ms), consumers",
            "description": "A crossed threshold is `healthy: false` with the reasons, and still 200: the "
            "appliance works. 503 (the same document) only when the database is unreachable or the "
            "appliance cannot work (not ready for a reason other than draining).",
            "responses": {
                "200": answers.ok(answers.Health, "The appliance works (healthy may still be false: see reasons)"),
                "503": answers.ok(answers.Health, "The database is unreachable or the appliance cannot work"),
            },
        },
        "getLivez": {
            "summary": "Liveness: the process answers (no key, no database)",
            "responses": {"200": answers.ok(answers.Alive, "Alive")},
        },
        "getReadyz": {
            "summary": "Readiness: database reachable, schema current, no critical task failing, not draining",
            "description": "No key. 503 with the reasons when not ready (draining included: send it no work).",
            "responses": {
                "200": answers.ok(answers.Ready, "Ready"),
                "503": answers.ok(answers.Ready, "Not ready (see reasons)"),
            },
        },
        "getStats": {
            "summary": "Current figures per queue and in total, and the last 24 hours from the snapshots",
            "responses": {"200": answers.ok(answers.Stats, "Statistics")},
            "errors": [503],
        },
        "getMetrics": {
            "summary": "Time series from the statistics snapshots",
            "responses": {"200": answers.ok(answers.Metrics, "Metrics")},
            "errors": [400, 503],
        },
        "listAlerts": {
            "summary": "Threshold alerts, newest first",
            "responses": {"200": answers.ok(answers.AlertList, "Alerts")},
            "errors": [400, 503],
        },
        "getThresholds": {
            "summary": "The alert thresholds in force",
            "responses": {"200": answers.ok(answers.Thresholds, "Thresholds")},
            "errors": [503],
        },
        "updateThresholds": {
            "summary": "Change alert thresholds at runtime (every appliance on the database follows)",
            "parameters": [ACTOR, OPERATOR],
            "responses": {"200": answers.ok(answers.Thresholds, "The thresholds now in force")},
            "errors": [*body_errors, 503],
        },
        "getPrometheusMetrics": {
            "summary": "Prometheus figures of this appliance process (text format)",
            "description": "Attempts by queue and outcome and the processing-time histogram count what this "
            "process finished; queue depth, open dead letters and pause flags are counted in the database at "
            "scrape time.",
            "responses": {
                "200": {
                    "description": "Prometheus text format 0.0.4",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
            "errors": [503],
        },
        "reloadConfig": {
            "summary": "Read the configuration file again and apply it, as SIGHUP does",
            "description": "Pool sizes, retry rules, queues, thresholds and schedules apply at once; the "
            "sections that need a restart are listed. An invalid file changes nothing (422, with the reason).",
            "parameters": [ACTOR, OPERATOR],
            "responses": {"200": answers.ok(answers.Reloaded, "Applied")},
            "errors": [400, 409, 422, 503],
        },
        "getOpenApi": {
            "summary": "This document",
            "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}
            },
        },
        "listDeadLetters": {
            "summary": "Dead letters, newest first",
            "responses": {"200": answers.ok(answers.DeadLetterList, "A page of dead letters")},
            "errors": [400, 404, 503],
        },
        "retryDeadLetters": {
            "summary": "Retry every open dead letter matching a filter",
            "description": "Counted under lock: when the number of open dead letters matching differs from "
            f"expectedCount, 409 and nothing changes. At most {MAX_BULK_RETRY} at once.",
            "parameters": [ACTOR, OPERATOR],
            "responses": {"200": answers.ok(answers.BulkRetried, "Retried")},
            "errors": [*body_errors, 404, 409, 503],
        },
        "listDeadLetterGroups": {
            "summary": "Dead letters grouped by error class and message (count, queues, last failure), largest first",
            "responses": {"200": answers.ok(answers.DeadLetterGroups, "The groups")},
            "errors": [400, 404, 503],
        },
        "getDeadLetter": {
            "summary": "One dead letter with its payload in full and every operator action on it",
            "responses": {"200": answers.ok(answers.DeadLetterDetail, "The dead letter")},
            "errors": [400, 404, 503],
        },
        "reviewDeadLetters": {
            "summary": "Mark every open dead letter matching a filter reviewed",
            "description": "Counted under lock: when the number of open dead letters matching differs from "
            f"expectedCount, 409 and nothing changes. At most {MAX_BULK_RETRY} at once.",
            "responses": {"200": answers.ok(answers.BulkChanged, "Reviewed")},
            "errors": [*body_errors, 404, 409, 503],
        },
        "discardDeadLetters": {
            "summary": "Discard every open dead letter matching a filter",
            "description": "Counted under lock: when the number of open dead letters matching differs from "
            f"expectedCount, 409 and nothing changes. At most {MAX_BULK_RETRY} at once.",
            "parameters": [ACTOR, OPERATOR],
            "responses": {"200": answers.ok(answers.BulkChanged, "Discarded")},
            "errors": [*body_errors, 404, 409, 503],
        },
        "listJobs": {
            "summary": "A page of a queue's jobs",
            "description": "Without status: every job still in the queue (not yet started, or running). pending = "
            "waiting + scheduled + retrying (every job not yet started); ready is another word for waiting. "
            "Jobs in the queue come oldest first (id order); succeeded, dead "
            "and cleared ones last finished first (while in jobs_done, before archiving). Page with "
            f"`after` (the previous page's nextAfter), or with `offset` up to {MAX_OFFSET}.",
            "responses": {"200": answers.ok(answers.JobList, "A page of jobs")},
            "errors": [400, 404, 503],
        },
        "searchJobs": {
            "summary": "Search jobs of every queue and state, newest first",
            "description": "By payload containment (`data`: the JSON text of an object the payload contains, "
            "PostgreSQL's @>) and by error text (`error`: in the latest error of a job still queued, or in any "
            "failed attempt of a finished one). Page with `before` (the previous page's nextBefore). A search "
            "that scans more than 3 seconds is stopped (503): narrow it with `queue`.",
            "responses": {"200": answers.ok(answers.JobSearch, "A page of jobs")},
            "errors": [400, 404, 503],
        },
        "enqueueJob": {
            "summary": "Enqueue a job (the same checks as fleetbox.Client.enqueue)",
            "responses": {
                "201": answers.ok(answers.Enqueued, "Created"),
                "200": answers.ok(
                    answers.Enqueued, "Not created: a waiting or running job has the singleton key (its id)"
                ),
            },
            "errors": [*body_errors, 404, 503],
        },
        "listQueueErrors": {
            "summary": "A queue's recent failed attempts grouped by error class, most first",
            "responses": {"200": answers.ok(answers.QueueErrors, "Failed attempts by error class")},
            "errors": [400, 404, 503],
        },
        "streamQueues": {
            "summary": "The live stream (WebSocket): hello, then a tick per interval and events",
            "description": "One JSON object per text frame, as fleetbox/protocol.py describes: the server sends "
            "hello once (appliance, a full tick, 15 minutes of per-second history per queue), then ticks "
            "(default every second) and events (pauses, retries, reviews, new dead letters, by anyone); the client "
            'may send {"type": "subscribe", "intervalMs": 1000|2000|5000|10000}. A refused message gets '
            '{"type": "error", "field", "message"}. On the control socket no key is needed.',
            "responses": {"101": {"description": "Switching to the WebSocket protocol"}},
            "errors": [426],
        },
        "listFailed": {
            "summary": "A queue's failures: jobs waiting for a retry, open dead letters, latest failed attempts",
            "responses": {"200": answers.ok(answers.FailedJobs, "Failures")},
            "errors": [400, 404, 503],
        },
        "pauseQueue": {
            "summary": "Pause a queue on every appliance (running jobs finish)",
            "responses": {"200": answers.ok(answers.Queue, "The queue")},
            "errors": [400, 404, 503],
        },
        "resumeQueue": {
            "summary": "Resume a queue",
            "responses": {"200": answers.ok(answers.Queue, "The queue")},
            "errors": [400, 404, 503],
        },
        "clearQueue": {
            "summary": "Remove a queue's jobs not yet started (waiting, scheduled, retrying), never running ones",
            "description": "They move to the finished jobs with state cleared.",
            "responses": {"200": answers.ok(answers.Cleared, "How many jobs were removed")},
            "errors": [400, 404, 503],
        },
        "retryJob": {
            "summary": "Retry a failed job now",
            "description": "A job waiting for a retry runs at once (same id); a dead job is re-enqueued on "
            "its queue as a new job linked to its dead letter (new id). Another state: 409.",
            "responses": {"200": answers.ok(answers.RetriedJob, "Retried")},
            "errors": [400, 404, 409, 503],
        },
        "reviewDeadLetter": {
            "summary": "Mark a dead letter reviewed (the last review wins; every review is audited)",
            "responses": {"200": answers.ok(answers.DeadLetter, "The dead letter")},
            "errors": [*body_errors, 404, 503],
        },
        "retryDeadLetter": {
            "summary": "Re-enqueue one dead letter as a new job on its original queue",
            "responses": {"200": answers.ok(answers.RetriedDeadLetter, "The new job")},
            "errors": [400, 404, 409, 503],
        },
        "discardDeadLetter": {
            "summary": "Discard an open dead letter (it stays on record as discarded)",
            "responses": {"200": answers.ok(answers.DeadLetter, "The dead letter")},
            "errors": [400, 404, 409, 503],
        },
        "getJob": {
            "summary": "A job wherever it is, with every attempt (and its dead letter when dead)",
            "responses": {"200": answers.ok(answers.JobDetail, "The job")},
            "errors": [400, 404, 503],
        },
    }


_DESCRIPTION = f"""The admin API of a fleetbox appliance.

**Keys.** Send the key in the `{HEADER}` header. Operations that change state need `admin.key`
(`ADMIN_KEY`); every read except the health check (while `admin.health_public` is true) and this
document needs `admin.key` or `admin.read_key`. No key configured: 403 (admin operations are refused,
never open). Header missing: 401. A key that matches nothing: 403. The read-only key on an operation
that changes state: 403.

**Redaction.** Payloads (`data`, `dataPreview`) are masked by their queue's redaction policy (the
answering appliance's `[queues.<name>] redact`, and built-in ones for the spec's Graph queues):
each masked value is `"***"`, keys and array lengths are kept. `reveal=true` on a job's or a dead
letter's detail returns the payload in full: it needs the admin key (the read-only key: 403) and is
written to the audit log (`job.reveal`, `dead.reveal`) with who asked. A payload search on a masked
key is refused (400).

**Errors** are `{{"error": {{"code", "message", "field"?}}}}`: 400 bad input (the field is named),
401/403 keys, 404 no such queue, job or dead letter, 409 state conflict, 413 body over {{max_body}}
bytes, 415 body not JSON, 503 database unavailable.

**Who acts.** State-changing operations take an optional `{ACTOR_HEADER}` (or `{OPERATOR_HEADER}`)
header, recorded in the audit log (default `admin-api`); a review records `reviewedBy`.

**The control socket.** The same API is served on a unix socket (`admin.socket_path`, default
`<appliance.data_dir>/admin.sock`, owner-only): requests there need no key, and the actor defaults to
`socket:<uid>` of the connecting process.
"""


def _plain(schema: Schema) -> Schema:
    """A parameter's schema: no title, and an optional one without its null (absent is not null)."""
    out = {k: v for k, v in schema.items() if k not in ("title", "description")}
    options = out.pop("anyOf", None)
    if options is not None:
        kept = [o for o in options if o != {"type": "null"}]
        if len(kept) == 1:
            out = {**kept[0], **out}
        else:
            out["anyOf"] = kept
    return out


def _parameters(model: type[Input], where: str) -> list[Schema]:
    """The parameters a path or query model describes, from its JSON schema."""
    schema = model.model_json_schema(by_alias=True)
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema["properties"].items():
        parameter: Schema = {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
            "schema": _plain(prop),
        }
        plain = parameter["schema"]
        if plain.get("contentMediaType") == "application/json" and "contentSchema" in plain:
            # JSON text in a parameter (the job search's payload filter): described as its content
            del parameter["schema"]
            parameter["content"] = {"application/json": {"schema": plain["contentSchema"]}}
        if "description" in prop:
            parameter["description"] = prop["description"]
        out.append(parameter)
    return out


def _body_schema(model: type[BaseModel], schemas: dict[str, Schema]) -> Schema:
    """A body model's JSON schema, added to ``schemas`` (with its definitions); its $ref."""
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        schemas[name] = definition
    schema.pop("title", None)
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _webhook_paths(schemas: dict[str, Schema]) -> dict[str, dict[str, Any]]:
    """The Graph change-notification receiver (:mod:`fleetbox.graph.webhooks`): public, answered
    as Graph needs it (a 2xx within 3 s, or Graph delivers again and at last drops the
    subscription), its request body from the receiver's own model."""
    body = _body_schema(webhooks.NotificationBatch, schemas)
    # The receiver (below the admin API, in fleetbox.graph) writes this answer; described here.
    schemas["NotificationsTaken"] = {
        "type": "object",
        "properties": {
            "accepted": {"type": "integer", "minimum": 0, "description": "stored and queued for processing"},
            "duplicates": {"type": "integer", "minimum": 0, "description": "already stored (Graph replays)"},
            "rejected": {
                "type": "integer",
                "minimum": 0,
                "description": "discarded: a wrong or missing clientState (counted, never stored)",
            },
        },
        "required": ["accepted", "duplicates", "rejected"],
        "additionalProperties": False,
    }
    plain = {"schema": {"type": "string"}}
    token = {
        "name": "validationToken",
        "in": "query",
        "required": False,
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": webhooks.MAX_VALIDATION_TOKEN,
            "pattern": webhooks.VALIDATION_TOKEN_PATTERN,
        },
        "description": "Graph's validation handshake: the token is echoed as text/plain and the body is "
        "ignored (Graph sends none)",
    }

    def operation(operation_id: str, summary: str) -> dict[str, Any]:
        return {
            "summary": summary,
            "description": "With `validationToken`: the subscription handshake, answered 200 with the token as "
            "text/plain (`X-Content-Type-Options: nosniff`). Otherwise a batch of notifications: each item "
            "with the configured clientState is stored once and queued (webhook-events), the others are "
            f"discarded and counted; 202 either way. At most {webhooks.MAX_ITEMS} items and "
            f"{webhooks.MAX_BODY_BYTES} bytes (413), at most {webhooks.MAX_REQUESTS_PER_SECOND} requests a "
            "second from one address (429); a body that is not such a batch (not JSON, too deep, NaN, NUL, "
            "a field of the wrong type) is 400; 503 only when the notifications could not be stored.",
            "operationId": operation_id,
            "tags": ["graph"],
            "security": [],
            "parameters": [token],
            "requestBody": {"required": False, "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": {"description": "The handshake: the token", "content": {"text/plain": plain}},
                "202": {
                    "description": "Taken (stored, duplicate or discarded)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NotificationsTaken"}}},
                },
                "400": {
                    "description": "A validationToken that is not 1 to "
                    f"{webhooks.MAX_VALIDATION_TOKEN} printable ASCII characters (text/plain), or a body "
                    "that is not a notification batch (JSON)",
                    "content": {"application/json": {"schema": answers.ref(answers.Error)}, "text/plain": plain},
                },
                "413": _error(413),
                "429": {
                    "description": "Too many requests from this address: wait Retry-After seconds",
                    "content": {"application/json": {"schema": answers.ref(answers.Error)}},
                },
                "503": {
                    "description": "The notifications could not be stored: deliver them again",
                    "content": {"application/json": {"schema": answers.ref(answers.Error)}},
                },
            },
        }

    return {
        webhooks.NOTIFICATIONS_PATH: {"post": operation("receiveNotifications", "Graph change notifications")},
        webhooks.LIFECYCLE_PATH: {"post": operation("receiveLifecycleNotifications", "Graph lifecycle notifications")},
    }


def build_openapi(
    routes: list[Route], *, version: str, max_body: int, webhook_receiver: bool = False
) -> dict[str, Any]:
    """The document for this route table and configuration: what each operation reads comes from
    the models its handler declares (:mod:`fleetbox.admin.models`), what it answers from
    :mod:`fleetbox.admin.answers`, the rest from here.
    ``webhook_receiver``: the Graph change-notification receiver is served too (Graph is not off)."""
    operations = {**_operations(), **schedules.OPERATIONS, **dependencies.OPERATIONS}
    schemas = answers.schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        spec = copy.deepcopy(operations[route.operation_id])
        errors: list[int] = list(spec.pop("errors", []))
        wanted = reads(route.handler)
        parameters = [*_parameters(wanted.path, "path")] if wanted.path is not None else []
        if wanted.query is not None:
            parameters += _parameters(wanted.query, "query")
        parameters += spec.pop("parameters", [])
        if parameters:
            spec["parameters"] = parameters
            errors.append(400)
        if wanted.body is not None:
            body = _body_schema(wanted.body, schemas)
            spec["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
            errors += [400, 413, 415]
        errors.append(429)  # any request that carries a key, after too many wrong ones
        if route.access is not Access.PUBLIC:
            errors += [401, 403]
            spec["security"] = [{"adminKey": []}]
        else:
            spec["security"] = []
        for status in sorted(set(errors)):
            spec["responses"][str(status)] = _error(status)
        spec["operationId"] = route.operation_id
        spec["tags"] = [{**_TAGS, **schedules.TAGS, **dependencies.TAGS}[route.operation_id]]
        paths.setdefault(route.path, {})[route.method.lower()] = spec
    if webhook_receiver:
        paths.update(_webhook_paths(schemas))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fleetbox admin API",
            "version": version,
            "description": _DESCRIPTION.replace("{max_body}", str(max_body)),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "adminKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": HEADER,
                    "description": "admin.key for every operation; admin.read_key for reads",
                },
            },
        },
        "tags": [
            {"name": t}
            for t in (
                "monitoring",
                "jobs",
                "queues",
                "dead letters",
                "schedules",
                "retry experiments",
                "graph",
                "meta",
            )
        ],
    }


_TAGS = {
    "getHealth": "monitoring",
    "getLivez": "monitoring",
    "getReadyz": "monitoring",
    "getStats": "monitoring",
    "getMetrics": "monitoring",
    "listAlerts": "monitoring",
    "getThresholds": "monitoring",
    "updateThresholds": "monitoring",
    "getOpenApi": "meta",
    "getPrometheusMetrics": "monitoring",
    "reloadConfig": "meta",
    "listJobs": "jobs",
    "searchJobs": "jobs",
    "enqueueJob": "jobs",
    "getJob": "jobs",
    "listFailed": "jobs",
    "listQueueErrors": "jobs",
    "streamQueues": "monitoring",
    "retryJob": "jobs",
    "pauseQueue": "queues",
    "resumeQueue": "queues",
    "clearQueue": "queues",
    "listDeadLetters": "dead letters",
    "retryDeadLetters": "dead letters",
    "reviewDeadLetters": "dead letters",
    "discardDeadLetters": "dead letters",
    "listDeadLetterGroups": "dead letters",
    "getDeadLetter": "dead letters",
    "reviewDeadLetter": "dead letters",
    "retryDeadLetter": "dead letters",
    "discardDeadLetter": "dead letters",
}
