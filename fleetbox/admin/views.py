"""The JSON shapes of the admin API (camelCase, as in the spec); times are ISO 8601 with offset."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from fleetbox.models import Attempt, DeadLetter, JobInfo, QueueInfo, Tier, UndecodablePayload, iso
from fleetbox.store.audit import AuditEntry
from fleetbox.store.jobs import ErrorGroup


def when(value: dt.datetime | None) -> str | None:
    """A time as ISO 8601 text (``None`` stays ``None``)."""
    return None if value is None else value.isoformat()


def payload(data: object) -> object:
    """A stored payload as JSON: one that cannot be decoded is described, never sent."""
    if isinstance(data, UndecodablePayload):
        return {"undecodable": True, "reason": data.reason, "size": data.size}
    return data


def job(info: JobInfo) -> dict[str, Any]:
    """A job in a list."""
    return {
        "id": info.id,
        "queue": info.queue,
        "priority": info.priority,
        "state": info.state.value,
        "data": payload(info.data),
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


def dead_letter(d: DeadLetter) -> dict[str, Any]:
    """A dead letter with its payload and the copy of its attempt history."""
    return {
        "id": d.id,
        "jobId": d.job_id,
        "queue": d.queue,
        "priority": d.priority,
        "data": payload(d.data),
        "singletonKey": d.singleton_key,
        "errorClass": d.error_class,
        "error": d.error,
        "attempts": d.attempts,
        "history": [_history_entry(h) for h in d.history],
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
    return {"errorClass": group.error_class, "count": group.count, "lastAt": iso(group.last_at),
            "lastMessage": group.last_message}  # fmt: skip
