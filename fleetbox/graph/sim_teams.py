"""Teams routes of the Graph simulator: chat and channel messages, activity-feed notifications.

Contract 3.1/3.2: a message POST needs a delegated token (an app-only one gets 401 "only for import
purposes"), answers 201 with the chatMessage (id = creation time in ms), and is throttled per chat
or channel, per user and per tenant (:class:`~fleetbox.graph.sim_common.TeamsLimits`).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from fleetbox.graph import sim_webhooks
from fleetbox.graph.sim_common import (
    ARRIVAL,
    BODY,
    MAX_CHAT_MESSAGE_BYTES,
    ActivityNotification,
    GraphError,
    TokenInfo,
    TokenKind,
    iso,
    json_response,
    monotonic,
    read_json,
    stable_guid,
)

if TYPE_CHECKING:
    from fleetbox.graph.sim_state import SimState


def _json(data: dict[str, Any], status: int) -> web.Response:
    return json_response(data, status=status)


IMPORT_ONLY = (
    "Message POST is allowed in application-only context only for import purposes. Refer to "
    "https://docs.microsoft.com/microsoftteams/platform/graph-api/import-messages/import-external-messages-to-teams "
    "for more details."
)
_THREAD_ID = re.compile(r"^19:[^@/]+@[A-Za-z0-9.]+$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ATTACHMENT_TAG = re.compile(r"<attachment\s+id=\\?[\"']([^\"'\\]+)\\?[\"']", re.IGNORECASE)
CONTENT_TYPES = ("text", "html")
IMPORTANCES = ("normal", "high", "urgent")
RECIPIENT_TYPES = {
    "microsoft.graph.aadUserNotificationRecipient": ("userId",),
    "microsoft.graph.chatMembersNotificationRecipient": ("chatId",),
    "microsoft.graph.teamMembersNotificationRecipient": ("teamId",),
    "microsoft.graph.channelMembersNotificationRecipient": ("teamId", "channelId"),
}


def _chat_id(request: web.Request) -> str:
    chat_id = request.match_info["chat_id"]
    if not _THREAD_ID.match(chat_id):
        raise GraphError(404, "NotFound", f"Chat '{chat_id}' was not found.")
    return chat_id


def _team_channel(request: web.Request) -> tuple[str, str]:
    team, channel = request.match_info["team_id"], request.match_info["channel_id"]
    if not _GUID.match(team):
        raise GraphError(404, "NotFound", f"Team '{team}' was not found.")
    if not _THREAD_ID.match(channel):
        raise GraphError(404, "NotFound", f"Channel '{channel}' was not found.")
    return team, channel


def _sender(sim: SimState, upn: str, name: str | None = None) -> dict[str, Any]:
    return {
        "application": None,
        "device": None,
        "user": {
            "@odata.type": "#microsoft.graph.teamworkUserIdentity",
            "id": stable_guid("user", upn),
            "displayName": name or upn.split("@", 1)[0],
            "userIdentityType": "aadUser",
            "tenantId": sim.tenant,
        },
    }


def _validated_content(payload: dict[str, Any]) -> dict[str, Any]:
    """Check a chatMessage POST body (body, importance, size, attachment references) and return its fields."""
    body = payload.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("content"), str):
        raise GraphError(400, "BadRequest", "body.content is required and must be a string.")
    content_type = str(body.get("contentType", "text")).lower()
    if content_type not in CONTENT_TYPES:
        raise GraphError(
            400, "BadRequest", f"Invalid value '{body.get('contentType')}' for body.contentType: use text or html."
        )
    importance = str(payload.get("importance", "normal")).lower()
    if importance not in IMPORTANCES:
        raise GraphError(
            400,
            "BadRequest",
            f"Invalid value '{payload.get('importance')}' for importance: use normal, high or urgent.",
        )
    content: str = body["content"]
    if len(content.encode()) > MAX_CHAT_MESSAGE_BYTES:
        raise GraphError(
            413,
            "RequestEntityTooLarge",
            f"The message body is {len(content.encode())} bytes; a Teams message holds about 28 KB.",
        )
    attachments = payload.get("attachments", [])
    mentions = payload.get("mentions", [])
    if not isinstance(attachments, list) or not all(isinstance(a, dict) and a.get("id") for a in attachments):
        raise GraphError(400, "BadRequest", "attachments must be a list of objects, each with an id.")
    if not isinstance(mentions, list):
        raise GraphError(400, "BadRequest", "mentions must be a list.")
    referenced = set(_ATTACHMENT_TAG.findall(content))
    declared = {str(a["id"]) for a in attachments}
    if referenced != declared:
        missing = sorted(declared ^ referenced)
        raise GraphError(
            400,
            "BadRequest",
            f'Each attachment must be referenced in the body by <attachment id="..."> and vice versa: {missing}',
        )
    return {
        "body": {"contentType": content_type, "content": content},
        "importance": importance,
        "attachments": attachments,
        "mentions": mentions,
        "subject": payload.get("subject"),
        "hostedContents": payload.get("hostedContents"),
    }


def new_message(
    sim: SimState,
    fields: dict[str, Any],
    sender: dict[str, Any],
    *,
    chat_id: str | None = None,
    channel: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """A complete chatMessage, with a fresh millisecond-epoch id."""
    mid = sim.next_message_id()
    created = iso(dt.datetime.fromtimestamp(int(mid) / 1000, dt.UTC))
    message: dict[str, Any] = {
        "id": mid,
        "replyToId": None,
        "etag": mid,
        "messageType": "message",
        "createdDateTime": created,
        "lastModifiedDateTime": created,
        "lastEditedDateTime": None,
        "deletedDateTime": None,
        "subject": fields.get("subject"),
        "summary": None,
        "chatId": chat_id,
        "importance": fields["importance"],
        "locale": "en-us",
        "webUrl": None,
        "channelIdentity": None,
        "policyViolation": None,
        "eventDetail": None,
        "from": sender,
        "body": fields["body"],
        "attachments": fields["attachments"],
        "mentions": fields["mentions"],
        "reactions": [],
        "messageHistory": [],
    }
    if channel is not None:
        team, channel_id = channel
        message["channelIdentity"] = {"teamId": team, "channelId": channel_id}
        message["webUrl"] = (
            f"https://teams.microsoft.com/l/message/{quote(channel_id, safe='')}/{mid}"
            f"?groupId={team}&tenantId={sim.tenant}&createdTime={mid}&parentMessageId={mid}"
        )
    return message


def _require_delegated(info: TokenInfo) -> None:
    if info.kind is not TokenKind.DELEGATED:
        raise GraphError(401, "Unauthorized", IMPORT_ONLY)


async def post_chat_message(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``POST /chats/{chat-id}/messages`` (201 + chatMessage)."""
    info = sim.authorize(request)
    chat_id = _chat_id(request)
    _require_delegated(info)
    limits = sim.teams_limits
    keys = [
        (("chat", chat_id), limits.per_chat),
        (("user", info.subject), limits.per_user),
        (("tenant-chats",), limits.per_tenant_chats),
    ]
    sim.rate_check(keys, request[ARRIVAL])
    fields = _validated_content(read_json(request[BODY]))
    sim.rate_accept(keys, request[ARRIVAL])
    message = new_message(sim, fields, _sender(sim, info.subject), chat_id=chat_id)
    sim.chat_messages.setdefault(chat_id, []).append(message)
    sim.delta.record_chat(message)
    sim_webhooks.notify_chat(sim, message, "created")
    context = f"{sim.base_url}/$metadata#chats('{quote(chat_id, safe='')}')/messages/$entity"
    return _json({"@odata.context": context, **message}, 201)


