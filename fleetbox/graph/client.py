"""The Microsoft Graph HTTP client (aiohttp): tokens, limits, and Graph's errors as fleetbox errors.

Every request carries a fresh ``client-request-id``; Graph's ``request-id`` is kept on the
response and on every error. Failures become :mod:`fleetbox.errors` classes:

=========================================== ===============================================
Graph's answer                              raised
=========================================== ===============================================
429                                         RateLimitError(retry_after=Retry-After or None:
                                            then 2, 4, 8 ... s); the resource (for Outlook:
                                            the mailbox) is paused meanwhile
503, 504 with Retry-After                   NetworkError(retry_after=Retry-After); the
                                            resource is paused for it
503, 504 without Retry-After                NetworkError: 1, 2, 4, 8, 16 s
... with Retry-After over the configured    TransientError (not waited for)
maximum
other 5xx, 408, connection error, timeout   TransientError / NetworkError
401 InvalidAuthenticationToken              AuthenticationError; the token is dropped first,
                                            so the one retry the policy grants goes with a
                                            fresh token (one refresh, one retry)
401 with another code (app-only message     PermanentError (a missing permission, not an
post: "only for import purposes")           expired token)
410, syncStateNotFound, resyncRequired      SyncStateLost
400                                         ValidationError
403, 404, 409, 413, other 4xx               PermanentError
=========================================== ===============================================

Redirects are followed here, not by aiohttp, and never carry the bearer token: Graph redirects
only to pre-authenticated download URLs.
"""

from __future__ import annotations

import datetime as dt
import io
import json as jsonlib
import logging
import ssl
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from multidict import CIMultiDict

from fleetbox.config import GraphSettings
from fleetbox.errors import (
    AuthenticationError,
    GraphErrorDetail,
    JobError,
    NetworkError,
    PermanentError,
    RateLimitError,
    SyncStateLost,
    TransientError,
    ValidationError,
)
from fleetbox.graph.ratelimit import Limiters
from fleetbox.graph.tokens import TokenKind, Tokens
from fleetbox.rules import parse_retry_after

log = logging.getLogger("fleetbox.graph.client")

#: how long a resource pauses after a 429 that gave no Retry-After (the retry policy's first
#: rate-limited backoff is the same)
DEFAULT_THROTTLE_PAUSE_S = 2.0
MAX_REDIRECTS = 10
#: Graph's error message is kept up to this length in fleetbox's error text
MAX_MESSAGE = 500
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_THROTTLED = frozenset({429, 503, 504})
#: methods whose bodies count against a mailbox's upload budget
_UPLOADS = frozenset({"POST", "PUT", "PATCH"})
_SYNC_LOST = ("syncStateNotFound", "resyncRequired")


