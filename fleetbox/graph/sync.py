"""sync: delta queries for a user's mail folder or chats, resumed from the stored delta link.

A round follows ``@odata.nextLink`` to the page that carries ``@odata.deltaLink``, storing every
message (``@removed`` ones are marked deleted); the delta link is kept in sync_history and the
next round starts from it. When Graph says the sync state is gone (410, syncStateNotFound,
resyncRequired), the round starts over as a full sync. Links are followed verbatim within a
round; the delta link is stored relative to ``graph.base_url`` (and an absolute one stored earlier
is rebased onto it), so it survives a restart of the built-in simulator on another port. A token
the Graph behind that root does not know answers 410 and the round starts over.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fleetbox.errors import SyncStateLost, ValidationError
from fleetbox.graph.context import GraphContext, parse
from fleetbox.models import Job
from fleetbox.payloads import SyncRequest

#: items per page asked of Graph (chat message delta allows at most 50)
PAGE_SIZE = 50


async def run_sync(ctx: GraphContext, job: Job) -> None:
    """One delta round of the job's resource."""
    request = parse(SyncRequest, job)
    user = request.user_id or ctx.settings.sender
    if not user:
        raise ValidationError("sync payload: userId is required (or set graph.sender)")
    limit: tuple[str, str | None]
    if request.resource_type == "messages":
        folder = request.folder or "inbox"
        start = f"/users/{quote(user, safe='@')}/mailFolders/{quote(folder, safe='')}/messages/delta"
        scope, source, container, limit = f"{user}/{folder}", "outlook", f"mailbox:{user}", ("outlook", user)
    else:
        start = f"/users/{quote(user, safe='@')}/chats/getAllMessages/delta"
        scope, source, container, limit = user, "teams", None, ("teams", None)
    full = request.full_sync
    stored = None if full else await ctx.store.graph.last_delta_link(request.resource_type, scope)
    link = ctx.graph.relative(stored) if stored is not None else None
    history_id = await ctx.store.graph.sync_started(request.resource_type, scope, full or link is None)
    try:
        try:
            delta_link, items = await _round(ctx, link or start, source, container, limit)
        except SyncStateLost:
            if link is None:
                raise
            # The stored delta link expired: everything must be read again.
            await ctx.store.graph.sync_finished(history_id, None, 0, "sync state lost: full resync")
            history_id = await ctx.store.graph.sync_started(request.resource_type, scope, True)
            delta_link, items = await _round(ctx, start, source, container, limit)
    except Exception as exc:
        await ctx.store.graph.sync_finished(history_id, None, None, f"{type(exc).__name__}: {exc}")
        raise
    await ctx.store.graph.sync_finished(history_id, ctx.graph.relative(delta_link), items, None)


async def _round(
    ctx: GraphContext, url: str, source: str, container: str | None, limit: tuple[str, str | None]
) -> tuple[str, int]:
    items = 0
    params: dict[str, str] | None = {"$top": str(PAGE_SIZE)} if "$deltatoken" not in url else None
    while True:
        response = await ctx.graph.request(
            "GET",
            url,
            resource=limit[0],
            key=limit[1],
            params=params,
            headers={"Prefer": f"odata.maxpagesize={PAGE_SIZE}"},
        )
        params = None  # nextLink and deltaLink carry the query themselves
        page: dict[str, Any] = response.json()
        for item in page.get("value", []):
            await _store(ctx, source, container, item)
            items += 1
        if next_link := page.get("@odata.nextLink"):
            url = next_link
            continue
        delta_link = page.get("@odata.deltaLink")
        if not isinstance(delta_link, str):
            raise ValidationError("a delta page carried neither @odata.nextLink nor @odata.deltaLink")
        return delta_link, items


async def _store(ctx: GraphContext, source: str, container: str | None, item: dict[str, Any]) -> None:
    graph_id = str(item.get("id", ""))
    if not graph_id:
        return
    if "@removed" in item and container is None:
        # Graph names only the id of a removed chat message, not its chat.
        await ctx.store.graph.mark_message_removed(source, graph_id)
        return
    where = container or f"chat:{item.get('chatId') or 'unknown'}"
    await ctx.store.graph.save_message(source, where, graph_id, item, "@removed" in item)
