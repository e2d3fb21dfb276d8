"""What Microsoft Graph delivery keeps in the database: what jobs created in Graph, resumable
uploads, received webhook notifications, subscriptions, fetched messages, sync state and
rate-limit events."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fleetbox.models import EnqueueResult
from fleetbox.store.pool import Runner


@dataclass(frozen=True, slots=True)
class Effect:
    """What an earlier attempt of a job created in Graph for one step."""

    graph_id: str | None
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Upload:
    """A large upload in progress (``url`` is pre-authenticated: a secret, never logged)."""

    url: str
    total_bytes: int
    next_offset: int
    expires_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Subscription:
    """A change-notification subscription kept alive in Graph."""

    id: str
    source: str
    resource: str
    change_type: str
    expires_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    renewed_at: dt.datetime | None = None
    removed_at: dt.datetime | None = None
    last_event: str | None = None


@dataclass(frozen=True, slots=True)
class RateEventRow:
    """A rate-limit wait or a throttled request (``at`` in epoch seconds)."""

    resource: str
    at: float
    event: str
    wait_ms: float | None
    retry_after_ms: float | None


@dataclass(frozen=True, slots=True)
class PauseRow:
    """A throttled Graph resource (``key`` None: all of it) that rests until ``until`` (epoch seconds)."""

    resource: str
    key: str | None
    until: float


def _subscription(row: Any) -> Subscription:
    return Subscription(**{k: row[k] for k in row.keys()})  # noqa: SIM118 — asyncpg records


class GraphStore:
    """The Graph tables."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    # -- effects and uploads ----------------------------------------------------------------

    async def effect(self, job_id: int, step: str) -> Effect | None:
        row = await self._run.fetchrow("graph_effect_get", job_id, step)
        return None if row is None else Effect(row["graph_id"], row["detail"])

    async def record_effect(
        self, job_id: int, step: str, graph_id: str | None, detail: Mapping[str, Any] | None
    ) -> None:
        """Recorded the moment Graph answered, before the job completes; a second write keeps the first."""
        await self._run.execute("graph_effect_put", job_id, step, graph_id, dict(detail) if detail else None)

    async def upload(self, job_id: int) -> Upload | None:
        row = await self._run.fetchrow("graph_upload_get", job_id)
        if row is None:
            return None
        return Upload(row["upload_url"], int(row["total_bytes"]), int(row["next_offset"]), row["expires_at"])

    async def save_upload(self, job_id: int, url: str, total: int, offset: int, expires: dt.datetime | None) -> None:
        await self._run.execute("graph_upload_put", job_id, url, total, offset, expires)

    async def upload_progress(self, job_id: int, offset: int) -> None:
        await self._run.execute("graph_upload_progress", job_id, offset)

    async def forget_upload(self, job_id: int) -> None:
        await self._run.execute("graph_upload_done", job_id)

    # -- webhooks ---------------------------------------------------------------------------

    async def store_notification(self, source: str, dedupe_key: str, data: Mapping[str, Any]) -> int | None:
        """Store one delivered notification; None for a replay of one stored before."""
        value = await self._run.fetchval("webhook_store", source, dedupe_key, dict(data))
        return None if value is None else int(value)

    async def enqueue_notification(self, event_id: int, payload: Mapping[str, Any]) -> int:
        """The processing job of a stored notification (on the webhooks queue), linked to it."""
        return int(await self._run.fetchval("webhook_enqueue", event_id, dict(payload)))

    async def enqueue(self, queue: str, payload: Mapping[str, Any], singleton_key: str | None = None) -> EnqueueResult:
        """A follow-up job a processor starts, through the SQL function ``enqueue``."""
        row = await self._run.fetchrow("graph_enqueue", queue, dict(payload), singleton_key)
        assert row is not None
        return EnqueueResult(id=row["job_id"], created=row["created"])

    # -- subscriptions ----------------------------------------------------------------------

    async def add_subscription(
        self, sub_id: str, source: str, resource: str, change_type: str, expires: dt.datetime
    ) -> bool:
        """Record a new subscription; False when another process keeps one for the resource."""
        return (
            await self._run.fetchval("subscription_insert", sub_id, source, resource, change_type, expires) is not None
        )

    async def lock_subscription(self, source: str, resource: str) -> None:
        """Wait for, then hold until the transaction ends, the right to subscribe to ``resource``
        (a transaction-level advisory lock: call it inside ``Store.transaction()``)."""
        await self._run.execute("subscription_lock", source, resource)

    async def live_subscription_for(self, source: str, resource: str) -> str | None:
        value = await self._run.fetchval("subscription_live_for", source, resource)
        return None if value is None else str(value)

    async def subscription(self, sub_id: str) -> Subscription | None:
        row = await self._run.fetchrow("subscription_get", sub_id)
        return None if row is None else _subscription(row)

    async def live_subscriptions(self) -> list[Subscription]:
        return [_subscription(r) for r in await self._run.fetch("subscriptions_live")]

    async def subscription_renewed(self, sub_id: str, expires: dt.datetime) -> None:
        await self._run.execute("subscription_renewed", sub_id, expires)

    async def remove_subscription(self, sub_id: str, event: str) -> Subscription | None:
        """The subscription is gone in Graph: stop renewing it (None: it was removed already)."""
        row = await self._run.fetchrow("subscription_remove", sub_id, event)
        return None if row is None else _subscription(row)

    async def subscription_event(self, sub_id: str, event: str) -> Subscription | None:
        row = await self._run.fetchrow("subscription_event", sub_id, event)
        return None if row is None else _subscription(row)

    # -- inbound messages and sync ----------------------------------------------------------

    async def save_message(
        self, source: str, container: str, graph_id: str, data: Mapping[str, Any], deleted: bool
    ) -> bool:
        """A message fetched from Graph; True when it was new."""
        return bool(await self._run.fetchval("inbound_upsert", source, container, graph_id, dict(data), deleted))

    async def mark_message_removed(self, source: str, graph_id: str) -> None:
        await self._run.execute("inbound_mark_removed", source, graph_id)

    async def last_delta_link(self, resource: str, scope: str) -> str | None:
        value = await self._run.fetchval("sync_last_delta_link", resource, scope)
        return None if value is None else str(value)

    async def sync_started(self, resource: str, scope: str, full: bool) -> int:
        return int(await self._run.fetchval("sync_started", resource, scope, full))

    async def sync_finished(
        self, history_id: int, delta_link: str | None, items: int | None, error: str | None
    ) -> None:
        await self._run.execute("sync_finished", history_id, delta_link, items, error)

    # -- rate events ------------------------------------------------------------------------

    async def save_pause(self, pause: PauseRow) -> None:
        """Record that ``pause.resource`` (``pause.key``) rests until ``pause.until``, for every appliance."""
        await self._run.execute("save_graph_pause", pause.resource, pause.key or "", pause.until)

    async def live_pauses(self, now: float) -> list[PauseRow]:
        """The pauses not over at ``now`` (epoch seconds)."""
        rows = await self._run.fetch("live_graph_pauses", now)
        return [PauseRow(r["resource"], r["key"] or None, float(r["until"])) for r in rows]

    async def forget_pauses(self, before: float) -> None:
        """Delete the pauses over before ``before`` (epoch seconds)."""
        await self._run.execute("delete_graph_pauses_before", before)

    async def write_rate_events(self, events: Sequence[RateEventRow]) -> None:
        await self._run.execute(
            "insert_rate_events",
            [e.resource for e in events],
            [e.at for e in events],
            [e.event for e in events],
            [e.wait_ms for e in events],
            [e.retry_after_ms for e in events],
        )
