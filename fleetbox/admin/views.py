"""From the store's typed results to the admin API's answers (:mod:`fleetbox.admin.answers`), and
how a stored payload is shown in them; times are ISO 8601 with offset."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fleetbox import rules
from fleetbox.admin import answers
from fleetbox.admin.answers import PREVIEW_CHARS, build
from fleetbox.models import Attempt, DeadLetter, JobInfo, QueueInfo, Tier, UndecodablePayload, iso
from fleetbox.store.audit import AuditEntry
from fleetbox.store.dead_letters import ErrorGroupRow
from fleetbox.store.jobs import ErrorGroup


def when(value: dt.datetime | None) -> str | None:
    """A time as ISO 8601 text (``None`` stays ``None``)."""
    return None if value is None else value.isoformat()


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
    return {"data": shown.value if full else None, "data_preview": shown.preview, "data_size": shown.size}


def job(info: JobInfo, *, full: bool = True) -> answers.Job:
    """A job; ``full=False`` (a list row without ``include=payload``): ``data`` is null, the preview
    and size say what it holds."""
    return build(answers.Job, _job_fields(info, full))


def _job_fields(info: JobInfo, full: bool) -> dict[str, Any]:
    return {
        "id": info.id,
        "queue": info.queue,
        "priority": info.priority,
        "state": info.state,
        **_data(info.data, full),
        "singleton_key": info.singleton_key,
        "attempts": info.attempts,
        "max_attempts": info.max_attempts,
        "run_at": when(info.run_at),
        "created_at": when(info.created_at),
        "finished_at": when(info.finished_at),
        "last_error_class": info.last_error_class,
        "last_error": info.last_error,
        "retry_of_dead_letter_id": info.dead_letter_id,
    }


def job_detail(info: JobInfo, dead: DeadLetter | None, trail: Iterable[AuditEntry]) -> answers.JobDetail:
    """A job with every attempt, its dead letter if it has one, and the operator actions on that."""
    return build(
        answers.JobDetail,
        {
            **_job_fields(info, True),
            "history": [attempt(a) for a in info.history],
            "dead_letter_id": dead.id if dead is not None else None,
            "dead_letter": dead_letter(dead) if dead is not None else None,
            "operator_actions": [audit_entry(entry) for entry in trail],
        },
    )


def attempt(a: Attempt) -> answers.Attempt:
    """One recorded attempt."""
    return build(
        answers.Attempt,
        {
            "job_id": a.job_id,
            "attempt": a.attempt,
            "queue": a.queue,
            "worker_id": a.worker_id,
            "started_at": when(a.started_at),
            "finished_at": when(a.finished_at),
            "duration_ms": a.duration_ms,
            "outcome": a.outcome,
            "error_class": a.error_class,
            "error": a.error,
        },
    )


def _history_entry(entry: Mapping[str, Any]) -> answers.HistoryEntry:
    return build(
        answers.HistoryEntry,
        {
            "attempt": entry.get("attempt"),
            "started_at": entry.get("started_at"),
            "finished_at": entry.get("finished_at"),
            "duration_ms": entry.get("duration_ms"),
            "outcome": entry.get("outcome"),
            "error_class": entry.get("error_class"),
            "error": entry.get("error"),
        },
    )


def _dead_fields(d: DeadLetter, full: bool) -> dict[str, Any]:
    history = d.history if isinstance(d.history, list | tuple) else ()
    return {
        "id": d.id,
        "job_id": d.job_id,
        "queue": d.queue,
        "priority": d.priority,
        **_data(d.data, full),
        "singleton_key": d.singleton_key,
        "error_class": d.error_class,
        "error": d.error,
        "attempts": d.attempts,
        "history": [_history_entry(h) for h in history if isinstance(h, Mapping)],
        "job_created_at": when(d.job_created_at),
        "failed_at": when(d.failed_at),
        "status": d.status.value,
        "reviewed": d.reviewed,
        "reviewed_at": when(d.reviewed_at),
        "reviewed_by": d.reviewed_by,
        "resolution_notes": d.resolution_notes,
        "retried_job_id": d.retried_job_id,
        "retried_at": when(d.retried_at),
        "discarded_at": when(d.discarded_at),
    }


def dead_letter(d: DeadLetter, *, full: bool = True) -> answers.DeadLetter:
    """A dead letter with its payload (``full=False``: only its preview and size) and the copy of
    its attempt history."""
    return build(answers.DeadLetter, _dead_fields(d, full))


def dead_letter_detail(d: DeadLetter, trail: Iterable[AuditEntry]) -> answers.DeadLetterDetail:
    """A dead letter in full with every operator action on it."""
    fields = {**_dead_fields(d, True), "operator_actions": [audit_entry(e) for e in trail]}
    return build(answers.DeadLetterDetail, fields)


def queue(q: QueueInfo) -> answers.Queue:
    """A queue and its pause flag."""
    return answers.Queue(
        name=q.name,
        tier=Tier(q.tier).name.lower(),
        paused=q.paused,
        paused_at=when(q.paused_at),
        paused_by=q.paused_by,
    )


def audit_entry(entry: AuditEntry) -> answers.OperatorAction:
    """One operator action from the audit log (who, what, when, with what notes)."""
    values = {"at": when(entry.at), "actor": entry.actor, "action": entry.action, "details": dict(entry.details)}
    return build(answers.OperatorAction, values)


def error_group(group: ErrorGroup) -> answers.ErrorGroup:
    """A queue's failed attempts of one error class."""
    return answers.ErrorGroup(
        error_class=group.error_class, count=group.count, last_at=iso(group.last_at), last_message=group.last_message
    )


def dead_group(group: ErrorGroupRow) -> answers.DeadLetterGroup:
    """Dead letters that failed the same way: error class and message, how many, which queues."""
    return answers.DeadLetterGroup(
        error_class=group.error_class,
        message=group.message,
        count=group.count,
        queues=list(group.queues),
        last_failed_at=when(group.last_failed_at),
    )
