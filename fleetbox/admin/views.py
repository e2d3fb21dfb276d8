"""The JSON shapes of the admin API (camelCase, as in the spec); times are ISO 8601 with offset."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleetbox import rules
from fleetbox.models import Attempt, DeadLetter, JobInfo, QueueInfo, Tier, UndecodablePayload, iso
from fleetbox.store.audit import AuditEntry
from fleetbox.store.dead_letters import ErrorGroupRow
from fleetbox.store.jobs import ErrorGroup


def when(value: dt.datetime | None) -> str | None:
    """A time as ISO 8601 text (``None`` stays ``None``)."""
    return None if value is None else value.isoformat()


#: How much of a payload's JSON text a list row shows (``dataPreview``).
PREVIEW_CHARS = 200
#: The deepest payload an answer carries: the most ``appliance.max_payload_depth`` allows. Deeper
#: ones got in around fleetbox (by SQL); encoding them could exhaust the stack, so they are
#: described instead.
RENDER_DEPTH = 512
_TEXT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True, slots=True)
class Payload:
    """A stored payload made ready for an answer: never raises, whatever was stored."""

    #: the payload, or ``{"undecodable": true, "reason", "size"}`` when it cannot be shown
    value: object
    #: the first PREVIEW_CHARS characters of its JSON text (a description when it cannot be shown)
    preview: str
    #: bytes of its JSON text
    size: int


def _undecodable(reason: str, size: int) -> Payload:
    return Payload({"undecodable": True, "reason": reason, "size": size}, f"(payload not shown: {reason})", size)


def payload(data: object) -> Payload:
    """A stored payload as JSON: one that cannot be decoded or is nested too deeply is described,
    never sent."""
    if isinstance(data, UndecodablePayload):
        return _undecodable(data.reason, data.size)
    try:
        text = _TEXT.encode(data)
    except RecursionError:
        return _undecodable("nested too deeply to show", 0)
    except (TypeError, ValueError) as exc:
        return _undecodable(f"not JSON: {exc}"[:200], 0)
    size = len(text.encode("utf-8", "surrogatepass"))
    # Fewer brackets than the limit cannot nest deeper than it: the walk runs only when it might.
    if text.count("{") + text.count("[") > RENDER_DEPTH and rules.depth_over(data, RENDER_DEPTH):
        return _undecodable(f"nested more than {RENDER_DEPTH} levels deep", size)
    return Payload(data, text[:PREVIEW_CHARS], size)


def _data(data: object, full: bool) -> dict[str, Any]:
    shown = payload(data)
    return {"data": shown.value if full else None, "dataPreview": shown.preview, "dataSize": shown.size}


def job(info: JobInfo, *, full: bool = True) -> dict[str, Any]:
    """A job; ``full=False`` (a list row without ``include=payload``): ``data`` is null, the preview
    and size say what it holds."""
    return {
        "id": info.id,
        "queue": info.queue,
        "priority": info.priority,
        "state": info.state.value,
        **_data(info.data, full),
        "singletonKey": info.singleton_key,
        "attempts": info.attempts,
        "maxAttempts": info.max_attempts,
        "runAt": when(info.run_at),
        "createdAt": when(info.created_at),
        "finishedAt": when(info.finished_at),
        "lastErrorClass": info.last_error_class,
        "lastError": info.last_error,
        "retryOfDeadLetterId": info.dead_letter_id,
    }


def attempt(a: Attempt) -> dict[str, Any]:
    """One recorded attempt."""
    return {
        "jobId": a.job_id,
        "attempt": a.attempt,
        "queue": a.queue,
        "workerId": a.worker_id,
        "startedAt": when(a.started_at),
        "finishedAt": when(a.finished_at),
        "durationMs": a.duration_ms,
        "outcome": a.outcome.value,
        "errorClass": a.error_class,
        "error": a.error,
    }


def _history_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "attempt": entry.get("attempt"),
        "startedAt": entry.get("started_at"),
        "finishedAt": entry.get("finished_at"),
        "durationMs": entry.get("duration_ms"),
        "outcome": entry.get("outcome"),
        "errorClass": entry.get("error_class"),
        "error": entry.get("error"),
    }


def dead_letter(d: DeadLetter, *, full: bool = True) -> dict[str, Any]:
    """A dead letter with its payload (``full=False``: only its preview and size) and the copy of
    its attempt history."""
    history = d.history if isinstance(d.history, list | tuple) else ()
    return {
        "id": d.id,
        "jobId": d.job_id,
        "queue": d.queue,
        "priority": d.priority,
        **_data(d.data, full),
        "singletonKey": d.singleton_key,
        "errorClass": d.error_class,
        "error": d.error,
        "attempts": d.attempts,
        "history": [_history_entry(h) for h in history if isinstance(h, Mapping)],
        "jobCreatedAt": when(d.job_created_at),
        "failedAt": when(d.failed_at),
        "status": d.status.value,
        "reviewed": d.reviewed,
        "reviewedAt": when(d.reviewed_at),
        "reviewedBy": d.reviewed_by,
        "resolutionNotes": d.resolution_notes,
        "retriedJobId": d.retried_job_id,
        "retriedAt": when(d.retried_at),
        "discardedAt": when(d.discarded_at),
    }


def queue(q: QueueInfo) -> dict[str, Any]:
    """A queue and its pause flag."""
    return {
        "name": q.name,
        "tier": Tier(q.tier).name.lower(),
        "paused": q.paused,
        "pausedAt": when(q.paused_at),
        "pausedBy": q.paused_by,
    }


def audit_entry(entry: AuditEntry) -> dict[str, Any]:
    """One operator action from the audit log (who, what, when, with what notes)."""
    return {"at": when(entry.at), "actor": entry.actor, "action": entry.action, "details": dict(entry.details)}


def error_group(group: ErrorGroup) -> dict[str, Any]:
    """A queue's failed attempts of one error class."""
    return {
        "errorClass": group.error_class,
        "count": group.count,
        "lastAt": iso(group.last_at),
        "lastMessage": group.last_message,
    }


def dead_group(group: ErrorGroupRow) -> dict[str, Any]:
    """Dead letters that failed the same way: error class and message, how many, which queues."""
    return {
        "errorClass": group.error_class,
        "message": group.message,
        "count": group.count,
        "queues": list(group.queues),
        "lastFailedAt": when(group.last_failed_at),
    }
