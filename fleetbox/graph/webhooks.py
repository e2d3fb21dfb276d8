"""webhooks: Graph change notifications, from the public receiver to the inbound queues.

The receiver (``POST /api/graph/notifications`` and ``/api/graph/lifecycle`` on the admin
server) answers Graph's validation handshake (the token echoed as ``text/plain``, at most
``MAX_VALIDATION_TOKEN`` printable characters, ``nosniff``), checks ``clientState`` on every
item, stores each new notification once (replays are dropped by a dedupe key) and enqueues its
processing in the same transaction, then answers 202: milliseconds, well inside Graph's 3
seconds. Items with a wrong ``clientState`` are discarded, counted and logged (a rate-limited
line), never stored, and still answered 202: Graph takes any other answer as a failed delivery,
retries it and at last disables the subscription. A request carries at most
``MAX_ITEMS`` items; a peer sending more than ``MAX_REQUESTS_PER_SECOND`` requests a second gets
429. A malformed body (not JSON, too deep, NaN, NUL, invalid Unicode) gets 400; only a failure
to store gets 503, so Graph delivers again.

The webhooks processor turns a notification into work: a created/updated/deleted message goes
to teams-inbound or outlook-inbound; ``reauthorizationRequired`` renews the subscription,
``subscriptionRemoved`` creates it again and catches up with a delta sync, ``missed`` runs a
delta sync. :class:`Subscriptions` creates the configured subscriptions and renews them before
they expire (a scheduled task, once per tick across processes).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal
from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from fleetbox import rules
from fleetbox.config import SubscriptionSettings
from fleetbox.errors import DatabaseError, InvalidInput, PermanentError, ValidationError
from fleetbox.graph.context import GraphContext, parse
from fleetbox.models import Job
from fleetbox.payloads import WebhookEvent
from fleetbox.store import Store
from fleetbox.store.graph import Subscription

log = logging.getLogger("fleetbox.graph.webhooks")

NOTIFICATIONS_PATH = "/api/graph/notifications"
LIFECYCLE_PATH = "/api/graph/lifecycle"

#: the longest subscription Graph allows, by source, in minutes (contract 4.5), less a margin
MAX_LIFETIME_MINUTES: dict[str, int] = {"teams": 4320 - 60, "outlook": 4230 - 60}

#: a notification body larger than this is not from Graph
MAX_BODY_BYTES = 1_048_576
#: notifications in one request (Graph batches a few; a flood of forged items is cut off here)
MAX_ITEMS = 1000
#: Graph's validation tokens are short printable text; anything else is not echoed
MAX_VALIDATION_TOKEN = 1024
#: requests per second one peer may send before it is answered 429
MAX_REQUESTS_PER_SECOND = 100
#: clientState mismatches within a minute that make the receiver report itself failing (an alert)
REJECTION_BURST = 100
#: one warning line at most this often about rejected items (with the count since the last)
REJECTION_LOG_SECONDS = 10.0
_BODY_LIMITS = rules.Limits(max_payload_bytes=MAX_BODY_BYTES)
#: what a validation token may hold: printable ASCII (the receiver echoes nothing a browser renders)
VALIDATION_TOKEN_PATTERN = "^[ -~]+$"

#: text Graph sends in a notification: no NUL (PostgreSQL cannot store it; 400 like any NUL)
_Text = Annotated[str | None, Field(default=None, pattern=r"^[^\u0000]*$")]


class ChangeNotification(BaseModel):
    """One item of a notification batch, as Graph sends it: the fields the receiver reads are
    strings when present; anything else Graph adds is kept (without ``clientState``) for the job."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)

    subscription_id: _Text = Field(default=None, alias="subscriptionId", description="the subscription's id")
    client_state: _Text = Field(
        default=None,
        alias="clientState",
        description="the secret given at creation; an item with another one is discarded (still answered 202)",
    )
    change_type: _Text = Field(default=None, alias="changeType", description="created, updated or deleted")
    lifecycle_event: _Text = Field(
        default=None,
        alias="lifecycleEvent",
        description="a lifecycle notification: reauthorizationRequired, subscriptionRemoved or missed",
    )
    resource: _Text = Field(default=None, description="what changed, relative to the Graph root")
    resource_data: dict[str, Any] | None = Field(
        default=None, alias="resourceData", description="the changed resource's id and etag"
    )
    subscription_expiration: _Text = Field(default=None, alias="subscriptionExpirationDateTime")
    tenant_id: _Text = Field(default=None, alias="tenantId")


