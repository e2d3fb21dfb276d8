"""Outlook routes of the Graph simulator: sendMail, drafts, attachments, upload sessions, message reads.

Contract 3.3/3.4: sendMail answers 202 with no body; recipients must be arrays of
``{"emailAddress": {"address": ...}}``; inline ``contentBytes`` only under 3 MB; larger files go
through a draft, ``attachments/createUploadSession`` (201, refused under the minimum size), chunk
PUTs to the pre-authenticated upload URL (see :mod:`fleetbox.graph.sim_files`) and ``/send`` (202).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import secrets
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from fleetbox.graph import sim_webhooks
from fleetbox.graph.sim_common import (
    BODY,
    MAX_OUTLOOK_ATTACHMENT_BYTES,
    GraphError,
    MailAttachment,
    SentMail,
    UploadSession,
    iso,
    json_response,
    monotonic,
    read_json,
    utc_now,
)

if TYPE_CHECKING:
    from fleetbox.graph.sim_state import SimState

RECIPIENT_FIELDS = ("toRecipients", "ccRecipients", "bccRecipients")
MAX_RECIPIENTS = 500
#: Outlook's well-known folder names; the simulator keys folders by these (lower case)
WELL_KNOWN_FOLDERS = ("inbox", "drafts", "sentitems", "deleteditems", "archive", "junkemail", "outbox")
_NOT_FOUND = "The specified object was not found in the store."


def new_message_id() -> str:
    """An Outlook-looking message id (opaque, URL-safe)."""
    return f"AAMkAGI2{secrets.token_urlsafe(33)}AAA="


def _mailbox(sim: SimState, user: str) -> dict[str, dict[str, dict[str, Any]]]:
    return sim.mailboxes.setdefault(user.lower(), {})


def _find_message(sim: SimState, user: str, message_id: str) -> tuple[str, dict[str, Any]]:
    for folder, messages in sim.mailboxes.get(user.lower(), {}).items():
        if message_id in messages:
            return folder, messages[message_id]
    raise GraphError(404, "ErrorItemNotFound", _NOT_FOUND)


def _address(user: str) -> dict[str, Any]:
    return {"emailAddress": {"name": user.split("@", 1)[0], "address": user}}


def _check_recipients(message: dict[str, Any], *, required: bool) -> None:
    count = 0
    for name in (*RECIPIENT_FIELDS, "replyTo"):
        value = message.get(name)
        if value is None:
            continue
        if not isinstance(value, list):
            raise GraphError(
                400,
                "ErrorInvalidRecipients",
                f"At least one recipient isn't valid., {name} must be an array of recipient objects.",
            )
        for entry in value:
            address = entry.get("emailAddress", {}).get("address") if isinstance(entry, dict) else None
            if not isinstance(address, str) or "@" not in address or ";" in address or "," in address:
                shown = address if isinstance(address, str) else entry
                raise GraphError(
                    400,
                    "ErrorInvalidRecipients",
                    f"At least one recipient isn't valid., Recipient \"{shown}\" isn't resolved. All recipients "
                    "must be resolved before a message can be submitted.",
                )
        if name != "replyTo":
            count += len(value)
    if required and count == 0:
        raise GraphError(
            400,
            "ErrorInvalidRecipients",
            "At least one recipient isn't valid., A message can't be sent because it contains no recipients.",
        )
    if count > MAX_RECIPIENTS:
        raise GraphError(400, "ErrorTooManyRecipients", f"A message can have at most {MAX_RECIPIENTS} recipients.")


def _check_message(message: dict[str, Any], *, recipients_required: bool) -> list[MailAttachment]:
    """Validate a Graph message object; return its inline file attachments, decoded."""
    _check_recipients(message, required=recipients_required)
    body = message.get("body")
    if body is not None:
        if not isinstance(body, dict) or not isinstance(body.get("content", ""), str):
            raise GraphError(400, "BadRequest", "body must be an itemBody object with string content.")
        if str(body.get("contentType", "text")).lower() not in ("text", "html"):
            raise GraphError(400, "BadRequest", f"Invalid body.contentType '{body.get('contentType')}': Text or HTML.")
    if str(message.get("importance", "normal")).lower() not in ("low", "normal", "high"):
        raise GraphError(400, "BadRequest", f"Invalid importance '{message.get('importance')}': low, normal or high.")
    raw = message.get("attachments", [])
    if not isinstance(raw, list):
        raise GraphError(400, "BadRequest", "attachments must be an array.")
    return [_file_attachment(entry, index) for index, entry in enumerate(raw)]


def _file_attachment(entry: Any, index: int) -> MailAttachment:
    where = f"attachments[{index}]"
    if not isinstance(entry, dict):
        raise GraphError(400, "BadRequest", f"{where} must be an object.")
    kind = str(entry.get("@odata.type", "")).lstrip("#").lower()
    if kind != "microsoft.graph.fileattachment":
        raise GraphError(
            400, "BadRequest", f"{where}: @odata.type must be #microsoft.graph.fileAttachment (the simulated kind)."
        )
    name, content = entry.get("name"), entry.get("contentBytes")
    if not isinstance(name, str) or not name:
        raise GraphError(400, "BadRequest", f"{where}.name is required.")
    if not isinstance(content, str):
        raise GraphError(400, "BadRequest", f"{where}.contentBytes is required (base64).")
    try:
        data = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise GraphError(400, "ErrorInvalidRequest", f"{where}.contentBytes is not valid base64.") from None
    # Files of 3 MB and more do not fit inline: base64 makes the request exceed the 4 MB cap (413).
    return MailAttachment(
        id=entry.get("id") or f"AAMkAtt{secrets.token_urlsafe(24)}=",
        name=name,
        content_type=str(entry.get("contentType") or "application/octet-stream"),
        data=data,
        is_inline=bool(entry.get("isInline", False)),
        content_id=entry.get("contentId"),
    )


def _stamp() -> str:
    return iso(utc_now(), 0)


def _complete(user: str, folder: str, message: dict[str, Any]) -> dict[str, Any]:
    """Fill in the fields Graph returns on a message and that the caller did not give."""
    now = _stamp()
    mid = message.get("id") or new_message_id()
    body = message.get("body") or {"contentType": "text", "content": ""}
    sender = message.get("from") or message.get("sender") or _address(user)
    full: dict[str, Any] = {
        "@odata.etag": f'W/"CQAAABYAAA{secrets.token_urlsafe(12)}"',
        "id": mid,
        "createdDateTime": now,
        "lastModifiedDateTime": now,
        "changeKey": secrets.token_urlsafe(16),
        "categories": [],
        "receivedDateTime": now,
        "sentDateTime": None if folder == "drafts" else now,
        "hasAttachments": False,
        "internetMessageId": f"<{uuid.uuid4()}@simulated.example>",
        "subject": "",
        "bodyPreview": str(body.get("content", ""))[:255],
        "importance": "normal",
        "parentFolderId": folder,
        "conversationId": f"AAQkAGI2{secrets.token_urlsafe(16)}=",
        "isDeliveryReceiptRequested": False,
        "isReadReceiptRequested": False,
        "isRead": folder in ("drafts", "sentitems"),
        "isDraft": folder == "drafts",
        "webLink": f"https://outlook.simulated.example/owa/?ItemID={mid}",
        "body": body,
        "sender": sender,
        "from": sender,
        "toRecipients": [],
        "ccRecipients": [],
        "bccRecipients": [],
        "replyTo": [],
        "flag": {"flagStatus": "notFlagged"},
    }
    full.update({k: v for k, v in message.items() if k != "attachments"})
    full["id"] = mid
    full["parentFolderId"] = folder
    return full


def store_mail(sim: SimState, user: str, folder: str, message: dict[str, Any], change: str) -> None:
    """Put a message in a folder, log it for delta and notify subscriptions (``change`` "created"/"updated")."""
    _mailbox(sim, user).setdefault(folder, {})[message["id"]] = message
    sim.delta.record_mail(user.lower(), folder, message)
    sim_webhooks.notify_mail(sim, user.lower(), folder, message, change)


def _unstore_mail(sim: SimState, user: str, folder: str, message_id: str) -> dict[str, Any]:
    message = _mailbox(sim, user).get(folder, {}).pop(message_id)
    sim.delta.record_mail(user.lower(), folder, message, removed=True)
    sim_webhooks.notify_mail(sim, user.lower(), folder, message, "deleted")
    return message


def add_mail(
    sim: SimState,
    user: str,
    folder: str,
    message: dict[str, Any],
    attachments: list[tuple[str, bytes, str]],
) -> dict[str, Any]:
    """Seed a message (see :meth:`SimState.add_mail`)."""
    folder = folder.lower()
    full = _complete(user, folder, message)
    files = [
        MailAttachment(id=f"AAMkAtt{secrets.token_urlsafe(24)}=", name=name, content_type=ctype, data=data)
        for name, data, ctype in attachments
    ]
    if files:
        sim.mail_attachments.setdefault(full["id"], []).extend(files)
        full["hasAttachments"] = True
    store_mail(sim, user, folder, full, "created")
    return full


def remove_mail(sim: SimState, user: str, folder: str, message_id: str) -> None:
    """Delete a seeded message (see :meth:`SimState.remove_mail`)."""
    if message_id not in sim.mailboxes.get(user.lower(), {}).get(folder.lower(), {}):
        raise KeyError(f"no message {message_id!r} in {user}/{folder}")
    _unstore_mail(sim, user, folder.lower(), message_id)
    sim.mail_attachments.pop(message_id, None)


async def send_mail(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``POST /users/{id}/sendMail``: 202, empty body."""
    sim.authorize(request)
    user = request.match_info["user"]
    body: bytes = request[BODY]
    if request.content_type == "text/plain":
        try:
            mime = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise GraphError(
                400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
            ) from None
        sim.sent_mail.append(
            SentMail(user.lower(), {"mime": mime.decode("utf-8", "replace")}, (), True, "mime", monotonic())
        )
        return web.Response(status=202)
    payload = read_json(body)
    message = payload.get("message")
    if not isinstance(message, dict):
        raise GraphError(400, "ErrorInvalidRequest", "The message property is required and must be an object.")
    save = payload.get("saveToSentItems", True)
    if isinstance(save, str) and save.lower() in ("true", "false"):
        save = save.lower() == "true"
    if not isinstance(save, bool):
        raise GraphError(400, "ErrorInvalidRequest", f"saveToSentItems must be a Boolean, not {save!r}.")
    files = _check_message(message, recipients_required=True)
    sim.sent_mail.append(SentMail(user.lower(), message, tuple(files), save, "sendMail", monotonic()))
    if save:
        stored = _complete(user, "sentitems", message)
        stored["hasAttachments"] = bool(files)
        if files:
            sim.mail_attachments[stored["id"]] = list(files)
        store_mail(sim, user, "sentitems", stored, "created")
    return web.Response(status=202)


