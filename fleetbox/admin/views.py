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
from fleetbox.cron import Tick
from fleetbox.models import (
    Alert,
    Attempt,
    DeadLetter,
    JobInfo,
    QueueInfo,
    Schedule,
    ScheduleRun,
    Thresholds,
    Tier,
    UndecodablePayload,
    iso,
)
from fleetbox.service.experiments import Comparison, Report, VariantFigures
from fleetbox.store.audit import AuditEntry
from fleetbox.store.dead_letters import ErrorGroupRow
from fleetbox.store.experiments import Epoch
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


def thresholds(t: Thresholds) -> answers.Thresholds:
    """The alert thresholds in force."""
    values = {
        "max_backlog": t.max_backlog,
        "max_failure_rate": t.max_failure_rate,
        "max_processing_time": t.max_processing_time,
        "max_dead_letter_jobs": t.max_dead_letter_jobs,
    }
    return build(answers.Thresholds, values)


def alert(a: Alert) -> answers.Alert:
    """A threshold alert (built unchecked: a kind a newer appliance on the same database wrote is
    still listed)."""
    return build(
        answers.Alert,
        {
            "id": a.id,
            "queue": a.queue,
            "subject": a.subject,
            "kind": a.kind,
            "status": a.status,
            "message": a.message,
            "value": a.value,
            "threshold": a.threshold,
            "opened_at": iso(a.opened_at),
            "resolved_at": _iso_or_none(a.resolved_at),
        },
    )


def _iso_or_none(value: dt.datetime | None) -> str | None:
    return None if value is None else iso(value)


def _schedule_fields(s: Schedule) -> dict[str, Any]:
    return {
        "name": s.name,
        "cron": s.cron,
        "queue": s.queue,
        "data": s.data,
        "priority": s.priority,
        "timezone": s.timezone,
        "enabled": s.enabled,
        "dst": s.dst,
        "catch_up": s.catch_up.value,
        "catch_up_max": s.catch_up_max,
        "overlap": s.overlap.value,
        "alert_after_seconds": s.alert_after_seconds,
        "source": s.source,
        "next_run_at": _iso_or_none(s.next_run_at),
        "last_tick": _iso_or_none(s.last_tick),
        "last_run_at": _iso_or_none(s.last_run_at),
        "last_job_id": s.last_job_id,
        "created_at": iso(s.created_at),
        "updated_at": iso(s.updated_at),
        "updated_by": s.updated_by,
    }


def schedule(s: Schedule) -> answers.Schedule:
    """A cron schedule (the admin API's and ``fleetbox schedule list --json``'s shape)."""
    return build(answers.Schedule, _schedule_fields(s))


def _tick(t: Tick) -> answers.ScheduleTick:
    return build(answers.ScheduleTick, {"at": iso(t.at), "local": t.local.isoformat(), "dst": t.dst})


def _run(r: ScheduleRun) -> answers.ScheduleRunRecord:
    values = {
        "tick": iso(r.tick),
        "fired_at": iso(r.fired_at),
        "outcome": r.outcome,
        "job_id": r.job_id,
        "worker_id": r.worker_id,
    }
    return build(answers.ScheduleRunRecord, values)


def schedule_detail(s: Schedule, upcoming: Iterable[Tick], runs: Iterable[ScheduleRun]) -> answers.ScheduleDetail:
    """A schedule with its next runs (what daylight saving did to each) and its latest runs."""
    values = {**_schedule_fields(s), "next": [_tick(t) for t in upcoming], "runs": [_run(r) for r in runs]}
    return build(answers.ScheduleDetail, values)


def _variant(v: VariantFigures) -> answers.VariantFigures:
    return build(
        answers.VariantFigures,
        {
            "label": v.label,
            "weight": v.weight,
            "jobs": v.jobs,
            "succeeded": v.succeeded,
            "dead": v.dead,
            "success_rate": v.success_rate,
            "attempts_per_success": v.attempts_per_success,
            "extra_requests": v.extra_requests,
            "time_to_success_p50_seconds": v.time_to_success_p50,
            "time_to_success_p95_seconds": v.time_to_success_p95,
            "dead_letter_rate": v.dead_rate,
        },
    )


def _comparison(c: Comparison) -> answers.Comparison:
    values = {"label": c.label, "control": c.control, "p_value": c.p_value, "verdict": c.verdict}
    return build(answers.Comparison, values)


def _epoch(e: Epoch) -> answers.WeightEpoch:
    values = {
        "started_at": iso(e.started_at),
        "weights": e.weights,
        "source": e.source,
        "reason": e.reason,
        "actor": e.actor,
    }
    return build(answers.WeightEpoch, values)


def retry_report(r: Report) -> answers.RetryReport:
    """A queue's retry experiment (the admin API's and ``fleetbox retry-report --json``'s shape)."""
    return build(
        answers.RetryReport,
        {
            "queue": r.queue,
            "since": _iso_or_none(r.since),
            "mode": r.mode,
            "variants": [_variant(v) for v in r.variants],
            "comparisons": [_comparison(c) for c in r.comparisons],
            "verdict": r.verdict,
            "history": [_epoch(e) for e in r.history],
        },
    )
