"""Values shared by the Graph simulator's modules: errors, recorded requests, stored objects, time helpers.

Nothing here does I/O. The route handlers raise :class:`GraphError` (answered with the Graph error
envelope) or :class:`OAuthError` (answered in the Entra OAuth shape); the simulator's middleware
turns them into responses.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiohttp import web

#: Graph's documented cap on the size of one REST request (uploads through sessions excepted).
MAX_REQUEST_BYTES = 4 * 1024 * 1024
#: Outlook upload sessions accept attachments up to 150 MB.
MAX_OUTLOOK_ATTACHMENT_BYTES = 150 * 1024 * 1024
#: an Outlook upload-session PUT should carry at most 4 MB.
MAX_OUTLOOK_CHUNK_BYTES = 4 * 1024 * 1024
#: a drive upload-session PUT must stay under 60 MiB and, unless it is the last, be a multiple of 320 KiB.
MAX_DRIVE_CHUNK_BYTES = 60 * 1024 * 1024
DRIVE_CHUNK_MULTIPLE = 320 * 1024
#: what the middleware hands the route handlers: the request body (read once) and its arrival time
BODY = web.RequestKey("fleetbox_graph_body", bytes)
ARRIVAL = web.RequestKey("fleetbox_graph_arrival", float)
#: Teams: "Channel conversation post size: approximately 28 KB per post".
MAX_CHAT_MESSAGE_BYTES = 28 * 1024


class TokenKind(StrEnum):
    """Who an access token speaks for."""

    APP = "app"  # client credentials: the application itself
    DELEGATED = "delegated"  # a signed-in user (device code, refresh token)


class LifecycleEvent(StrEnum):
    """The lifecycle notifications Graph sends to a subscription's lifecycleNotificationUrl."""

    REAUTHORIZATION_REQUIRED = "reauthorizationRequired"
    SUBSCRIPTION_REMOVED = "subscriptionRemoved"
    MISSED = "missed"