class NotificationBatch(BaseModel):
    """A change or lifecycle notification request's body: ``{"value": [item, ...]}``, at most
    :data:`MAX_ITEMS` items (more: 413), JSON of at most :data:`MAX_BODY_BYTES` bytes (more: 413),
    nested at most as deep as a payload, with no NUL, NaN or infinite number (else 400)."""

    model_config = ConfigDict(extra="allow", strict=True)

    value: list[ChangeNotification] = Field(max_length=MAX_ITEMS, description="the notifications")


def source_of(resource: str) -> Literal["teams", "outlook"]:
    lowered = resource.lower().lstrip("/")
    return "teams" if lowered.startswith(("chats", "teams")) else "outlook"


def dedupe_key(item: Mapping[str, Any]) -> str:
    """The same change delivered twice has the same key (Graph replays; order is not kept)."""
    raw = item.get("resourceData")
    data: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    parts = [
        str(item.get("subscriptionId", "")),
        str(item.get("lifecycleEvent", "")),
        str(item.get("resource", "")),
        str(item.get("changeType", "")),
        str(data.get("@odata.etag") or data.get("id") or ""),
        str(item.get("subscriptionExpirationDateTime", "")) if item.get("lifecycleEvent") else "",
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class Receiver:
    """The public endpoints Graph posts change and lifecycle notifications to."""

    def __init__(
        self,
        store: Store,
        client_state: str | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_rejected: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self._on_rejected = on_rejected
        self._client_state = client_state.encode() if client_state else None
        self._clock = clock
        #: items discarded for a wrong clientState since start (the /metrics figure)
        self.rejected_total = 0
        self._rejections: deque[float] = deque()
        self._unlogged = 0
        self._last_log = -REJECTION_LOG_SECONDS
        self._peers: dict[str, deque[float]] = {}

    def install(self, app: web.Application) -> None:
        app.router.add_post(NOTIFICATIONS_PATH, self.handle)
        app.router.add_post(LIFECYCLE_PATH, self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._flooding(request.remote or "unknown"):
            return _error(
                429, "too_many_requests", "too many notification requests from this peer", headers={"Retry-After": "1"}
            )
        token = request.query.get("validationToken")
        if token is not None:
            return _validation_answer(token)
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _error(413, "payload_too_large", "a notification body is at most 1 MiB")
        try:
            raw = await request.read()
            body = rules.parse_json_text(raw.decode("utf-8"), _BODY_LIMITS, field="body")
            # What PostgreSQL cannot store (NaN, 1e999, NUL, lone surrogates, deep nesting) is a
            # malformed notification, not a storage failure.
            rules.encode_payload(body, _BODY_LIMITS, field="body")
        except UnicodeDecodeError:
            return _error(400, "invalid_json", "the body must be UTF-8 JSON")
        except InvalidInput as exc:
            return _error(400, "invalid_json", str(exc))
        items = body.get("value") if isinstance(body, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            return _error(400, "invalid_notification", "the body must be a JSON object with a value array")
        if len(items) > MAX_ITEMS:
            return _error(413, "too_many_items", f"a request carries at most {MAX_ITEMS} notifications")
        try:
            # Graph's fields are strings: a batch with anything else is not Graph's.
            NotificationBatch.model_validate(body)
        except PydanticValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            return _error(400, "invalid_notification", f"body.{where}: {first['msg']}", field=f"body.{where}")
        accepted = rejected = duplicates = 0
        try:
            for item in items:
                if not self._trusted(item):
                    rejected += 1
                    continue
                if await self._store(item):
                    accepted += 1
                else:
                    duplicates += 1
        except DatabaseError as exc:
            log.error(
                "webhook notification not stored; Graph will deliver it again",
                extra={"event": "webhook_store_failed", "error": str(exc)},
            )
            return _error(503, "unavailable", "the notification could not be stored; deliver it again")
        finally:
            if rejected:
                self._rejected(rejected)
        # 202 also when items were discarded: any other answer makes Graph deliver them again and
        # at last disable the subscription.
        return web.json_response({"accepted": accepted, "duplicates": duplicates, "rejected": rejected}, status=202)

    def _flooding(self, peer: str) -> bool:
        now = self._clock()
        times = self._peers.setdefault(peer, deque())
        while times and times[0] <= now - 1.0:
            times.popleft()
        if len(times) >= MAX_REQUESTS_PER_SECOND:
            return True
        times.append(now)
        if len(self._peers) > 10_000:  # forget quiet peers
            for quiet in [p for p, t in self._peers.items() if not t or t[-1] <= now - 1.0]:
                del self._peers[quiet]
        return False

    def _rejected(self, count: int) -> None:
        now = self._clock()
        self.rejected_total += count
        if self._on_rejected is not None:
            self._on_rejected(count)
        self._rejections.extend([now] * min(count, REJECTION_BURST + 1))
        self._unlogged += count
        if now - self._last_log >= REJECTION_LOG_SECONDS:
            log.warning(
                "webhook notifications discarded: clientState mismatch",
                extra={"event": "webhook_rejected", "count": self._unlogged, "total": self.rejected_total},
            )
            self._last_log = now
            self._unlogged = 0

    def failing(self) -> str | None:
        """Why the receiver reports itself failing: a burst of forged notifications (an alert)."""
        now = self._clock()
        while self._rejections and self._rejections[0] <= now - 60.0:
            self._rejections.popleft()
        if len(self._rejections) > REJECTION_BURST:
            return f"over {REJECTION_BURST} notifications with a wrong clientState in the last minute"
        return None

    def _trusted(self, item: Mapping[str, Any]) -> bool:
        if self._client_state is None:
            return False  # without a configured secret nothing can be verified: refuse all
        given = item.get("clientState")
        return isinstance(given, str) and hmac.compare_digest(given.encode(), self._client_state)

    async def _store(self, item: dict[str, Any]) -> bool:
        resource = str(item.get("resource", ""))
        source = source_of(resource)
        event = WebhookEvent.model_validate(
            {
                "webhookId": str(item.get("subscriptionId") or "unknown"),
                "source": source,
                "eventType": str(item.get("lifecycleEvent") or item.get("changeType") or "unknown"),
                "data": {k: v for k, v in item.items() if k != "clientState"},  # the secret stays out of jobs
                "receivedAt": dt.datetime.now(dt.UTC),
            }
        ).to_data()
        async with self.store.transaction() as tx:
            event_id = await tx.graph.store_notification(source, dedupe_key(item), event["data"])
            if event_id is None:
                return False
            await tx.graph.enqueue_notification(event_id, {**event, "eventId": event_id})
        return True


def _error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None, field: str | None = None
) -> web.Response:
    error = {"code": code, "message": message} if field is None else {"code": code, "message": message, "field": field}
    return web.json_response({"error": error}, status=status, headers=headers)


def _validation_answer(token: str) -> web.Response:
    """The handshake: echo the (URL-decoded) token as plain text, never anything a browser renders."""
    headers = {"X-Content-Type-Options": "nosniff"}
    if not 1 <= len(token) <= MAX_VALIDATION_TOKEN or not all(" " <= c <= "~" for c in token):
        message = f"validationToken must be 1 to {MAX_VALIDATION_TOKEN} printable ASCII characters"
        return web.Response(status=400, text=message, content_type="text/plain", headers=headers)
    return web.Response(text=token, content_type="text/plain", charset="utf-8", headers=headers)


# -- the processor ------------------------------------------------------------------------


async def process_webhook(ctx: GraphContext, subscriptions: Subscriptions, job: Job) -> None:
    """Turn one stored notification into work."""
    event = parse(WebhookEvent, job)
    data = event.data
    lifecycle = data.get("lifecycleEvent")
    if lifecycle is None:
        change = str(data.get("changeType", ""))
        if change not in ("created", "updated", "deleted"):
            raise ValidationError(f"webhook: unknown changeType {change!r}")
        queue = "teams-inbound" if event.source == "teams" else "outlook-inbound"
        await _follow_up(ctx, job, "inbound", queue, {"resource": data.get("resource"), "changeType": change})
        return
    sub_id = str(data.get("subscriptionId", ""))
    if lifecycle == "reauthorizationRequired":
        await subscriptions.renew(sub_id)
    elif lifecycle == "subscriptionRemoved":
        removed = await ctx.store.graph.remove_subscription(sub_id, lifecycle)
        if removed is not None:
            await subscriptions.create(
                SubscriptionSettings(source=removed.source, resource=removed.resource, change_type=removed.change_type)
            )
            await _catch_up(ctx, job, removed.source, removed.resource, full=False)
    elif lifecycle == "missed":
        sub = await ctx.store.graph.subscription_event(sub_id, lifecycle)
        if sub is not None:
            await _catch_up(ctx, job, sub.source, sub.resource, full=True)
    else:
        raise ValidationError(f"webhook: unknown lifecycleEvent {lifecycle!r}")


async def _catch_up(ctx: GraphContext, job: Job, source: str, resource: str, *, full: bool) -> None:
    """A delta sync of what a subscription watches, for what notifications did not bring."""
    parts = resource.strip("/").split("/")
    if source == "outlook" and len(parts) >= 2 and parts[0].lower() == "users":
        folder = "inbox"
        if len(parts) >= 3 and parts[2].lower().startswith("mailfolders("):
            folder = parts[2][len("mailFolders(") :].strip("')")
        payload = {"resourceType": "messages", "userId": parts[1], "folder": folder, "fullSync": full}
    else:
        user = ctx.settings.sender
        if user is None:
            log.warning(
                "no catch-up sync: set graph.sender to the user whose chats to sync",
                extra={"event": "sync_skipped", "resource": resource},
            )
            return
        payload = {"resourceType": "chatMessages", "userId": user, "fullSync": full}
    await _follow_up(ctx, job, "sync", "sync", payload)


async def _follow_up(ctx: GraphContext, job: Job, step: str, queue: str, payload: dict[str, Any]) -> None:
    if await ctx.effect(job, step) is not None:
        return
    result = await ctx.store.graph.enqueue(queue, payload)
    await ctx.record(job, step, str(result.id), {"queue": queue})


# -- subscriptions ------------------------------------------------------------------------


class Subscriptions:
    """Creates the configured subscriptions and keeps them alive."""

    def __init__(self, ctx: GraphContext) -> None:
        self.ctx = ctx

    def _urls(self) -> tuple[str, str]:
        base = self.ctx.settings.webhook_base_url
        if not base:
            raise PermanentError("graph.webhook_base_url is not set: Graph has nowhere to send notifications")
        base = base.rstrip("/")
        return base + NOTIFICATIONS_PATH, base + LIFECYCLE_PATH

    def _expiry(self, source: str) -> dt.datetime:
        return self.ctx.clock.now() + dt.timedelta(minutes=MAX_LIFETIME_MINUTES[source])

    async def create(self, sub: SubscriptionSettings) -> str:
        """Make sure Graph notifies fleetbox of ``sub``; return the subscription's id.

        Under a PostgreSQL advisory lock on the resource (held until the row is committed), so
        appliances starting together on one database subscribe once: a subscription the database
        keeps alive is kept; one Graph has for the same resource and notification URL (a lost row,
        another installation's restart) is adopted; only otherwise is one created (Graph checks the
        receiver with its validation handshake first).
        """
        secret = self.ctx.settings.client_state
        if secret is None:
            raise PermanentError("graph.client_state is not set: notifications could not be verified")
        notify, lifecycle = self._urls()
        async with self.ctx.store.transaction() as tx:
            await tx.graph.lock_subscription(sub.source, sub.resource)
            kept = await tx.graph.live_subscription_for(sub.source, sub.resource)
            if kept is not None:
                return kept
            found = await self._in_graph(sub, notify)
            if found is not None:
                sub_id = str(found["id"])
                expires = _parse_time(found.get("expirationDateTime")) or self.ctx.clock.now()
                await tx.graph.add_subscription(sub_id, sub.source, sub.resource, sub.change_type, expires)
                log.info(
                    "graph subscription adopted",
                    extra={"event": "subscription_adopted", "subscription_id": sub_id, "resource": sub.resource},
                )
                return sub_id
            expires = self._expiry(sub.source)
            response = await self.ctx.graph.request(
                "POST",
                "/subscriptions",
                resource="subscriptions",
                json={
                    "changeType": sub.change_type,
                    "notificationUrl": notify,
                    "lifecycleNotificationUrl": lifecycle,
                    "resource": sub.resource,
                    "expirationDateTime": _iso(expires),
                    "clientState": secret.get_secret_value(),
                    "latestSupportedTlsVersion": "v1_2",
                },
            )
            created = response.json()
            sub_id = str(created["id"])
            # The lock makes a conflict impossible here; a failed commit leaves the subscription in
            # Graph, where the next check adopts it.
            await tx.graph.add_subscription(
                sub_id,
                sub.source,
                sub.resource,
                sub.change_type,
                _parse_time(created.get("expirationDateTime")) or expires,
            )
        log.info(
            "graph subscription created",
            extra={"event": "subscription_created", "subscription_id": sub_id, "resource": sub.resource},
        )
        return sub_id

    async def _in_graph(self, sub: SubscriptionSettings, notify: str) -> dict[str, Any] | None:
        """A live subscription of this app in Graph for ``sub``'s resource that notifies ``notify``."""
        url: str | None = "/subscriptions"
        want = sub.resource.strip("/").lower()
        for _ in range(100):  # pages; Graph lists a few hundred subscriptions at most per app
            if url is None:
                break
            page = (await self.ctx.graph.request("GET", url, resource="subscriptions")).json() or {}
            for item in page.get("value", []):
                if (
                    isinstance(item, dict)
                    and str(item.get("resource", "")).strip("/").lower() == want
                    and item.get("notificationUrl") == notify
                    and item.get("changeType") == sub.change_type
                    and item.get("id")
                ):
                    return item
            link = page.get("@odata.nextLink")
            url = link if isinstance(link, str) else None
        return None

    async def renew(self, sub_id: str) -> None:
        """Extend a subscription; one Graph no longer knows is created again."""
        sub = await self.ctx.store.graph.subscription(sub_id)
        if sub is None or sub.removed_at is not None:
            return
        expires = self._expiry(sub.source)
        try:
            response = await self.ctx.graph.request(
                "PATCH",
                f"/subscriptions/{quote(sub_id, safe='')}",
                resource="subscriptions",
                json={"expirationDateTime": _iso(expires)},
            )
        except PermanentError as exc:
            if exc.graph is None or exc.graph.status != 404:
                raise
            # Expired or removed in Graph: subscribe again and catch up on what was missed.
            await self.ctx.store.graph.remove_subscription(sub_id, "renewal_not_found")
            await self.create(
                SubscriptionSettings(source=sub.source, resource=sub.resource, change_type=sub.change_type)
            )
            return
        await self.ctx.store.graph.subscription_renewed(
            sub_id, _parse_time(response.json().get("expirationDateTime")) or expires
        )
        log.info("graph subscription renewed", extra={"event": "subscription_renewed", "subscription_id": sub_id})

    async def maintain(self) -> dict[str, int]:
        """Create (or adopt) missing configured subscriptions; renew those expiring soon (at start
        and as a scheduled task)."""
        have = {(s.source, s.resource) for s in await self.ctx.store.graph.live_subscriptions()}
        created = 0
        for sub in self.ctx.settings.subscriptions:
            if (sub.source, sub.resource) not in have:
                await self.create(sub)
                created += 1
        renewed = 0
        horizon = self.ctx.clock.now() + dt.timedelta(hours=self.ctx.settings.renew_before_hours)
        for s in await self.ctx.store.graph.live_subscriptions():
            if s.expires_at is not None and s.expires_at <= horizon:
                await self.renew(s.id)
                renewed += 1
        return {"created": created, "renewed": renewed}

    async def list(self) -> list[Subscription]:
        return await self.ctx.store.graph.live_subscriptions()


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
