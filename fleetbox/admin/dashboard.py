"""The web dashboard at ``/ui/``: its static files, sign-in sessions and CSRF protection.

The dashboard is a small ES-module app (``fleetbox/admin/ui/``, shipped in the package, no build
step) that reads and acts through the admin HTTP API and the live stream like any other client.
What it adds on the server is how a browser authenticates:

- ``POST /ui/session`` with ``{"key": ..., "name": ...}`` exchanges the admin key or the read key
  for a session cookie (HttpOnly, SameSite=Strict, Secure over https, path = the mount prefix):
  the key never sits in a URL or in the browser's storage. A wrong key is refused as the API
  refuses it (403 ``invalid_key``).
- The cookie is signed with a secret derived from the configured keys (HMAC-SHA256), so every
  appliance on the same keys accepts it, and changing a key signs everybody out. It carries the
  access level (admin or read), the operator's name for the audit log, and its expiry.
- A request carrying the cookie and no ``x-admin-key`` header is checked here instead of by
  :class:`~fleetbox.admin.auth.KeyCheck`: a read session gets 403 ``read_only_key`` on every
  action; every request that is not a GET needs the ``x-csrf-token`` header (derived from the
  cookie, handed out by ``GET /ui/session`` only to a page that already holds the cookie), and a
  request whose ``Origin`` is another site is refused (403 ``csrf_refused``), which also guards
  the WebSocket.

Mounting behind a reverse proxy: the app uses relative URLs only; the cookie's path is
``admin.path_prefix`` when set, else the ``X-Forwarded-Prefix`` header, else ``/``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files
from typing import Any

from aiohttp import web

from fleetbox.admin.auth import HEADER, Access, KeyCheck, KeyThrottle
from fleetbox.admin.errors import CsrfRefused, MissingKey, NoKeyConfigured, ReadOnlyKey, WrongKey, compact_json
from fleetbox.config import AdminSettings
from fleetbox.errors import InvalidInput
from fleetbox.rules import storable

#: The session cookie's name.
COOKIE = "fleetbox_session"
#: The header a signed-in page sends its CSRF token in.
CSRF_HEADER = "x-csrf-token"
#: How long a session lasts (a working day); signing in again starts a new one.
SESSION_SECONDS = 12 * 3600
#: What a mount prefix may look like (``/ops/fleetbox``): path segments of safe characters.
PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]{1,64}){0,8}$")
#: The static files of the app, by the name in the URL, with their content types.
STATIC = {
    "app.js": "text/javascript",
    "flows.js": "text/javascript",
    "style.css": "text/css",
    "icon.svg": "image/svg+xml",
}
#: Every page and file of the dashboard: scripts and styles from this origin only, nothing inline.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_NAME = 60
#: PBKDF2 rounds of the session secret (a few tenths of a second, once per process)
KDF_ROUNDS = 100_000
_MAX_KEY = 4096


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: its access level, the operator's name, and when it ends."""

    admin: bool
    name: str
    expires: int
    #: the cookie value, from which the CSRF token is derived
    token: str


def _ui_file(name: str) -> bytes:
    return files("fleetbox.admin").joinpath("ui", name).read_bytes()