def error_detail(
    status: int, headers: Mapping[str, str], body: bytes, *, client_request_id: str | None
) -> GraphErrorDetail:
    """What Graph said: the codes of its error envelope (outer to inner), message and request ids.

    Tolerates a missing ``innerError``, either spelling of it, and bodies that are not JSON.
    """
    error: Any = None
    try:
        document = jsonlib.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        document = None
    if isinstance(document, dict):
        error = document.get("error")
    codes: list[str] = []
    message: str | None = None
    request_id: str | None = None
    date: str | None = None
    if isinstance(error, dict):
        message = error.get("message") if isinstance(error.get("message"), str) else None
        level: Any = error
        for _ in range(10):  # innerErrors nest a few deep at most
            if not isinstance(level, dict):
                break
            if isinstance(level.get("code"), str) and level["code"]:
                codes.append(level["code"])
            request_id = request_id or _str(level.get("request-id"))
            date = date or _str(level.get("date"))
            level = next((v for k, v in level.items() if k.lower() == "innererror"), None)
    elif isinstance(error, str):  # OAuth-style {"error": "invalid_token"}
        codes.append(error)
    header_id = next((v for k, v in headers.items() if k.lower() == "request-id"), None)
    return GraphErrorDetail(
        status=status,
        codes=tuple(codes),
        message=message,
        request_id=header_id or request_id,
        client_request_id=client_request_id,
        date=date,
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def classify(
    detail: GraphErrorDetail,
    headers: Mapping[str, str],
    *,
    what: str,
    max_retry_after: float,
    now: dt.datetime | None = None,
) -> JobError:
    """The fleetbox error for a refused Graph request (``what``: method and path, for the message)."""
    status = detail.status
    text = _message(detail, what)
    error: JobError
    if status == 410 or detail.has_code(*_SYNC_LOST):
        error = SyncStateLost(text)
    elif status in _THROTTLED:
        retry_after = parse_retry_after(_header(headers, "retry-after"), now=now)
        if retry_after is not None and retry_after > max_retry_after:
            error = TransientError(f"{text}; Retry-After {retry_after:g} s is over the {max_retry_after:g} s maximum")
        elif status == 429:
            error = RateLimitError(text, retry_after=retry_after)
        else:
            # 503/504: the service (not this client) is in trouble. A network error: 1, 2, 4 ... s,
            # or when Graph says, its Retry-After.
            error = NetworkError(text, retry_after=retry_after)
    elif status == 401:
        # An expired or unreadable token says InvalidAuthenticationToken (or nothing parseable);
        # any other code is a missing permission, such as app-only message posts.
        if not detail.codes or detail.has_code("InvalidAuthenticationToken"):
            error = AuthenticationError(text)
        else:
            error = PermanentError(text)
    elif status == 400:
        error = ValidationError(text)
    elif status >= 500 or status == 408:
        error = TransientError(text)
    else:
        error = PermanentError(text)
    error.graph = detail
    return error


def _message(detail: GraphErrorDetail, what: str) -> str:
    parts = [f"Graph {detail.status}"]
    if detail.codes:
        parts.append("/".join(detail.codes))
    text = " ".join(parts)
    if detail.message:
        message = detail.message if len(detail.message) <= MAX_MESSAGE else detail.message[: MAX_MESSAGE - 1] + "…"
        text += f": {message}"
    ids = [
        f"request-id {detail.request_id}" if detail.request_id else "",
        f"client-request-id {detail.client_request_id}" if detail.client_request_id else "",
    ]
    text += f" ({what}"
    for part in ids:
        if part:
            text += f"; {part}"
    return text + ")"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


def redacted_path(url: str) -> str:
    """The URL without its query (pre-authenticated URLs carry their credentials there)."""
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}" if parts.netloc else parts.path


