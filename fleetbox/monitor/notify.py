"""Alert notifications out: which alert changes each configured webhook gets, recorded in the
transaction of the alert check that saw them, and the delivery jobs that will send them.

Grouping: the first change for a webhook enqueues one delivery job on the built-in queue
``alert-webhooks``, due ``group_seconds`` later; changes until it starts wait for it and go out
in the same message. A change that comes while a delivery runs gets the next job. An alert still
open ``repeat_interval_seconds`` after it was last sent is sent again (``repeat``).

Delivery goes through fleetbox's own queue, so a receiver that is down loses nothing: the job is
retried by error class, and dead-lettered with the rest when retrying cannot help.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

from fleetbox.config import AlertWebhookSettings
from fleetbox.models import Alert, JsonText
from fleetbox.store import Tx

#: The built-in queue of alert deliveries (tier high).
ALERT_QUEUE = "alert-webhooks"
#: Deliveries go before other high-tier work of the same age.
DELIVERY_PRIORITY = 1


class AlertNotifier:
    """Turns the alert changes of one check into notifications for each configured webhook."""

    def __init__(self, webhooks: Sequence[AlertWebhookSettings]) -> None:
        self._webhooks = list(webhooks)

    def apply(self, webhooks: Sequence[AlertWebhookSettings]) -> None:
        """A reload's webhooks (changes found from the next check on)."""
        self._webhooks = list(webhooks)

    async def record(self, tx: Tx, changed: Sequence[Alert], still_open: Sequence[Alert], now: dt.datetime) -> None:
        """In the alert check's transaction: ``changed`` were opened or resolved by it,
        ``still_open`` were open before and still are (candidates for a repeat)."""
        for webhook in self._webhooks:
            wanted = [a for a in changed if _wants(webhook, a)]
            notes = [(a, "opened" if a.resolved_at is None else "resolved") for a in wanted]
            candidates = [a for a in still_open if "opened" in webhook.events and _kind_wanted(webhook, a)]
            if candidates:
                last = await tx.alerting.last_notified(webhook.name, [a.id for a in candidates])
                repeat_after = dt.timedelta(seconds=webhook.repeat_interval_seconds)
                for alert in candidates:
                    sent = last.get(alert.id)
                    # An alert opened before this webhook was configured was never sent: it goes now.
                    if sent is None or now - sent >= repeat_after:
                        notes.append((alert, "repeat"))
            if not notes:
                continue
            for alert, transition in notes:
                await tx.alerting.add(webhook.name, alert.id, transition, now)
            if not await tx.alerting.delivery_waiting(ALERT_QUEUE, webhook.name):
                run_at = now + dt.timedelta(seconds=webhook.group_seconds)
                data = JsonText(json.dumps({"webhook": webhook.name}))
                await tx.jobs.enqueue(ALERT_QUEUE, data, DELIVERY_PRIORITY, run_at, None, None)


def _kind_wanted(webhook: AlertWebhookSettings, alert: Alert) -> bool:
    return not webhook.kinds or alert.kind in webhook.kinds


def _wants(webhook: AlertWebhookSettings, alert: Alert) -> bool:
    event = "opened" if alert.resolved_at is None else "resolved"
    return event in webhook.events and _kind_wanted(webhook, alert)