class GraphError(Exception):
    """A Graph error answer: the status, and the envelope ``{"error": {"code", "message", "innerError"}}``.

    ``inner_error=False`` leaves ``innerError`` out, as Outlook does for ``ErrorAccessDenied`` and
    ``ApplicationThrottled``. ``retry_after`` is sent verbatim as the ``Retry-After`` header.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        inner_error: bool = True,
        inner_code: str | None = None,
        retry_after: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.inner_error = inner_error
        self.inner_code = inner_code
        self.retry_after = retry_after
        self.headers = dict(headers or {})


class OAuthError(Exception):
    """An Entra token-endpoint error: ``{"error", "error_description", "error_codes", ...}``."""

    def __init__(
        self, status: int, error: str, aadsts: int, description: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {error}: AADSTS{aadsts}: {description}")
        self.headers = dict(headers or {})
        self.status = status
        self.error = error
        self.aadsts = aadsts
        self.description = description

    def body(self, *, trace_id: str, correlation_id: str) -> dict[str, Any]:
        """The JSON body Entra sends for this error."""
        stamp = utc_now().strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": self.error,
            "error_description": (
                f"AADSTS{self.aadsts}: {self.description} Trace ID: {trace_id} "
                f"Correlation ID: {correlation_id} Timestamp: {stamp}"
            ),
            "error_codes": [self.aadsts],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
        }


@dataclass(frozen=True)
class RecordedRequest:
    """One request the simulator received.

    ``at`` is ``time.monotonic()`` on arrival; ``status`` is the status the simulator decided, and so
    what it did (0 while the request is still in flight, for a connection the simulator dropped on
    purpose, and for a body the client never finished sending). ``delivered`` is False when the
    client had gone before the answer could be written: like Graph, the simulator still did what the
    answer says (an upload fragment that arrived whole is stored though its client died waiting), and
    a client learns of it only by asking (an upload session's ``nextExpectedRanges``). Header names
    are lower case.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float
    status: int
    delivered: bool = True

    @property
    def route(self) -> str:
        """``"METHOD /path"``, the string the fault injectors' regexes are matched against."""
        return f"{self.method} {self.path}"

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class Delivery:
    """One POST the simulator made to a webhook receiver (a change or lifecycle notification batch).

    ``status`` is 0 when no answer came (connection refused, reset, or ``timed_out``); ``elapsed`` is
    seconds from sending to the answer (or to giving up).
    """

    subscription_id: str
    url: str
    payload: dict[str, Any]
    status: int
    elapsed: float
    body: str
    timed_out: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Graph counts a notification as delivered on any 2xx answer within the timeout."""
        return 200 <= self.status < 300


@dataclass(frozen=True)
class MailAttachment:
    """A file attached to a mail message (sent inline as contentBytes, or through an upload session)."""

    id: str
    name: str
    content_type: str
    data: bytes
    is_inline: bool = False
    content_id: str | None = None

    def as_graph(self, *, with_content: bool = True) -> dict[str, Any]:
        """The Graph ``fileAttachment`` JSON of this attachment."""
        out: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "id": self.id,
            "name": self.name,
            "contentType": self.content_type,
            "size": len(self.data),
            "isInline": self.is_inline,
            "contentId": self.content_id,
        }
        if with_content:
            out["contentBytes"] = base64.b64encode(self.data).decode("ascii")
        return out


@dataclass(frozen=True)
class SentMail:
    """A mail that left a mailbox: through ``sendMail`` (``via="sendMail"``) or a sent draft (``via="draft"``).

    ``message`` is the Graph message object as the client gave it (for a draft: the draft, with its
    ``id``); ``attachments`` holds every file, decoded.
    """

    mailbox: str
    message: dict[str, Any]
    attachments: tuple[MailAttachment, ...]
    saved_to_sent_items: bool
    via: str
    at: float


@dataclass(frozen=True)
class ActivityNotification:
    """A Teams activity-feed notification: ``scope`` is "user", "chat" or "team", ``target`` its id."""

    scope: str
    target: str
    body: dict[str, Any]
    at: float


@dataclass
class UploadSession:
    """An upload session in progress (``kind`` "outlook" for mail attachments, "drive" for files).

    ``received`` holds the bytes so far; the session ends (and leaves ``GraphSimulator.upload_sessions``)
    when the last byte arrives or the client deletes it.
    """

    id: str
    kind: str
    size: int
    expires: dt.datetime
    received: bytearray = field(default_factory=bytearray)
    # outlook: the draft the attachment goes to
    mailbox: str = ""
    message_id: str = ""
    name: str = ""
    content_type: str = "application/octet-stream"
    is_inline: bool = False
    content_id: str | None = None
    # drive: where the file goes
    drive_id: str = ""
    parent_id: str = ""
    conflict_behavior: str = "replace"
    defer_commit: bool = False
    #: the ``authtoken`` query parameter of the upload URL (a client must use the URL verbatim)
    auth_token: str = ""


@dataclass
class DriveFile:
    """A file (or folder, with ``folder=True``) in a simulated drive; ``item`` is its driveItem JSON."""

    drive_id: str
    parent_id: str
    name: str
    item: dict[str, Any]
    data: bytes = b""
    folder: bool = False
    version: int = 1


@dataclass
class TokenInfo:
    """An access token the simulator issued."""

    kind: TokenKind
    subject: str
    expires_at: float
    scopes: tuple[str, ...]
    #: the ``aud`` claim: the resource the token was asked for (Graph accepts only its own)
    audience: str = "https://graph.microsoft.com"


@dataclass(frozen=True)
class TeamsLimits:
    """Teams message-POST limits the simulator enforces (requests per second, over a one-second window).

    From the Graph throttling page: 1 rps per chat or channel, 1 rps per user, 20 rps (chats) and
    50 rps (channels) per app per tenant. Only accepted posts count against the windows.
    """

    per_chat: int = 1
    per_channel: int = 1
    per_user: int = 1
    per_tenant_chats: int = 20
    per_tenant_channels: int = 50


class SlidingWindow:
    """Arrival times of accepted requests for one rate-limit key, checked over a one-second window."""

    def __init__(self, limit: int, window: float = 1.0) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def retry_after(self, at: float) -> float | None:
        """Seconds until a request arriving at ``at`` would fit, or None if it fits now.

        Every one-second window containing ``at`` (also windows reaching past it, since concurrent
        requests may be handled slightly out of arrival order) must hold fewer than ``limit`` others.
        """
        while self._times and self._times[0] <= at - 2 * self.window:
            self._times.popleft()
        near = sorted(t for t in self._times if abs(t - at) < self.window)
        if len(near) < self.limit:
            return None
        points = sorted([*near, at])
        start = 0
        for end, point in enumerate(points):
            while point - points[start] >= self.window:
                start += 1
            if end - start + 1 > self.limit:
                past = [t for t in near if t <= at]
                anchor = past[-self.limit] if len(past) >= self.limit else max(near)
                return max(anchor + self.window - at, 0.001)
        return None

    def add(self, at: float) -> None:
        """Count an accepted request that arrived at ``at``."""
        self._times.append(at)


def utc_now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def iso(moment: dt.datetime, digits: int = 3) -> str:
    """Graph's timestamp format: UTC with ``digits`` fractional digits and a ``Z`` (Graph uses 0, 3 or 7)."""
    moment = moment.astimezone(dt.UTC)
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits <= 0:
        return base + "Z"
    frac = f"{moment.microsecond:06d}0"[:digits] if digits <= 7 else f"{moment.microsecond:06d}"
    return f"{base}.{frac}Z"


def parse_iso(value: object, *, field_name: str) -> dt.datetime:
    """Parse a Graph timestamp (any number of fractional digits, ``Z`` or an offset; naive means UTC)."""
    if not isinstance(value, str) or not value:
        raise GraphError(400, "InvalidRequest", f"{field_name} must be an ISO 8601 date-time string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    head, sep, rest = text.partition(".")
    if sep:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        frac, tail = rest[:digits], rest[digits:]
        text = f"{head}.{(frac + '000000')[:6]}{tail}"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise GraphError(400, "InvalidRequest", f"{field_name} is not a valid date-time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def retry_after_header(seconds: float) -> str:
    """Retry-After as Graph sends it for its own limits: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


def b64url(data: bytes) -> str:
    """Base64url without padding, as in JWTs and msal's client_info."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsigned_jwt(claims: dict[str, Any]) -> str:
    """A JWT with ``alg: none``: msal reads id_token claims without validating a signature."""
    header = b64url(json.dumps({"typ": "JWT", "alg": "none"}).encode())
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    return f"{header}.{payload}."


def stable_guid(*parts: str) -> str:
    """A GUID derived from names, so the same user or tenant always gets the same object id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "fleetbox-simulator:" + ":".join(parts)))


def monotonic() -> float:
    """The clock of :attr:`RecordedRequest.at` (and of :class:`SentMail.at`)."""
    return time.monotonic()


_JSON_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A Graph JSON answer, with Graph's full OData content type."""
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": _JSON_TYPE, **(headers or {})}
    )


def read_json(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or 400 naming what is wrong."""
    if not body:
        raise GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GraphError(400, "BadRequest", f"Unable to read JSON request payload: {exc}") from None
    if not isinstance(data, dict):
        raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
    return data


# -- state of the Entra and delta routes ---------------------------------------------------------

Stream = tuple[str, ...]


@dataclass
class DeviceFlow:
    """A device-code sign-in: pending until approved, then redeemable once for tokens."""

    device_code: str
    user_code: str
    scopes: tuple[str, ...]
    expires_at: float
    approved: bool = False
    redeemed: bool = False


@dataclass
class RefreshGrant:
    """A refresh token: who it signs in and for which scopes; ``revoked`` ones get invalid_grant."""

    subject: str
    scopes: tuple[str, ...]
    revoked: bool = False


@dataclass
class _Change:
    seq: int
    item: dict[str, Any]  # the live object: an upsert reports its state at read time
    removed: bool


@dataclass
class _Cursor:
    stream: Stream
    kind: str  # "next": the rest of a page sequence; "delta": changes after since_seq
    since_seq: int
    page_size: int
    pending: list[dict[str, Any]] = field(default_factory=list)


class DeltaState:
    """Change logs per stream (a mail folder, or all chats) and the tokens handed out."""

    def __init__(self) -> None:
        self.seq = 0
        self.logs: dict[Stream, list[_Change]] = {}
        self.cursors: dict[str, _Cursor] = {}
        self.resync_pending = False

    def _record(self, stream: Stream, item: dict[str, Any], removed: bool) -> None:
        self.seq += 1
        self.logs.setdefault(stream, []).append(_Change(self.seq, item, removed))

    def record_mail(self, user: str, folder: str, message: dict[str, Any], *, removed: bool = False) -> None:
        """Log a message change in ``user``'s ``folder`` (lower-case keys)."""
        self._record(("mail", user, folder), message, removed)

    def record_chat(self, message: dict[str, Any], *, removed: bool = False) -> None:
        """Log a chat message change (``chats/getAllMessages`` covers every chat)."""
        self._record(("chats",), message, removed)

    def expire_all(self) -> None:
        """Forget every token: the next one used gets 410 SyncStateNotFound."""
        self.cursors.clear()

    def current(self, stream: Stream) -> list[dict[str, Any]]:
        """The items present now (last change per id not a removal), oldest first."""
        last: dict[str, _Change] = {}
        for change in self.logs.get(stream, []):
            last.pop(change.item["id"], None)
            last[change.item["id"]] = change
        return [dict(c.item) for c in last.values() if not c.removed]

    def changes(self, stream: Stream, since: int, removed_type: str) -> list[dict[str, Any]]:
        """Changes after ``since``, one entry per item (its latest state, or ``@removed``)."""
        last: dict[str, _Change] = {}
        for change in self.logs.get(stream, []):
            if change.seq > since:
                last.pop(change.item["id"], None)
                last[change.item["id"]] = change
        return [
            {"@odata.type": removed_type, "id": c.item["id"], "@removed": {"reason": "deleted"}}
            if c.removed
            else dict(c.item)
            for c in last.values()
        ]

    def issue(self, cursor: _Cursor) -> str:
        """A fresh opaque token for ``cursor``."""
        token = secrets.token_urlsafe(32)
        self.cursors[token] = cursor
        return token
