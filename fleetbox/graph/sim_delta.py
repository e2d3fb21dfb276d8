"""Delta-query routes of the Graph simulator (contract 5.x).

A round starts with ``GET .../delta`` (the current items, paged), follows absolute
``@odata.nextLink`` URLs and ends with an ``@odata.deltaLink``; GETting that later returns only the
changes since, deleted items as ``{"id": ..., "@removed": {"reason": "deleted"}}``. Tokens are
opaque and reusable until :meth:`DeltaState.expire_all` (then 410 SyncStateNotFound);
``resync_pending`` makes the next token GET answer 410 resyncRequired with a Location to start over.
Page size: ``Prefer: odata.maxpagesize=N`` or ``$top`` (at most 50 for chat messages).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from fleetbox.graph.sim_common import GraphError, Stream, TokenKind, _Cursor, json_response

if TYPE_CHECKING:
    from fleetbox.graph.sim_state import SimState

_MAXPAGESIZE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.IGNORECASE)
MAIL_PAGE = 10
CHAT_PAGE = 50
CHAT_MAX_TOP = 50


def _page_size(request: web.Request, default: int, max_top: int | None) -> tuple[int, bool]:
    """The requested page size and whether it came from a Prefer header."""
    prefer = _MAXPAGESIZE.search(request.headers.get("Prefer", ""))
    if prefer:
        return max(1, int(prefer[1])), True
    top = request.query.get("$top")
    if top is None:
        return default, False
    if not top.isdigit() or int(top) < 1:
        raise GraphError(400, "BadRequest", f"Invalid $top value '{top}'.")
    if max_top is not None and int(top) > max_top:
        raise GraphError(400, "BadRequest", f"$top can be at most {max_top} on this API.")
    return int(top), False


def _answer(
    sim: SimState,
    request: web.Request,
    stream: Stream,
    *,
    default_page: int,
    max_top: int | None,
    removed_type: str,
) -> web.StreamResponse:
    state = sim.delta
    route = request.raw_path.split("?", 1)[0]
    url = f"{sim.authority_host}{route}"
    token = request.query.get("$skiptoken") or request.query.get("$deltatoken")
    if token is not None:
        if state.resync_pending:
            state.resync_pending = False
            raise GraphError(
                410,
                "resyncRequired",
                "The delta token is no longer valid, and the app must reset the sync state.",
                headers={"Location": f"{url}?$deltatoken="},
            )
        cursor = state.cursors.get(token)
        if cursor is None or cursor.stream != stream:
            raise GraphError(
                410,
                "SyncStateNotFound",
                f"The sync state generation is not found; generation={state.seq};[highest={state.seq}].",
            )
        size, preferred = _page_size(request, cursor.page_size, max_top)
        if cursor.kind == "delta":
            pending, since = state.changes(stream, cursor.since_seq, removed_type), state.seq
        else:
            pending, since = cursor.pending, cursor.since_seq
    else:
        size, preferred = _page_size(request, default_page, max_top)
        pending, since = state.current(stream), state.seq
    page, rest = pending[:size], pending[size:]
    body: dict[str, Any] = {"@odata.context": f"{sim.base_url}/$metadata#Collection({removed_type.lstrip('#')})"}
    if rest:
        body["@odata.nextLink"] = f"{url}?$skiptoken={state.issue(_Cursor(stream, 'next', since, size, rest))}"
    else:
        body["@odata.deltaLink"] = f"{url}?$deltatoken={state.issue(_Cursor(stream, 'delta', since, size))}"
    body["value"] = page
    headers = {"Preference-Applied": f"odata.maxpagesize={size}"} if preferred else None
    return json_response(body, headers=headers)


async def mail_delta(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``GET /users/{id}/mailFolders/{folder}/messages/delta`` (and its next/delta links)."""
    sim.authorize(request)
    stream = ("mail", request.match_info["user"].lower(), request.match_info["folder"].lower())
    return _answer(sim, request, stream, default_page=MAIL_PAGE, max_top=None, removed_type="#microsoft.graph.message")


async def chats_delta(sim: SimState, request: web.Request) -> web.StreamResponse:
    """``GET /users/{id}/chats/getAllMessages/delta``: app-only, as in Graph (412 for a delegated token)."""
    info = sim.authorize(request)
    if info.kind is not TokenKind.APP:
        raise GraphError(412, "PreconditionFailed", "Requested API is not supported in delegated context")
    return _answer(
        sim,
        request,
        ("chats",),
        default_page=CHAT_PAGE,
        max_top=CHAT_MAX_TOP,
        removed_type="#microsoft.graph.chatMessage",
    )


ROUTES = [
    ("GET", "/v1.0/users/{user}/mailFolders/{folder}/messages/delta", mail_delta),
    ("GET", "/v1.0/users/{user}/chats/getAllMessages/delta", chats_delta),
]