@dataclass(frozen=True)
class GraphResponse:
    """A successful Graph answer, read whole."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    #: Graph's ``request-id`` header
    request_id: str | None
    #: the ``client-request-id`` fleetbox sent
    client_request_id: str

    def json(self) -> Any:
        """The body as JSON (None for an empty body)."""
        return jsonlib.loads(self.body) if self.body else None


#: bodies above this are streamed from a buffer rather than handed to aiohttp as bytes
_INLINE_BODY = 64 * 1024


class GraphClient:
    """Requests to Microsoft Graph through one aiohttp session (:meth:`start` .. :meth:`close`)."""

    def __init__(
        self,
        settings: GraphSettings,
        tokens: Tokens,
        limiters: Limiters,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._settings = settings
        self._tokens = tokens
        self._limiters = limiters
        self._ssl = ssl_context or _default_context(settings)
        self._base = settings.base_url.rstrip("/") + "/"
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            t = self._settings.timeout_seconds
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl),
                # Per read, not per request: a big download may take longer than one timeout,
                # but a server that says nothing for that long is gone.
                timeout=aiohttp.ClientTimeout(total=None, connect=t, sock_read=t),
                raise_for_status=False,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def relative(self, url: str) -> str:
        """A Graph URL relative to the configured root when it lies under the root's path (on any
        host: a stored delta link then survives a new simulator port or a proxy put in front of
        Graph); other URLs (upload and download URLs) are kept whole."""
        parts, base = urlsplit(url), urlsplit(self._base)
        if not parts.scheme or not parts.path.startswith(base.path):
            return url
        rest = parts.path[len(base.path) :]
        return rest + (f"?{parts.query}" if parts.query else "")

    def url(self, url: str) -> str:
        """An absolute URL: a relative one joins the configured Graph root, an absolute one is kept."""
        if urlsplit(url).scheme:
            return url
        return self._base + url.lstrip("/")

    async def request(
        self,
        method: str,
        url: str,
        *,
        resource: str,
        key: str | None = None,
        token: TokenKind | None = TokenKind.APP,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        allow_redirects: bool = True,
    ) -> GraphResponse:
        """Send one request; return a success (below 400) or raise the fleetbox error of Graph's answer.

        ``url`` relative to the Graph root, or absolute (nextLink, deltaLink, uploadUrl,
        Location: used verbatim). ``token=None`` sends no Authorization header (pre-authenticated
        upload and download URLs). ``resource`` and ``key`` choose the limiter (see
        :mod:`fleetbox.graph.ratelimit`).
        """
        if self._session is None:
            raise RuntimeError("GraphClient.start() was not called")
        if json is not None and data is not None:
            raise ValueError("give json or data, not both")
        target = self.url(url)
        body = jsonlib.dumps(json).encode() if json is not None else data
        base_headers = CIMultiDict(headers or {})
        if json is not None:
            base_headers.setdefault("Content-Type", "application/json")
        send = CIMultiDict(base_headers)
        client_request_id = str(uuid.uuid4())
        send["client-request-id"] = client_request_id
        if token is not None:
            send["Authorization"] = f"Bearer {await self._tokens.token(token)}"
        if resource == "outlook" and key is not None and body and method in _UPLOADS:
            # Outlook counts every byte sent into a mailbox (POST, PUT, PATCH) against its upload budget.
            await self._limiters.upload_bytes(key, len(body))
        async with self._limiters.acquire(resource, key):
            status, got, content = await self._send(
                method, target, body=body, headers=send, params=params, follow=allow_redirects
            )
        request_id = _header(got, "request-id")
        if status < 400:
            return GraphResponse(status, got, content, request_id, client_request_id)
        detail = error_detail(status, got, content, client_request_id=client_request_id)
        error = classify(
            detail,
            got,
            what=f"{method} {redacted_path(target)}",
            max_retry_after=self._limiters.settings.max_retry_after_seconds,
        )
        if isinstance(error, AuthenticationError) and token is not None:
            # The token expired or was revoked early: drop it, so the one retry the retry policy
            # grants an authentication error fetches a new one (the spec: one refresh, one retry;
            # a second 401 dead-letters the job with Graph's code and message).
            self._log(method, target, detail, "graph_token_rejected", logging.INFO)
            await self._tokens.invalidate(token)
            raise error
        if status == 429:
            wait = error.retry_after if isinstance(error, RateLimitError) else None
            self._limiters.pause(resource, key, wait if wait is not None else DEFAULT_THROTTLE_PAUSE_S)
        elif status in _THROTTLED and error.retry_after is not None:
            self._limiters.pause(resource, key, error.retry_after)
        self._log(method, target, detail, "graph_request_failed", logging.WARNING)
        raise error

    async def _send(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None,
        headers: CIMultiDict[str],
        params: Mapping[str, str] | None,
        follow: bool,
    ) -> tuple[int, CIMultiDict[str], bytes]:
        assert self._session is not None
        what = f"{method} {redacted_path(url)}"
        try:
            for _ in range(MAX_REDIRECTS + 1):
                # A fresh stream per send (a retry or redirect sends the body again); a large
                # body given as bytes makes aiohttp warn that it may hold up the event loop.
                payload = io.BytesIO(body) if body is not None and len(body) > _INLINE_BODY else body
                async with self._session.request(
                    method, url, data=payload, headers=headers, params=params, allow_redirects=False
                ) as resp:
                    content = await resp.read()
                    location = resp.headers.get("Location")
                    if not (follow and resp.status in _REDIRECTS and location):
                        return resp.status, CIMultiDict(resp.headers), content
                # Graph redirects to pre-authenticated URLs: never send them the bearer token.
                url = urljoin(str(resp.url), location)
                headers = CIMultiDict((k, v) for k, v in headers.items() if k.lower() != "authorization")
                params = None
                # As browsers (and aiohttp) do: a 303, or a 301/302 after a POST, continues as a GET.
                if (resp.status == 303 and method != "HEAD") or (resp.status in (301, 302) and method == "POST"):
                    method, body = "GET", None
                    headers.popall("Content-Type", None)
        except TimeoutError as exc:
            raise NetworkError(f"Graph did not answer within {self._settings.timeout_seconds:g} s ({what})") from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"Graph not reachable: {type(exc).__name__} ({what})") from exc
        raise PermanentError(f"more than {MAX_REDIRECTS} redirects ({what})")

    def _log(self, method: str, url: str, detail: GraphErrorDetail, event: str, level: int) -> None:
        log.log(
            level,
            "Graph request failed",
            extra={
                "event": event,
                "method": method,
                "path": redacted_path(url),
                "status": detail.status,
                "code": detail.code,
                "request_id": detail.request_id,
                "client_request_id": detail.client_request_id,
                "date": detail.date,
            },
        )


def _default_context(settings: GraphSettings) -> ssl.SSLContext:
    # An explicit context: aiohttp's default reads SSL_CERT_FILE once, at import.
    if settings.ca_bundle is not None:
        return ssl.create_default_context(cafile=str(settings.ca_bundle))
    return ssl.create_default_context()
