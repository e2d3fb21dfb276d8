"""Change-notification routes and delivery of the Graph simulator (contract 4.x).

``POST /subscriptions`` performs the real validation handshake (a POST with ``?validationToken=``
holding URL-special characters, ``text/plain``, answered within the validation timeout with exactly
the decoded token) to the notification URL and the lifecycle URL before answering 201. Lifetimes are
enforced per resource (Outlook messages 4230 minutes, Teams chatMessage 4320, and a Teams
subscription beyond one hour needs a lifecycleNotificationUrl).

Delivery POSTs ``{"value": [...]}`` batches with the 3 s timeout Graph uses and records each
:class:`~fleetbox.graph.sim_common.Delivery`. Seeded and posted changes notify matching
subscriptions automatically when ``notify_on_change`` is set, with a few redeliveries on failure.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from yarl import URL

from fleetbox.graph.sim_common import (
    BODY,
    Delivery,
    GraphError,
    LifecycleEvent,
    iso,
    json_response,
    monotonic,
    parse_iso,
    read_json,
    stable_guid,
    utc_now,
)

if TYPE_CHECKING:
    from fleetbox.graph.sim_state import SimState

CHANGE_TYPES = ("created", "updated", "deleted")
MAIL_MAX_MINUTES = 4230
TEAMS_MAX_MINUTES = 4320
TEAMS_WITHOUT_LIFECYCLE_MINUTES = 60
TLS_VERSIONS = ("v1_0", "v1_1", "v1_2", "v1_3")
VALIDATION_FAILED = (
    "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."
)
#: characters a receiver must URL-decode correctly (contract 4.2)
_TOKEN_SUFFIX = " a b/c+d?e&f=g%h"

_MAIL = re.compile(
    r"^(?:users/(?P<user>[^/]+)|me)/(?:mailfolders(?:\('(?P<f1>[^']+)'\)|/(?P<f2>[^/]+))/)?messages$", re.IGNORECASE
)
_CHAT = re.compile(r"^chats(?:\('(?P<c1>[^']+)'\)|/(?P<c2>[^/]+))/messages$", re.IGNORECASE)
_ALL_CHATS = re.compile(r"^(?:users/[^/]+/)?chats/getallmessages$", re.IGNORECASE)
_CHANNEL = re.compile(
    r"^teams(?:\('(?P<t1>[^']+)'\)|/(?P<t2>[^/]+))/channels(?:\('(?P<ch1>[^']+)'\)|/(?P<ch2>[^/]+))/messages$",
    re.IGNORECASE,
)
_ALL_CHANNELS = re.compile(r"^teams/getallmessages$", re.IGNORECASE)


@dataclass(frozen=True)
class Scope:
    """What a subscription's resource covers; None fields match anything."""

    kind: str  # "mail" | "chat" | "channel"
    user: str | None = None
    folder: str | None = None
    chat_id: str | None = None
    team: str | None = None
    channel: str | None = None

    @property
    def max_minutes(self) -> int:
        return MAIL_MAX_MINUTES if self.kind == "mail" else TEAMS_MAX_MINUTES


def parse_resource(resource: str, me: str) -> Scope:
    """The scope of a subscription resource string, or 400 for one the simulator does not model."""
    path = resource.split("?", 1)[0].strip().lstrip("/")
    if m := _MAIL.match(path):
        folder = m["f1"] or m["f2"]
        return Scope("mail", user=(m["user"] or me).lower(), folder=folder.lower() if folder else None)
    if _ALL_CHATS.match(path):
        return Scope("chat")
    if m := _CHAT.match(path):
        return Scope("chat", chat_id=m["c1"] or m["c2"])
    if _ALL_CHANNELS.match(path):
        return Scope("channel")
    if m := _CHANNEL.match(path):
        return Scope("channel", team=m["t1"] or m["t2"], channel=m["ch1"] or m["ch2"])
    raise GraphError(
        400,
        "InvalidRequest",
        f"Resource '{resource}' is not supported here: the simulator models Outlook messages and Teams chat "
        "and channel messages.",
    )


