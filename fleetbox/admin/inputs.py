"""Reading client input: query parameters, path parameters, JSON bodies, the acting operator.

Every reader raises :class:`~fleetbox.errors.InvalidInput` naming the parameter (or one of the
admin body errors), so nothing a client sends can reach a handler unchecked.
"""

from __future__ import annotations

import json
import re
import socket
import struct
from collections.abc import Collection
from typing import Any

from aiohttp import web

from fleetbox.admin.errors import BodyTooLarge, MalformedBody, UnsupportedMediaType
from fleetbox.errors import InvalidInput
from fleetbox.protocol import OPERATOR_HEADER
from fleetbox.rules import MAX_ACTOR, parse_path_id, parse_yes_no, storable

_INT = re.compile(r"-?[0-9]{1,20}")
ACTOR_HEADER = "x-admin-actor"
DEFAULT_ACTOR = "admin-api"


def _single(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise InvalidInput("given more than once", field=name)
    return values[0] if values else None


def query_int(request: web.Request, name: str, *, default: int | None, minimum: int, maximum: int) -> int | None:
    """An integer query parameter within ``[minimum, maximum]``."""
    raw = _single(request, name)
    if raw is None:
        return default
    if not _INT.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise InvalidInput(f"must be an integer from {minimum} to {maximum}, got {raw[:40]!r}", field=name)
    return int(raw)


def query_choice(request: web.Request, name: str, choices: Collection[str]) -> str | None:
    """A query parameter that must be one of ``choices``."""
    raw = _single(request, name)
    if raw is None:
        return None
    if raw not in choices:
        raise InvalidInput(f"must be one of {', '.join(choices)}, got {raw[:40]!r}", field=name)
    return raw


def query_bool(request: web.Request, name: str) -> bool | None:
    """``true``/``yes`` or ``false``/``no``."""
    raw = _single(request, name)
    return None if raw is None else parse_yes_no(raw, name)


def query_text(request: web.Request, name: str, *, limit: int = 200) -> str | None:
    """A free-text query parameter of 1 to ``limit`` characters."""
    raw = _single(request, name)
    if raw is None:
        return None
    if not 1 <= len(raw) <= limit or not storable(raw):
        raise InvalidInput(f"must be 1 to {limit} characters of valid Unicode, without NUL", field=name)
    return raw


def path_id(request: web.Request, name: str) -> int:
    """A positive id of at most 18 digits from the path."""
    return parse_path_id(request.match_info[name], name)


def json_int(body: dict[str, Any], name: str, *, minimum: int, maximum: int, required: bool = False) -> int | None:
    """An integer field of a JSON body."""
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidInput("is required", field=name)
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise InvalidInput(f"must be an integer from {minimum} to {maximum}", field=name)
    return value


def json_text(body: dict[str, Any], name: str, *, limit: int = 200, required: bool = False) -> str | None:
    """A string field of a JSON body (1 to ``limit`` characters)."""
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidInput("is required", field=name)
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= limit or not storable(value):
        raise InvalidInput(f"must be a string of 1 to {limit} characters of valid Unicode, without NUL", field=name)
    return value


def json_bool(body: dict[str, Any], name: str) -> bool | None:
    """A boolean field of a JSON body."""
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidInput("must be true or false", field=name)
    return value


def reject_unknown(body: dict[str, Any], allowed: Collection[str]) -> None:
    """Refuse fields the operation does not know (a typo would otherwise be ignored silently)."""
    unknown = sorted(k for k in body if k not in allowed)
    if unknown:
        raise InvalidInput(
            f"unknown field(s) {', '.join(repr(k[:40]) for k in unknown[:5])}; known: {', '.join(allowed)}",
            field="body",
        )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object."""
    if request.content_length is not None and request.content_length > request.client_max_size:
        raise BodyTooLarge(f"the request body is larger than the limit of {request.client_max_size} bytes")
    if not request.body_exists:
        raise InvalidInput("a JSON object is required (Content-Type: application/json)", field="body")
    ctype = request.content_type
    if ctype != "application/json" and not (ctype.startswith("application/") and ctype.endswith("+json")):
        raise UnsupportedMediaType(f"the body must be application/json, got {ctype[:80]!r}", field="body")
    raw = await request.read()
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise MalformedBody("the body is not UTF-8", field="body") from None
    except RecursionError:
        raise MalformedBody("the body is nested too deeply", field="body") from None
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise MalformedBody(f"the body is not valid JSON: {exc}", field="body") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"must be a JSON object, got {type(value).__name__}", field="body")
    return value


def via_control_socket(request: web.Request) -> bool:
    """Whether the request came in on the unix control socket (its file permissions are the access
    control there). Decided by the connection's socket family, never by anything the client sends."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    return sock is not None and sock.family == socket.AF_UNIX


def _peer_uid(request: web.Request) -> int | None:
    """The user id of the process at the other end of a unix socket (SO_PEERCRED, Linux)."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    option = getattr(socket, "SO_PEERCRED", None)
    if sock is None or option is None:
        return None
    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    except OSError:
        return None
    return int(uid)


def _header(request: web.Request, name: str) -> str | None:
    values = request.headers.getall(name, [])
    if not values:
        return None
    value = values[0]
    if len(values) > 1 or not 1 <= len(value) <= MAX_ACTOR or not value.isprintable() or not storable(value):
        raise InvalidInput(f"must be one header of 1 to {MAX_ACTOR} printable characters", field=name)
    return value


def actor(request: web.Request) -> str:
    """Who acts, for the audit log: the ``X-Fleetbox-Operator`` header (the terminal UI sends the
    operator's login name) or ``x-admin-actor``; without either, ``socket:<uid>`` of the connecting
    process on the control socket and ``admin-api`` over TCP."""
    operator = _header(request, OPERATOR_HEADER)
    named = _header(request, ACTOR_HEADER)
    if operator is not None and named is not None and operator != named:
        raise InvalidInput(f"differs from {ACTOR_HEADER}: send one of the two", field=OPERATOR_HEADER)
    given = operator or named
    if given is not None:
        return given
    if via_control_socket(request):
        uid = _peer_uid(request)
        return f"socket:{uid}" if uid is not None else "socket"
    return DEFAULT_ACTOR