async def create_draft(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``POST /users/{id}/messages``: a draft (201 + message)."""
    sim.authorize(request)
    user = request.match_info["user"]
    message = read_json(request[BODY])
    files = _check_message(message, recipients_required=False)
    draft = _complete(user, "drafts", {k: v for k, v in message.items() if k != "id"})
    if files:
        sim.mail_attachments[draft["id"]] = list(files)
        draft["hasAttachments"] = True
    store_mail(sim, user, "drafts", draft, "created")
    return json_response(
        {"@odata.context": f"{sim.base_url}/$metadata#users('{user}')/messages/$entity", **draft}, status=201
    )


async def get_message(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``GET /users/{id}/messages/{message-id}``."""
    sim.authorize(request)
    user = request.match_info["user"]
    _, message = _find_message(sim, user, request.match_info["message_id"])
    return json_response({"@odata.context": f"{sim.base_url}/$metadata#users('{user}')/messages/$entity", **message})


def _draft(sim: SimState, user: str, message_id: str) -> dict[str, Any]:
    folder, message = _find_message(sim, user, message_id)
    if folder != "drafts":
        raise GraphError(400, "ErrorInvalidOperation", "The message is not a draft: it has already been sent.")
    return message


async def add_attachment(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``POST /users/{id}/messages/{message-id}/attachments``: a small fileAttachment on a draft (201)."""
    sim.authorize(request)
    user, mid = request.match_info["user"], request.match_info["message_id"]
    draft = _draft(sim, user, mid)
    attachment = _file_attachment(read_json(request[BODY]), 0)
    sim.mail_attachments.setdefault(mid, []).append(attachment)
    draft["hasAttachments"] = True
    context = f"{sim.base_url}/$metadata#users('{user}')/messages('{mid}')/attachments/$entity"
    return json_response({"@odata.context": context, **attachment.as_graph()}, status=201)


def _attachment(sim: SimState, user: str, mid: str, aid: str) -> MailAttachment:
    _find_message(sim, user, mid)
    for attachment in sim.mail_attachments.get(mid, []):
        if attachment.id == aid:
            return attachment
    raise GraphError(404, "ErrorItemNotFound", _NOT_FOUND)


async def list_attachments(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``GET /users/{id}/messages/{message-id}/attachments`` (metadata and content, as Graph does)."""
    sim.authorize(request)
    user, mid = request.match_info["user"], request.match_info["message_id"]
    _find_message(sim, user, mid)
    return json_response({"value": [a.as_graph() for a in sim.mail_attachments.get(mid, [])]})


async def get_attachment(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``GET /users/{id}/messages/{message-id}/attachments/{attachment-id}`` (JSON with contentBytes)."""
    sim.authorize(request)
    m = request.match_info
    return json_response(_attachment(sim, m["user"], m["message_id"], m["attachment_id"]).as_graph())


async def attachment_value(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``GET /users/{id}/messages/{message-id}/attachments/{attachment-id}/$value``: the raw bytes."""
    sim.authorize(request)
    m = request.match_info
    attachment = _attachment(sim, m["user"], m["message_id"], m["attachment_id"])
    return web.Response(body=attachment.data, headers={"Content-Type": attachment.content_type})


async def create_upload_session(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``POST /users/{id}/messages/{message-id}/attachments/createUploadSession`` (201)."""
    sim.authorize(request)
    user, mid = request.match_info["user"], request.match_info["message_id"]
    _draft(sim, user, mid)
    payload = read_json(request[BODY])
    item = payload.get("AttachmentItem", payload.get("attachmentItem"))
    if not isinstance(item, dict):
        raise GraphError(400, "ErrorInvalidRequest", "AttachmentItem is required.")
    if str(item.get("attachmentType", "file")).lower() != "file":
        raise GraphError(400, "ErrorInvalidRequest", "AttachmentItem.attachmentType must be file.")
    name, size = item.get("name"), item.get("size")
    if not isinstance(name, str) or not name:
        raise GraphError(400, "ErrorInvalidRequest", "AttachmentItem.name is required.")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise GraphError(400, "ErrorInvalidRequest", "AttachmentItem.size must be a positive integer.")
    if size < sim.min_upload_session_bytes:
        raise GraphError(
            400,
            "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
            f"Attachment size must be at least {sim.min_upload_session_bytes} bytes; attach smaller files inline.",
        )
    if size > MAX_OUTLOOK_ATTACHMENT_BYTES:
        raise GraphError(400, "ErrorAttachmentSizeLimitExceeded", "An attachment can be at most 150 MB.")
    session_id = sim.new_token()
    session = UploadSession(
        id=session_id,
        kind="outlook",
        size=size,
        expires=utc_now() + dt.timedelta(hours=2),
        mailbox=user,
        message_id=mid,
        name=name,
        content_type=str(item.get("contentType") or "application/octet-stream"),
        is_inline=bool(item.get("isInline", False)),
        content_id=item.get("contentId"),
        auth_token=sim.new_token(),
    )
    sim.upload_sessions[session_id] = session
    return json_response(
        {
            "@odata.context": f"{sim.base_url}/$metadata#microsoft.graph.uploadSession",
            "uploadUrl": f"{sim.pre_auth_origin}/_upload/{session_id}?authtoken={session.auth_token}",
            "expirationDateTime": iso(session.expires, 7),
            "nextExpectedRanges": ["0-"],
        },
        status=201,
    )


def finish_upload(sim: SimState, session: UploadSession) -> str:
    """Attach a completed Outlook upload to its draft; return the attachment's Location URL."""
    attachment = MailAttachment(
        id=f"AAMkAtt{secrets.token_urlsafe(24)}=",
        name=session.name,
        content_type=session.content_type,
        data=bytes(session.received),
        is_inline=session.is_inline,
        content_id=session.content_id,
    )
    sim.mail_attachments.setdefault(session.message_id, []).append(attachment)
    draft = sim.mailboxes.get(session.mailbox.lower(), {}).get("drafts", {}).get(session.message_id)
    if draft is not None:
        draft["hasAttachments"] = True
    return (
        f"{sim.pre_auth_origin}/api/v2.0/Users('{session.mailbox}')/Messages('{session.message_id}')"
        f"/Attachments('{attachment.id}')"
    )


async def send_draft(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``POST /users/{id}/messages/{message-id}/send``: 202; needs ``Content-Length: 0``."""
    sim.authorize(request)
    if request.headers.get("Content-Length") is None:
        raise GraphError(411, "LengthRequired", "Content-Length: 0 is required on send.", inner_error=False)
    if request[BODY]:
        raise GraphError(400, "ErrorInvalidRequest", "send takes no request body (Content-Length: 0).")
    user, mid = request.match_info["user"], request.match_info["message_id"]
    draft = _draft(sim, user, mid)
    _check_recipients(draft, required=True)
    _unstore_mail(sim, user, "drafts", mid)
    files = tuple(sim.mail_attachments.get(mid, []))
    sim.sent_mail.append(SentMail(user.lower(), draft, files, True, "draft", monotonic()))
    sent = dict(draft, isDraft=False, sentDateTime=_stamp())
    store_mail(sim, user, "sentitems", sent, "created")
    return web.Response(status=202)


ROUTES = [
    ("POST", "/v1.0/users/{user}/sendMail", send_mail),
    ("POST", "/v1.0/users/{user}/messages", create_draft),
    ("GET", "/v1.0/users/{user}/messages/{message_id}", get_message),
    ("POST", "/v1.0/users/{user}/messages/{message_id}/send", send_draft),
    ("POST", "/v1.0/users/{user}/messages/{message_id}/attachments", add_attachment),
    ("GET", "/v1.0/users/{user}/messages/{message_id}/attachments", list_attachments),
    ("POST", "/v1.0/users/{user}/messages/{message_id}/attachments/createUploadSession", create_upload_session),
    ("GET", "/v1.0/users/{user}/messages/{message_id}/attachments/{attachment_id}", get_attachment),
    ("GET", "/v1.0/users/{user}/messages/{message_id}/attachments/{attachment_id}/$value", attachment_value),
]