async def post_channel_message(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``POST /teams/{team-id}/channels/{channel-id}/messages`` (201 + chatMessage)."""
    info = sim.authorize(request)
    team, channel = _team_channel(request)
    _require_delegated(info)
    limits = sim.teams_limits
    keys = [
        (("channel", team, channel), limits.per_channel),
        (("user", info.subject), limits.per_user),
        (("tenant-channels",), limits.per_tenant_channels),
    ]
    sim.rate_check(keys, request[ARRIVAL])
    fields = _validated_content(read_json(request[BODY]))
    sim.rate_accept(keys, request[ARRIVAL])
    message = new_message(sim, fields, _sender(sim, info.subject), channel=(team, channel))
    sim.channel_messages.setdefault((team, channel), []).append(message)
    sim_webhooks.notify_channel(sim, message, "created")
    context = f"{sim.base_url}/$metadata#teams('{team}')/channels('{quote(channel, safe='')}')/messages/$entity"
    return _json({"@odata.context": context, **message}, 201)


def _find(messages: list[dict[str, Any]], message_id: str) -> dict[str, Any]:
    for message in messages:
        if message["id"] == message_id:
            return message
    raise GraphError(404, "NotFound", f"Message '{message_id}' was not found.")


async def get_chat_message(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``GET /chats/{chat-id}/messages/{message-id}``."""
    sim.authorize(request)
    chat_id = _chat_id(request)
    return _json(_find(sim.chat_messages.get(chat_id, []), request.match_info["message_id"]), 200)


async def get_channel_message(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``GET /teams/{team-id}/channels/{channel-id}/messages/{message-id}``."""
    sim.authorize(request)
    team, channel = _team_channel(request)
    return _json(_find(sim.channel_messages.get((team, channel), []), request.match_info["message_id"]), 200)


def _validate_activity(payload: dict[str, Any], *, topic_required: bool, recipient_required: bool) -> None:
    activity_type = payload.get("activityType")
    if not isinstance(activity_type, str) or not activity_type:
        raise GraphError(400, "BadRequest", "activityType is required.")
    preview = payload.get("previewText")
    if not isinstance(preview, dict) or not isinstance(preview.get("content"), str):
        raise GraphError(400, "BadRequest", "previewText is required and must be an itemBody with content.")
    topic = payload.get("topic")
    if topic is not None or topic_required:
        if not isinstance(topic, dict):
            raise GraphError(400, "BadRequest", "topic is required and must be an object.")
        source = topic.get("source")
        if source not in ("entityUrl", "text") or not isinstance(topic.get("value"), str):
            raise GraphError(400, "BadRequest", "topic.source must be entityUrl or text, with a string topic.value.")
        if source == "text" and not topic.get("webUrl"):
            raise GraphError(400, "BadRequest", "topic.webUrl is required when topic.source is text.")
    params = payload.get("templateParameters", [])
    if not isinstance(params, list) or not all(
        isinstance(p, dict) and isinstance(p.get("name"), str) and isinstance(p.get("value"), str) for p in params
    ):
        raise GraphError(400, "BadRequest", "templateParameters must be a list of {name, value} strings.")
    recipient = payload.get("recipient")
    if recipient is None and not recipient_required:
        return
    if not isinstance(recipient, dict):
        raise GraphError(400, "BadRequest", "recipient is required.")
    kind = str(recipient.get("@odata.type", "")).lstrip("#")
    needed = RECIPIENT_TYPES.get(kind)
    if needed is None:
        raise GraphError(400, "BadRequest", f"recipient @odata.type must be one of {sorted(RECIPIENT_TYPES)}.")
    missing = [name for name in needed if not recipient.get(name)]
    if missing:
        raise GraphError(400, "BadRequest", f"recipient of type {kind} needs {', '.join(missing)}.")


async def _activity(sim: SimState, request: web.Request, scope: str, target: str) -> web.StreamResponse:
    sim.authorize(request)
    payload = read_json(request[BODY])
    _validate_activity(payload, topic_required=scope == "user", recipient_required=scope != "user")
    sim.activity_notifications.append(ActivityNotification(scope, target, payload, monotonic()))
    return web.Response(status=204)


async def user_activity(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``POST /users/{id}/teamwork/sendActivityNotification`` (204)."""
    return await _activity(sim, request, "user", request.match_info["user"])


async def chat_activity(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``POST /chats/{chat-id}/sendActivityNotification`` (204)."""
    return await _activity(sim, request, "chat", _chat_id(request))


async def team_activity(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``POST /teams/{team-id}/sendActivityNotification`` (204)."""
    team = request.match_info["team_id"]
    if not _GUID.match(team):
        raise GraphError(404, "NotFound", f"Team '{team}' was not found.")
    return await _activity(sim, request, "team", team)


def add_chat_message(
    sim: SimState,
    chat_id: str,
    body: str,
    *,
    content_type: str,
    sender: str,
    sender_name: str,
    importance: str,
) -> dict[str, Any]:
    """Seed an inbound chat message (see :meth:`SimState.add_chat_message`)."""
    if not _THREAD_ID.match(chat_id):
        raise ValueError(f"chat id {chat_id!r} is not a Teams thread id like '19:...@thread.v2'")
    try:
        fields = _validated_content({"body": {"contentType": content_type, "content": body}, "importance": importance})
    except GraphError as exc:
        raise ValueError(exc.message) from None
    message = new_message(sim, fields, _sender(sim, sender, sender_name), chat_id=chat_id)
    sim.chat_messages.setdefault(chat_id, []).append(message)
    sim.delta.record_chat(message)
    sim_webhooks.notify_chat(sim, message, "created")
    return message


def remove_chat_message(sim: SimState, chat_id: str, message_id: str) -> None:
    """Soft-delete a chat message: it stays with ``deletedDateTime`` set, delta reports it removed."""
    try:
        message = _find(sim.chat_messages.get(chat_id, []), message_id)
    except GraphError:
        raise KeyError(f"no message {message_id!r} in chat {chat_id!r}") from None
    stamp = iso(dt.datetime.now(dt.UTC))
    message.update(deletedDateTime=stamp, lastModifiedDateTime=stamp)
    sim.delta.record_chat(message, removed=True)
    sim_webhooks.notify_chat(sim, message, "deleted")


ROUTES = [
    ("POST", "/v1.0/chats/{chat_id}/messages", post_chat_message),
    ("GET", "/v1.0/chats/{chat_id}/messages/{message_id}", get_chat_message),
    ("POST", "/v1.0/teams/{team_id}/channels/{channel_id}/messages", post_channel_message),
    ("GET", "/v1.0/teams/{team_id}/channels/{channel_id}/messages/{message_id}", get_channel_message),
    ("POST", "/v1.0/users/{user}/teamwork/sendActivityNotification", user_activity),
    ("POST", "/v1.0/chats/{chat_id}/sendActivityNotification", chat_activity),
    ("POST", "/v1.0/teams/{team_id}/sendActivityNotification", team_activity),
]
