"""Alert webhooks: the outbox of alert notifications (``alert_notifications``) and the batches
their delivery jobs take from it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from fleetbox.models import Alert
from fleetbox.store.pool import Runner


@dataclass(frozen=True, slots=True)
class Notification:
    """One alert change (or repeat) for one webhook, as a delivery job sends it."""

    id: int
    #: opened, resolved or repeat (still open after the webhook's repeat interval)
    transition: str
    notified_at: dt.datetime
    alert: Alert


class AlertOutboxStore:
    """The ``alert_notifications`` table."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def add(self, webhook: str, alert_id: int, transition: str, now: dt.datetime) -> None:
        await self._run.execute("alert_notification_add", webhook, alert_id, transition, now)

    async def last_notified(self, webhook: str, alert_ids: Sequence[int]) -> dict[int, dt.datetime]:
        """When each of these alerts was last notified to ``webhook`` (never: absent)."""
        if not alert_ids:
            return {}
        rows = await self._run.fetch("alert_notification_last", webhook, list(alert_ids))
        return {r["alert_id"]: r["at"] for r in rows}

    async def delivery_waiting(self, queue: str, webhook: str) -> bool:
        """Whether a delivery job of ``webhook`` waits to start (it will take what is waiting)."""
        return bool(await self._run.fetchval("alert_delivery_waiting", queue, webhook))

    async def take_batch(self, webhook: str, job_id: int, *, dead_letter_id: int | None = None) -> list[Notification]:
        """This job's batch: what waited for ``webhook`` when its first attempt ran (later
        attempts get the same), or, for a retry from the dead letters, the dead-lettered job's."""
        if dead_letter_id is not None:
            await self._run.execute("alert_batch_adopt", job_id, dead_letter_id)
        await self._run.execute("alert_batch_take", webhook, job_id)
        rows = await self._run.fetch("alert_batch", job_id)
        return [Notification(r["notification_id"], r["transition"], r["notified_at"], Alert.from_row(r)) for r in rows]
