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
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from fleetbox.graph.sim_common import GraphError, TokenKind, json_response

if TYPE_CHECKING:
    from fleetbox.graph.simulator import GraphSimulator

Stream = tuple[str, ...]
_MAXPAGESIZE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.IGNORECASE)
MAIL_PAGE = 10
CHAT_PAGE = 50
CHAT_MAX_TOP = 50


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
    sim: GraphSimulator,
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


async def mail_delta(sim: GraphSimulator, request: web.Request) -> web.StreamResponse:
    """``GET /users/{id}/mailFolders/{folder}/messages/delta`` (and its next/delta links)."""
    sim.authorize(request)
    stream = ("mail", request.match_info["user"].lower(), request.match_info["folder"].lower())
    return _answer(sim, request, stream, default_page=MAIL_PAGE, max_top=None, removed_type="#microsoft.graph.message")


async def chats_delta(sim: GraphSimulator, request: web.Request) -> web.StreamResponse:
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