class Sessions:
    """Issues and checks dashboard sessions for one admin application."""

    def __init__(
        self, settings: AdminSettings, keys: KeyCheck, throttle: KeyThrottle | None = None, *, clock: Any = time.time
    ) -> None:
        self.keys = keys
        #: wrong keys at sign-in count against the address as wrong API keys do
        self.throttle = throttle if throttle is not None else KeyThrottle()
        self._clock = clock
        admin = settings.key.get_secret_value() if settings.key is not None else ""
        read = settings.read_key.get_secret_value() if settings.read_key is not None else ""
        self._material = b"\x00".join(
            [admin.encode("utf-8", "surrogateescape"), read.encode("utf-8", "surrogateescape")]
        )
        self._admin_configured = keys.admin_key_configured
        self._prefix = settings.path_prefix

    # -- the cookie ---------------------------------------------------------------------------

    @cached_property
    def _secret(self) -> bytes:
        # Derived slowly (once, on first use): whoever holds the read key and a cookie must not
        # be able to test guesses of the admin key against the cookie's signature at speed.
        return hashlib.pbkdf2_hmac("sha256", self._material, b"fleetbox-dashboard-session-v1", KDF_ROUNDS)

    def _mac(self, purpose: str, value: str) -> str:
        digest = hmac.new(self._secret, f"{purpose}:{value}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, *, admin: bool, name: str) -> Session:
        """A new session (its ``token`` is the cookie value)."""
        expires = int(self._clock()) + SESSION_SECONDS
        claims = {"a": admin, "n": name, "e": expires, "r": secrets.token_urlsafe(12)}
        body = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).decode().rstrip("=")
        return Session(admin, name, expires, f"{body}.{self._mac('session', body)}")

    def read(self, token: str) -> Session | None:
        """The session a cookie holds, or None when it is forged, damaged or expired."""
        if not token.isascii():
            return None  # a real token is base64url text and a dot
        body, _, mac = token.partition(".")
        if not body or not mac or not hmac.compare_digest(mac, self._mac("session", body)):
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            admin, name, expires = bool(claims["a"]), str(claims["n"]), int(claims["e"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires <= self._clock():
            return None
        return Session(admin, name, expires, token)

    def csrf(self, session: Session) -> str:
        """The CSRF token of a session (the same for its whole life)."""
        return self._mac("csrf", session.token)

    # -- requests -----------------------------------------------------------------------------

    def of(self, request: web.Request) -> Session | None:
        """The session of a request that authenticates with the cookie (None: it sends a key, or
        no cookie). A cookie that does not hold a valid session is a 401."""
        if request.headers.get(HEADER) is not None:
            return None
        token = request.cookies.get(COOKIE)
        if token is None:
            return None
        session = self.read(token)
        if session is None:
            raise MissingKey("the dashboard session has expired or is not valid: sign in again")
        return session

    def check(self, request: web.Request, session: Session, level: Access) -> None:
        """Whether a cookie-authenticated request may do what ``level`` needs (raise if not)."""
        _same_origin(request)
        if request.method not in _SAFE_METHODS:
            given = request.headers.get(CSRF_HEADER, "")
            if not given or not given.isascii() or not hmac.compare_digest(given, self.csrf(session)):
                raise CsrfRefused(f"an action from the dashboard needs its {CSRF_HEADER} header: reload the page")
        if level is Access.ADMIN:
            if not self._admin_configured:
                raise NoKeyConfigured("no admin key is configured, so admin operations are refused")
            if not session.admin:
                raise ReadOnlyKey("this dashboard session was opened with the read key: it can only look")

    def prefix(self, request: web.Request) -> str:
        """Where the app is mounted: the configured prefix, else a well-formed X-Forwarded-Prefix."""
        if self._prefix:
            return self._prefix
        forwarded = request.headers.get("X-Forwarded-Prefix", "").rstrip("/")
        return forwarded if PREFIX.fullmatch(forwarded) else ""

    def secure(self, request: web.Request) -> bool:
        """Whether the browser reached us over https (directly or through a proxy)."""
        return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _same_origin(request: web.Request) -> None:
    # SameSite=Strict already keeps the cookie off cross-site requests; this refuses the rest
    # (a sibling subdomain, an old browser, a cross-site WebSocket) by the Origin header.
    origin = request.headers.get("Origin")
    if origin is None:
        return
    host = origin.split("://", 1)[-1]
    allowed = {request.headers.get("Host"), request.headers.get("X-Forwarded-Host")}
    if host not in allowed:
        raise CsrfRefused(f"a request from another site ({origin[:100]}) cannot use the dashboard session")


SESSIONS = web.AppKey("fleetbox_dashboard_sessions", Sessions)


def guard(request: web.Request, level: Access, keys: KeyCheck) -> None:
    """The admin API's access check: a dashboard session when the request carries its cookie
    (and no key), else the ``x-admin-key`` header."""
    if level is Access.PUBLIC:
        return  # a stale cookie must not shut anyone out of the health document
    sessions = request.app[SESSIONS]
    session = sessions.of(request)
    if session is not None:
        sessions.check(request, session, level)
    else:
        keys.check(level, request.headers.get(HEADER))


def _headers(*, cache: bool) -> dict[str, str]:
    return {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-cache" if cache else "no-store",
    }


async def index(request: web.Request) -> web.Response:
    """The app's page (every view lives in it; the URL fragment says which)."""
    return web.Response(
        body=_ui_file("index.html"), content_type="text/html", charset="utf-8", headers=_headers(cache=False)
    )


async def to_index(request: web.Request) -> web.Response:
    """``/ui`` → ``ui/`` (relative, so it holds behind a proxy's prefix)."""
    raise web.HTTPFound("ui/", headers=_headers(cache=False))


async def static(request: web.Request) -> web.Response:
    """One of the app's files (a fixed list: nothing else on disk is reachable)."""
    name = request.match_info["name"]
    kind = STATIC.get(name)
    if kind is None:
        raise web.HTTPNotFound()
    return web.Response(body=_ui_file(name), content_type=kind, headers=_headers(cache=True))


def _answer(request: web.Request, session: Session) -> dict[str, object]:
    sessions = request.app[SESSIONS]
    return {
        "access": "admin" if session.admin else "read",
        "name": session.name,
        "expiresAt": session.expires,
        "csrfToken": sessions.csrf(session),
    }


async def sign_in(request: web.Request) -> web.Response:
    """Exchange a key for a session cookie: ``{"key": "...", "name": "alice"}``."""
    sessions = request.app[SESSIONS]
    _same_origin(request)
    if request.content_type != "application/json":
        raise InvalidInput("send the key as JSON (Content-Type: application/json)", field="body")
    try:
        body = await request.json()
    except ValueError:
        raise InvalidInput("not JSON", field="body") from None
    if not isinstance(body, dict):
        raise InvalidInput("must be a JSON object with key and name", field="body")
    key, name = body.get("key"), body.get("name", "")
    if not isinstance(key, str) or not key:
        raise MissingKey("enter the admin key or the read key")
    if not isinstance(name, str) or len(name) > _MAX_NAME or not name.isprintable():
        raise InvalidInput(f"your name for the audit log: at most {_MAX_NAME} printable characters", field="name")
    keys = sessions.keys
    address = request.remote or "unknown"
    sessions.throttle.admit(address)
    # A key no header could carry (a lone surrogate, NUL, a megabyte) is simply not a key.
    usable = len(key) <= _MAX_KEY and storable(key)
    if keys.any_configured and not (usable and keys.matches(key)):
        await sessions.throttle.wrong(address)
    if not usable:
        raise WrongKey("that key is neither the admin key nor the read key")
    try:
        keys.check(Access.ADMIN, key)
        admin = True
    except ReadOnlyKey:
        admin = False
    except NoKeyConfigured:
        keys.check(Access.READ, key)  # only a read key is configured: WrongKey unless it is that
        admin = False
    except WrongKey:
        raise WrongKey("that key is neither the admin key nor the read key") from None
    session = sessions.issue(admin=admin, name=name.strip() or ("admin" if admin else "reader"))
    response = web.json_response(_answer(request, session), headers=_headers(cache=False), dumps=compact_json)
    response.set_cookie(
        COOKIE,
        session.token,
        max_age=SESSION_SECONDS,
        path=sessions.prefix(request) + "/",
        httponly=True,
        samesite="Strict",
        secure=sessions.secure(request),
    )
    return response


async def get_session(request: web.Request) -> web.Response:
    """Who is signed in, with the CSRF token (401 when no valid cookie)."""
    sessions = request.app[SESSIONS]
    _same_origin(request)
    token = request.cookies.get(COOKIE)
    session = sessions.read(token) if token else None
    if session is None:
        raise MissingKey("not signed in")
    return web.json_response(_answer(request, session), headers=_headers(cache=False), dumps=compact_json)


async def sign_out(request: web.Request) -> web.Response:
    """Forget the session cookie (needs the CSRF token, like every action)."""
    sessions = request.app[SESSIONS]
    token = request.cookies.get(COOKIE)
    session = sessions.read(token) if token else None
    if session is not None:
        sessions.check(request, session, Access.READ)
    response = web.json_response({"signedOut": True}, headers=_headers(cache=False), dumps=compact_json)
    response.del_cookie(COOKIE, path=sessions.prefix(request) + "/")
    return response


def install(app: web.Application, settings: AdminSettings, keys: KeyCheck, throttle: KeyThrottle) -> None:
    """Serve the dashboard on ``app`` (routes under ``/ui``) and accept its sessions; wrong keys
    at sign-in count in ``throttle`` with the API's."""
    app[SESSIONS] = Sessions(settings, keys, throttle)
    app.router.add_get("/ui", to_index)
    app.router.add_get("/ui/", index)
    app.router.add_post("/ui/session", sign_in)
    app.router.add_get("/ui/session", get_session)
    app.router.add_delete("/ui/session", sign_out)
    app.router.add_get("/ui/{name}", static)
