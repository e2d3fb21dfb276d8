"""The messages alert webhooks send, one builder per format.

- ``json``: the Standard Webhooks specification (https://www.standardwebhooks.com): headers
  ``webhook-id`` (stable across retries, so receivers de-duplicate), ``webhook-timestamp`` (Unix
  seconds of this attempt) and ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``
  keyed with the base64 bytes after ``whsec_``; body ``{"type", "timestamp", "data": {"alerts"}}``.
- ``slack``: an incoming-webhook message (``text`` plus Block Kit sections, mrkdwn escaped).
- ``teams``: a Teams Workflows webhook message: one Adaptive Card attachment (the Office 365
  connectors' MessageCard is retired).
- ``pagerduty``: Events API v2, one event per alert: ``trigger`` (with the alert's stable
  ``dedup_key``) while it is open, ``resolve`` when it clears.

A batch gives the same body on every attempt: nothing in it depends on when it is sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fleetbox.config import AlertWebhookSettings
from fleetbox.models import iso
from fleetbox.store.alerting import Notification

#: Alert kinds that page as critical in PagerDuty (the rest are warnings).
CRITICAL_KINDS = frozenset({"no_consumer", "task_failing", "dead_letters", "schedule_late"})


@dataclass(frozen=True, slots=True)
class Request:
    """One POST of a delivery."""

    body: bytes
    headers: dict[str, str]


def build(webhook: AlertWebhookSettings, batch: Sequence[Notification], *, message_id: str, now: int) -> list[Request]:
    """The POSTs that deliver ``batch`` to ``webhook``; ``now`` (Unix seconds) dates the signature."""
    if webhook.format == "pagerduty":
        assert webhook.secret is not None  # checked by the settings
        return [_pagerduty(n, webhook.secret.get_secret_value()) for n in batch]
    if webhook.format == "slack":
        return [_json_request(_slack(batch))]
    if webhook.format == "teams":
        return [_json_request(_teams(batch))]
    assert webhook.secret is not None  # checked by the settings
    return [_standard(batch, message_id=message_id, now=now, secret=webhook.secret.get_secret_value())]


def alert_json(n: Notification) -> dict[str, Any]:
    """One notification as the json format (and the PagerDuty details) carry it."""
    a = n.alert
    return {
        "transition": n.transition,
        "alertId": a.id,
        "kind": a.kind,
        "queue": a.queue,
        "subject": a.subject,
        "message": a.message,
        "value": a.value,
        "threshold": a.threshold,
        "openedAt": iso(a.opened_at),
        # what the alert was when this change was recorded (a later resolution is its own notification)
        "resolvedAt": iso(a.resolved_at) if n.transition == "resolved" and a.resolved_at is not None else None,
        "notifiedAt": iso(n.notified_at),
    }


def summary(batch: Sequence[Notification]) -> str:
    """``fleetbox: 2 alerts opened, 1 resolved``."""
    counts: dict[str, int] = {}
    for n in batch:
        word = "resolved" if n.transition == "resolved" else "still open" if n.transition == "repeat" else "opened"
        counts[word] = counts.get(word, 0) + 1
    parts = [f"{count} {word}" for word, count in counts.items()]
    noun = "alert" if len(batch) == 1 else "alerts"
    return f"fleetbox: {len(batch)} {noun}: {', '.join(parts)}"


def _line(n: Notification) -> str:
    a = n.alert
    mark = {"opened": "OPEN", "repeat": "STILL OPEN", "resolved": "RESOLVED"}[n.transition]
    where = f" on {a.queue}" if a.queue else f" ({a.subject})" if a.subject else ""
    return f"[{mark}] {a.kind}{where}: {a.message}"


def _standard(batch: Sequence[Notification], *, message_id: str, now: int, secret: str) -> Request:
    body = _dump(
        {
            "type": "fleetbox.alerts",
            "timestamp": iso(max(n.notified_at for n in batch)),
            "data": {"summary": summary(batch), "alerts": [alert_json(n) for n in batch]},
        }
    )
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{now}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return Request(
        body,
        {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(now),
            "webhook-signature": f"v1,{signature}",
        },
    )


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn reserves these three; everything else is shown as written.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack(batch: Sequence[Notification]) -> dict[str, Any]:
    lines = [_slack_escape(_line(n)) for n in batch]
    return {
        "text": _slack_escape(summary(batch)),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_slack_escape(summary(batch))}*"}},
            # a section's text holds at most 3000 characters
            *({"type": "section", "text": {"type": "mrkdwn", "text": line[:3000]}} for line in lines[:45]),
        ],
    }


def _teams(batch: Sequence[Notification]) -> dict[str, Any]:
    facts = [{"title": _line(n).split(":", 1)[0], "value": n.alert.message} for n in batch]
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": summary(batch), "weight": "Bolder", "size": "Medium", "wrap": True},
            {"type": "FactSet", "facts": facts},
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def _pagerduty(n: Notification, routing_key: str) -> Request:
    a = n.alert
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "resolve" if n.transition == "resolved" else "trigger",
        "dedup_key": f"fleetbox-alert-{a.id}",
    }
    if n.transition != "resolved":
        event["payload"] = {
            "summary": _line(n)[:1024],
            "source": "fleetbox",
            "severity": "critical" if a.kind in CRITICAL_KINDS else "warning",
            "timestamp": iso(a.opened_at),
            "component": a.queue or a.subject or "fleetbox",
            "class": a.kind,
            "custom_details": alert_json(n),
        }
    return _json_request(event)


def _json_request(body: dict[str, Any]) -> Request:
    return Request(_dump(body), {"content-type": "application/json"})


def _dump(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
