"""HTTP errors of the admin API: the one place where an error becomes a status code.

Handlers and the parts they call raise :mod:`fleetbox.errors` classes (and the few admin-only
classes below); :func:`error_middleware` turns each into a status and the JSON body
``{"error": {"code": ..., "message": ..., "field": ...}}`` (``field`` only when the error names
one). aiohttp's own errors (no such path 404, wrong method 405, body over ``client_max_size``
413) get the same body. Anything else is a bug: it is logged with its traceback and answered
500 ``internal_error`` with no detail.

=========================  ======  ==========================
error                      status  code
=========================  ======  ==========================
MissingKey                 401     missing_key
WrongKey                   403     invalid_key
ReadOnlyKey                403     read_only_key
TooManyWrongKeys           429     too_many_wrong_keys
NoKeyConfigured            403     admin_key_not_configured
UnknownQueue               404     unknown_queue
NotFound                   404     not_found
BodyTooLarge               413     payload_too_large
UnsupportedMediaType       415     unsupported_media_type
MalformedBody              400     malformed_json
InvalidInput               400     invalid_input
Conflict                   409     conflict
UpgradeRequired            426     upgrade_required
SchemaNotReady             503     schema_not_ready
DatabaseError              503     database_unavailable
=========================  ======  ==========================
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from fleetbox.errors import (
    ConfigError,
    Conflict,
    DatabaseError,
    FleetboxError,
    InvalidInput,
    NotFound,
    SchemaNotReady,
    UnknownQueue,
)

log = logging.getLogger("fleetbox.admin")


class AccessError(FleetboxError):
    """The request may not do this (the key is missing, wrong, or not enough)."""


class MissingKey(AccessError):
    """No x-admin-key header was sent."""


class WrongKey(AccessError):
    """The x-admin-key header matches no configured key."""


class ReadOnlyKey(AccessError):
    """The read-only key was sent for an operation that changes state."""


class TooManyWrongKeys(AccessError):
    """The client's address sent too many wrong keys: its keyed requests wait (Retry-After)."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NoKeyConfigured(AccessError):
    """No admin key is configured, so admin operations are refused."""


class CsrfRefused(AccessError):
    """A dashboard action without its CSRF token, or from another site (fleetbox.admin.dashboard)."""


class MalformedBody(InvalidInput):
    """The request body is not valid JSON (or not UTF-8)."""


class UnsupportedMediaType(InvalidInput):
    """The request body is not ``application/json``."""


class BodyTooLarge(InvalidInput):
    """The request body is larger than the admin API accepts."""


class UpgradeRequired(FleetboxError):
    """A WebSocket endpoint was called as plain HTTP (no ``Upgrade: websocket``)."""


#: (error class, HTTP status, code), most specific first: the first match wins.
ERROR_TABLE: tuple[tuple[type[FleetboxError], int, str], ...] = (
    (MissingKey, 401, "missing_key"),
    (WrongKey, 403, "invalid_key"),
    (ReadOnlyKey, 403, "read_only_key"),
    (TooManyWrongKeys, 429, "too_many_wrong_keys"),
    (NoKeyConfigured, 403, "admin_key_not_configured"),
    (CsrfRefused, 403, "csrf_refused"),
    (UnknownQueue, 404, "unknown_queue"),
    (NotFound, 404, "not_found"),
    (BodyTooLarge, 413, "payload_too_large"),
    (UnsupportedMediaType, 415, "unsupported_media_type"),
    (MalformedBody, 400, "malformed_json"),
    (InvalidInput, 400, "invalid_input"),
    (Conflict, 409, "conflict"),
    (UpgradeRequired, 426, "upgrade_required"),
    (ConfigError, 422, "invalid_configuration"),
    (SchemaNotReady, 503, "schema_not_ready"),
    (DatabaseError, 503, "database_unavailable"),
)

#: aiohttp's own errors (raised before or around a handler) by status.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    431: "headers_too_large",
}

#: Every status this API answers with, for the OpenAPI document.
ERROR_STATUSES = sorted({status for _cls, status, _code in ERROR_TABLE})


def classify(exc: FleetboxError) -> tuple[int, str]:
    """The HTTP status and error code of a fleetbox error (500 for anything unexpected)."""
    for cls, status, code in ERROR_TABLE:
        if isinstance(exc, cls):
            return status, code
    return 500, "internal_error"


def error_body(code: str, message: str, field: str | None = None) -> dict[str, object]:
    """The JSON error body."""
    error: dict[str, object] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    """An error as a JSON response: compact, as every answer is (the README says so)."""
    return web.json_response(error_body(code, message, field), status=status, dumps=compact_json)


def compact_json(value: object) -> str:
    """JSON text without spaces: how every answer of the admin API is written."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _from_http(exc: web.HTTPException, request: web.Request) -> web.Response:
    status = exc.status
    code = _HTTP_CODES.get(status, "bad_request" if status < 500 else "internal_error")
    if status == 404:
        message = f"no such endpoint: {request.method} {request.path}"
    elif status == 405:
        allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
        message = f"{request.method} is not allowed on {request.path}" + (f" (allowed: {allowed})" if allowed else "")
    elif status == 413:
        message = f"the request body is larger than the limit of {request.client_max_size} bytes"
    else:
        message = exc.reason or "bad request"
    response = error_response(status, code, message)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Set on a request (to its prepared response) once its connection became a WebSocket: from then
#: on no HTTP answer may be written on it.
UPGRADED = web.RequestKey("fleetbox_upgraded", web.StreamResponse)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error with the JSON error body and the status from :data:`ERROR_TABLE`
    (after a WebSocket upgrade the error is logged and the socket's own response returned)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _upgraded(request, exc) or _from_http(exc, request)
    except FleetboxError as exc:
        return _upgraded(request, exc) or _from_fleetbox(exc, request)
    except Exception as exc:
        where = {"method": request.method, "path": request.path}
        log.error("admin request failed unexpectedly", exc_info=exc, extra={"event": "admin_internal_error", **where})
        return _upgraded(request, None) or error_response(
            500, "internal_error", "internal error; the appliance log has the details"
        )


def _upgraded(request: web.Request, exc: Exception | None) -> web.StreamResponse | None:
    """The WebSocket's response when the connection was upgraded (no HTTP answer can follow)."""
    upgraded: web.StreamResponse | None = request.get(UPGRADED)
    if upgraded is None:
        return None
    if exc is not None:
        where = {"method": request.method, "path": request.path}
        log.error("stream failed after the upgrade", exc_info=exc, extra={"event": "admin_internal_error", **where})
    return upgraded


def _from_fleetbox(exc: FleetboxError, request: web.Request) -> web.Response:
    status, code = classify(exc)
    if status >= 500:
        # The driver's message may quote stored values: it goes to the log, not the client.
        log.error(
            "admin request failed",
            extra={"event": "admin_request_failed", "method": request.method, "path": request.path, "error": str(exc)},
        )
        message = {
            "schema_not_ready": "the fleetbox schema is not ready: run `fleetbox migrate`",
            "database_unavailable": "the database is unreachable or failed; the appliance log has the details",
        }.get(code, "internal error; the appliance log has the details")
        return error_response(status, code, message)
    field = exc.field if isinstance(exc, InvalidInput) else None
    response = error_response(status, code, str(exc), field)
    if isinstance(exc, TooManyWrongKeys):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response
