"""The handler of the built-in queue ``alert-webhooks``: sends one webhook's batch of alert
notifications and says how a failure should be retried.

A delivery job takes its webhook's waiting notifications on its first attempt and sends the same
batch on every later one, with the same ``webhook-id`` (``fleetbox-alerts-<job id>``), so a
receiver that answered but whose answer was lost (or an appliance killed after the POST) gets a
duplicate it can recognise, never a different message. Receiver answers map to error classes:
2xx sent; 429 rate limited (its Retry-After); 408, 425 and 5xx transient (Retry-After when given);
any other 4xx permanent (dead-lettered: the receiver refuses the message, retrying cannot help);
no answer (refused, reset, timeout) a network error. The URL (which holds the token of Slack and
Teams webhooks) is never logged nor put in an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import aiohttp

from fleetbox.alerts import formats
from fleetbox.config import AlertWebhookSettings
from fleetbox.errors import NetworkError, PermanentError, RateLimitError, TransientError
from fleetbox.models import Job
from fleetbox.monitor.notify import ALERT_QUEUE
from fleetbox.rules import parse_retry_after
from fleetbox.store import Store
from fleetbox.worker.registry import Handler

log = logging.getLogger("fleetbox.alerts")

_TRANSIENT_STATUS = frozenset({408, 425})


class AlertDelivery:
    """Delivers alert notifications to the configured webhooks (one HTTP session, owned here)."""

    def __init__(self, store: Store, webhooks: Sequence[AlertWebhookSettings]) -> None:
        self._store = store
        self._webhooks = {w.name: w for w in webhooks}
        self._session: aiohttp.ClientSession | None = None

    def handlers(self) -> dict[str, Handler]:
        """The built-in queue's handler, for the appliance's registry."""
        return {ALERT_QUEUE: self.deliver}

    def apply(self, webhooks: Sequence[AlertWebhookSettings]) -> None:
        """A reload's webhooks: deliveries from now on use them."""
        self._webhooks = {w.name: w for w in webhooks}

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver(self, job: Job) -> object:
        """Send the job's batch to its webhook (raises a JobError saying how to retry)."""
        name = job.data.get("webhook")
        webhook = self._webhooks.get(name) if isinstance(name, str) else None
        if webhook is None:
            raise PermanentError(f"alert webhook {name!r:.80} is not configured (removed from [[alerts.webhooks]]?)")
        batch = await self._store.alerting.take_batch(webhook.name, job.id, dead_letter_id=job.dead_letter_id)
        if not batch:
            return {"webhook": webhook.name, "sent": 0}  # an earlier delivery took them
        requests = formats.build(webhook, batch, message_id=f"fleetbox-alerts-{job.id}", now=int(time.time()))
        for request in requests:
            await self._post(webhook, request)
        log.info(
            "alert webhook sent",
            extra={
                "event": "alert_webhook_sent",
                "webhook": webhook.name,
                "format": webhook.format,
                "job_id": job.id,
                "attempt": job.attempt,
                "alerts": [n.alert.id for n in batch],
            },
        )
        return {"webhook": webhook.name, "sent": len(batch)}

    async def _post(self, webhook: AlertWebhookSettings, request: formats.Request) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        what = f"alert webhook {webhook.name}"
        try:
            async with self._session.post(
                webhook.url.get_secret_value(),
                data=request.body,
                headers=request.headers,
                timeout=aiohttp.ClientTimeout(total=webhook.timeout_seconds),
                allow_redirects=False,
            ) as response:
                status = response.status
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                text = (await response.content.read(500)).decode("utf-8", "replace")
        except (TimeoutError, aiohttp.ClientError) as exc:
            # str(exc) can hold the URL, and with it a Slack or Teams token: only the kind is said.
            raise NetworkError(f"{what}: no answer from the receiver ({type(exc).__name__})") from None
        if 200 <= status < 300:
            return
        said = " ".join(text.split())[:200]
        if status == 429:
            raise RateLimitError(f"{what}: the receiver is throttling (HTTP 429)", retry_after=retry_after)
        if status >= 500 or status in _TRANSIENT_STATUS:
            message = f"{what}: the receiver failed (HTTP {status}) {said}".rstrip()
            raise TransientError(message, retry_after=retry_after)
        raise PermanentError(f"{what}: the receiver refused the message (HTTP {status}) {said}".rstrip())