def _check_url(sim: SimState, value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise GraphError(400, "InvalidRequest", f"{name} is required.")
    url = URL(value)
    allowed = ("https", "http") if sim.allow_http_notification_urls else ("https",)
    if url.scheme not in allowed or not url.host:
        raise GraphError(400, "InvalidRequest", f"The {name} must be a valid https URL: {value!r}.")
    return value


def _live(sim: SimState, subscription_id: str) -> dict[str, Any] | None:
    sub = sim.subscriptions.get(subscription_id)
    if sub is not None and parse_iso(sub["expirationDateTime"], field_name="expirationDateTime") <= utc_now():
        del sim.subscriptions[subscription_id]
        sim.reauthorization_required.discard(subscription_id)
        return None
    return sub


def _check_expiration(scope: Scope, value: object, has_lifecycle: bool) -> dt.datetime:
    expires = parse_iso(value, field_name="expirationDateTime")
    minutes = (expires - utc_now()).total_seconds() / 60
    if minutes <= 0:
        raise GraphError(400, "InvalidRequest", "Subscription expiration must be in the future.")
    if minutes > scope.max_minutes + 1:
        code = "ExtensionError" if scope.kind == "mail" else "InvalidRequest"
        raise GraphError(400, code, f"Subscription expiration can only be {scope.max_minutes} minutes in the future.")
    if scope.kind != "mail" and minutes > TEAMS_WITHOUT_LIFECYCLE_MINUTES and not has_lifecycle:
        raise GraphError(
            400,
            "InvalidRequest",
            "lifecycleNotificationUrl is a required property for subscription creation on this resource when the "
            "expirationDateTime value is set to greater than 1 hour",
        )
    return expires


async def _validate(sim: SimState, url: str) -> None:
    """The validation handshake against one receiver URL (raises 400 on failure)."""
    token = secrets.token_urlsafe(12) + _TOKEN_SUFFIX
    target = URL(url).update_query(validationToken=token)
    try:
        async with sim.http.post(
            target,
            data=b"",
            headers={"Content-Type": "text/plain; charset=utf-8"},
            timeout=aiohttp.ClientTimeout(total=sim.validation_timeout_seconds),
            ssl=sim.notification_ssl_context() if target.scheme == "https" else False,
        ) as response:
            text = await response.text()
            ok = response.status == 200 and response.content_type == "text/plain" and text == token
    except TimeoutError:
        raise GraphError(400, "InvalidRequest", "Subscription validation request timed out.") from None
    except aiohttp.ClientError as exc:
        raise GraphError(400, "InvalidRequest", f"{VALIDATION_FAILED} ({type(exc).__name__}: {exc})") from None
    if not ok:
        raise GraphError(400, "ValidationError", VALIDATION_FAILED)


async def create(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``POST /subscriptions`` (201 after both URLs pass validation)."""
    info = sim.authorize(request)
    payload = read_json(request[BODY])
    change_type = payload.get("changeType")
    kinds = str(change_type).split(",") if isinstance(change_type, str) else []
    if not kinds or any(k.strip() not in CHANGE_TYPES for k in kinds):
        raise GraphError(400, "InvalidRequest", f"changeType must be a comma-separated subset of {CHANGE_TYPES}.")
    notification_url = _check_url(sim, payload.get("notificationUrl"), "notificationUrl")
    lifecycle_url = payload.get("lifecycleNotificationUrl")
    if lifecycle_url is not None:
        lifecycle_url = _check_url(sim, lifecycle_url, "lifecycleNotificationUrl")
    resource = payload.get("resource")
    if not isinstance(resource, str) or not resource:
        raise GraphError(400, "InvalidRequest", "resource is required.")
    scope = parse_resource(resource, info.subject)
    expires = _check_expiration(scope, payload.get("expirationDateTime"), lifecycle_url is not None)
    client_state = payload.get("clientState")
    if client_state is not None and (not isinstance(client_state, str) or len(client_state) > 255):
        raise GraphError(400, "InvalidRequest", "clientState must be a string of at most 255 characters.")
    if payload.get("includeResourceData") and not (
        payload.get("encryptionCertificate") and payload.get("encryptionCertificateId")
    ):
        raise GraphError(
            400, "InvalidRequest", "includeResourceData needs encryptionCertificate and encryptionCertificateId."
        )
    tls = payload.get("latestSupportedTlsVersion", "v1_2")
    if tls not in TLS_VERSIONS:
        raise GraphError(400, "InvalidRequest", f"latestSupportedTlsVersion must be one of {TLS_VERSIONS}.")
    await _validate(sim, notification_url)
    if lifecycle_url is not None:
        await _validate(sim, lifecycle_url)
    sub = {
        "id": str(uuid.uuid4()),
        "resource": resource,
        "applicationId": sim.client_id,
        "changeType": ",".join(k.strip() for k in kinds),
        "clientState": client_state,
        "notificationUrl": notification_url,
        "notificationQueryOptions": None,
        "lifecycleNotificationUrl": lifecycle_url,
        "expirationDateTime": iso(expires, 7),
        "creatorId": stable_guid("user", info.subject),
        "includeResourceData": bool(payload.get("includeResourceData", False)),
        "latestSupportedTlsVersion": tls,
        "encryptionCertificate": payload.get("encryptionCertificate"),
        "encryptionCertificateId": payload.get("encryptionCertificateId"),
        "notificationUrlAppId": None,
    }
    sim.subscriptions[sub["id"]] = sub
    return json_response({"@odata.context": f"{sim.base_url}/$metadata#subscriptions/$entity", **sub}, status=201)


def _get(sim: SimState, request: web.Request) -> dict[str, Any]:
    sim.authorize(request)
    sub = _live(sim, request.match_info["subscription_id"])
    if sub is None:
        raise GraphError(
            404, "ResourceNotFound", f"The object was not found: subscription {request.match_info['subscription_id']}."
        )
    return sub


async def get_one(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``GET /subscriptions/{id}``."""
    sub = _get(sim, request)
    return json_response({"@odata.context": f"{sim.base_url}/$metadata#subscriptions/$entity", **sub})


async def list_all(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``GET /subscriptions``: the live subscriptions of this app."""
    sim.authorize(request)
    live = [sub for sid in list(sim.subscriptions) if (sub := _live(sim, sid)) is not None]
    return json_response({"@odata.context": f"{sim.base_url}/$metadata#subscriptions", "value": live})


async def update(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``PATCH /subscriptions/{id}`` with a new expirationDateTime (200; 404 once expired or removed)."""
    sub = _get(sim, request)
    payload = read_json(request[BODY])
    if "lifecycleNotificationUrl" in payload:
        raise GraphError(
            400,
            "InvalidRequest",
            "lifecycleNotificationUrl can't be added by updating; delete and re-create the subscription.",
        )
    extra = sorted(set(payload) - {"expirationDateTime"})
    if extra or "expirationDateTime" not in payload:
        raise GraphError(400, "InvalidRequest", f"Only expirationDateTime can be updated (got {sorted(payload)}).")
    scope = parse_resource(sub["resource"], "")
    expires = _check_expiration(scope, payload["expirationDateTime"], sub["lifecycleNotificationUrl"] is not None)
    sub["expirationDateTime"] = iso(expires, 7)
    sim.reauthorization_required.discard(sub["id"])
    return json_response({"@odata.context": f"{sim.base_url}/$metadata#subscriptions/$entity", **sub})


async def delete(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``DELETE /subscriptions/{id}`` (204)."""
    sub = _get(sim, request)
    del sim.subscriptions[sub["id"]]
    sim.reauthorization_required.discard(sub["id"])
    return web.Response(status=204)


async def reauthorize(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``POST /subscriptions/{id}/reauthorize`` (204)."""
    sub = _get(sim, request)
    sim.reauthorization_required.discard(sub["id"])
    return web.Response(status=204)


async def _post(sim: SimState, subscription_id: str, url: str, payload: dict[str, Any]) -> Delivery:
    start = monotonic()
    target = URL(url)
    try:
        async with sim.http.post(
            target,
            json=payload,
            timeout=aiohttp.ClientTimeout(total=sim.delivery_timeout_seconds),
            ssl=sim.notification_ssl_context() if target.scheme == "https" else False,
        ) as response:
            text = await response.text()
            delivery = Delivery(subscription_id, url, payload, response.status, monotonic() - start, text)
    except TimeoutError:
        delivery = Delivery(
            subscription_id,
            url,
            payload,
            0,
            monotonic() - start,
            "",
            timed_out=True,
            error=f"no answer within {sim.delivery_timeout_seconds} s",
        )
    except aiohttp.ClientError as exc:
        delivery = Delivery(
            subscription_id, url, payload, 0, monotonic() - start, "", error=f"{type(exc).__name__}: {exc}"
        )
    sim.deliveries.append(delivery)
    return delivery


def _require(sim: SimState, subscription_id: str) -> dict[str, Any]:
    sub = _live(sim, subscription_id)
    if sub is None:
        raise KeyError(f"no live subscription {subscription_id!r}")
    return sub


async def deliver(
    sim: SimState, subscription_id: str, items: list[dict[str, Any]] | None, *, client_state: str | None
) -> Delivery:
    """POST a change-notification batch (see :meth:`SimState.deliver`)."""
    sub = _require(sim, subscription_id)
    base = {
        "subscriptionId": sub["id"],
        "subscriptionExpirationDateTime": sub["expirationDateTime"],
        "clientState": sub["clientState"] if client_state is None else client_state,
        "changeType": sub["changeType"].split(",")[0],
        "resource": sub["resource"],
        "tenantId": sim.tenant,
    }
    value = [{"id": secrets.token_urlsafe(9), **base, **item} for item in (items if items is not None else [{}])]
    return await _post(sim, sub["id"], sub["notificationUrl"], {"value": value})


async def lifecycle(sim: SimState, subscription_id: str, event: LifecycleEvent) -> Delivery:
    """POST a lifecycle notification (see :meth:`SimState.lifecycle`)."""
    sub = _require(sim, subscription_id)
    if not sub["lifecycleNotificationUrl"]:
        raise ValueError(f"subscription {subscription_id!r} has no lifecycleNotificationUrl")
    if event is LifecycleEvent.MISSED and parse_resource(sub["resource"], "").kind != "mail":
        raise ValueError("Graph sends 'missed' only for Outlook resources")
    if event is LifecycleEvent.SUBSCRIPTION_REMOVED:
        del sim.subscriptions[sub["id"]]
        sim.reauthorization_required.discard(sub["id"])
    elif event is LifecycleEvent.REAUTHORIZATION_REQUIRED:
        sim.reauthorization_required.add(sub["id"])
    item = {
        "subscriptionId": sub["id"],
        "subscriptionExpirationDateTime": sub["expirationDateTime"],
        "tenantId": sim.tenant,
        "clientState": sub["clientState"],
        "lifecycleEvent": event.value,
    }
    return await _post(sim, sub["id"], sub["lifecycleNotificationUrl"], {"value": [item]})


async def _auto_deliver(sim: SimState, subscription_id: str, item: dict[str, Any]) -> None:
    """Deliver one automatic notification, redelivering with backoff (1, 2, 4 s...) while it fails."""
    item = {"id": secrets.token_urlsafe(9), **item}  # a redelivery carries the same notification id
    for attempt in range(sim.notification_redeliveries + 1):
        if _live(sim, subscription_id) is None:
            return
        delivery = await deliver(sim, subscription_id, [item], client_state=None)
        if delivery.ok:
            return
        if attempt < sim.notification_redeliveries:
            await asyncio.sleep(2**attempt)


def _notify(sim: SimState, matches: list[str], change: str, item: dict[str, Any]) -> None:
    if not sim.notify_on_change:
        return
    for sid in matches:
        sub = _live(sim, sid)
        if sub is not None and change in sub["changeType"].split(","):
            sim.spawn(_auto_deliver(sim, sid, {"changeType": change, **item}), f"graph-simulator-notify-{sid}")


def _matching(sim: SimState, kind: str, **fields: str) -> list[str]:
    found = []
    for sid, sub in sim.subscriptions.items():
        scope = parse_resource(sub["resource"], "")
        if scope.kind == kind and all(getattr(scope, k) in (None, v) for k, v in fields.items()):
            found.append(sid)
    return found


def notify_mail(sim: SimState, user: str, folder: str, message: dict[str, Any], change: str) -> None:
    """Notify subscriptions covering ``user``'s ``folder`` of a message change."""
    odata_id = f"Users/{user}/Messages/{message['id']}"
    item = {
        "resource": odata_id,
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Message",
            "@odata.id": odata_id,
            "@odata.etag": message.get("@odata.etag"),
            "id": message["id"],
        },
    }
    _notify(sim, _matching(sim, "mail", user=user, folder=folder), change, item)


def notify_chat(sim: SimState, message: dict[str, Any], change: str) -> None:
    """Notify subscriptions covering the message's chat."""
    odata_id = f"chats('{message['chatId']}')/messages('{message['id']}')"
    item = {
        "resource": odata_id,
        "resourceData": {"id": message["id"], "@odata.type": "#Microsoft.Graph.chatMessage", "@odata.id": odata_id},
    }
    _notify(sim, _matching(sim, "chat", chat_id=message["chatId"]), change, item)


def notify_channel(sim: SimState, message: dict[str, Any], change: str) -> None:
    """Notify subscriptions covering the message's channel."""
    ident = message["channelIdentity"]
    odata_id = f"teams('{ident['teamId']}')/channels('{ident['channelId']}')/messages('{message['id']}')"
    item = {
        "resource": odata_id,
        "resourceData": {"id": message["id"], "@odata.type": "#Microsoft.Graph.chatMessage", "@odata.id": odata_id},
    }
    _notify(sim, _matching(sim, "channel", team=ident["teamId"], channel=ident["channelId"]), change, item)


ROUTES = [
    ("POST", "/v1.0/subscriptions", create),
    ("GET", "/v1.0/subscriptions", list_all),
    ("GET", "/v1.0/subscriptions/{subscription_id}", get_one),
    ("PATCH", "/v1.0/subscriptions/{subscription_id}", update),
    ("DELETE", "/v1.0/subscriptions/{subscription_id}", delete),
    ("POST", "/v1.0/subscriptions/{subscription_id}/reauthorize", reauthorize),
]
