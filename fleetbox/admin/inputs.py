"""Reading client input outside the models: the JSON body, the acting operator, the connection.

Paths, queries and bodies are described and checked by :mod:`fleetbox.admin.models`; this reads
the raw JSON body for them and raises InvalidInput (or one of the admin body errors) naming what
is wrong, so nothing a client sends can reach a handler unchecked.
"""

from __future__ import annotations

import json
import re
import socket
import struct
from typing import Any

from aiohttp import web

from fleetbox.admin.errors import BodyTooLarge, MalformedBody, UnsupportedMediaType
from fleetbox.errors import InvalidInput
from fleetbox.protocol import OPERATOR_HEADER
from fleetbox.rules import MAX_ACTOR, storable

_INT = re.compile(r"-?[0-9]{1,20}")
ACTOR_HEADER = "x-admin-actor"
#: An actor header: a visible first character (HTTP drops leading white space), then no control
#: characters (C0, DEL, C1). Linear: no two quantifiers compete for the same characters.
ACTOR_PATTERN = r"^[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
_ACTOR = re.compile(ACTOR_PATTERN)
DEFAULT_ACTOR = "admin-api"


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
    if len(values) > 1 or not 1 <= len(value) <= MAX_ACTOR or not _ACTOR.fullmatch(value) or not storable(value):
        raise InvalidInput(
            f"must be one header of 1 to {MAX_ACTOR} characters, not blank, no control characters", field=name
        )
    return value


def named_actor(request: web.Request) -> str | None:
    """The actor the caller named: the ``X-Fleetbox-Operator`` header (the terminal UI sends the
    operator's login name), else ``x-admin-actor`` (the dashboard sends ``dashboard:<name>``)."""
    operator = _header(request, OPERATOR_HEADER)
    named = _header(request, ACTOR_HEADER)
    # Both sent: the operator's login name (what the terminal UI sends) wins.
    return operator or named


def actor(request: web.Request) -> str:
    """Who acts, for the audit log: the actor the caller named (:func:`named_actor`); without one,
    ``socket:<uid>`` of the connecting process on the control socket and ``admin-api`` over TCP."""
    given = named_actor(request)
    if given is not None:
        return given
    if via_control_socket(request):
        uid = _peer_uid(request)
        return f"socket:{uid}" if uid is not None else "socket"
    return DEFAULT_ACTOR
