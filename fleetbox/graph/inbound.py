"""teams-inbound and outlook-inbound: fetch and store the message a change notification names.

Idempotent: a message is one row keyed by (source, container, Graph id); a replayed notification
or a later version updates that row, and a deletion marks it deleted without fetching.
"""

from __future__ import annotations

import re
from typing import Literal

from fleetbox.errors import PermanentError, ValidationError
from fleetbox.graph.context import GraphContext, parse
from fleetbox.models import Job
from fleetbox.payloads import InboundMessage

# chats('19:x@thread.v2')/messages('1616991463150'), teams('t')/channels('c')/messages('m'),
# Users/{user}/Messages/{id} (Graph's spelling varies in case and quoting)
_CHAT = re.compile(r"^/?chats\('?(?P<chat>[^'/)]+)'?\)/messages\('?(?P<id>[^'/)]+)'?\)$", re.IGNORECASE)
_CHANNEL = re.compile(
    r"^/?teams\('?(?P<team>[^'/)]+)'?\)/channels\('?(?P<channel>[^'/)]+)'?\)/messages\('?(?P<id>[^'/)]+)'?\)$",
    re.IGNORECASE,
)
_MAIL = re.compile(r"^/?users/(?P<user>[^/]+)/messages/(?P<id>[^/]+)$", re.IGNORECASE)


def locate(source: Literal["teams", "outlook"], resource: str) -> tuple[str, str, str]:
    """(container, message id, Graph path) of a notification's resource."""
    if source == "teams":
        if m := _CHAT.match(resource):
            return f"chat:{m['chat']}", m["id"], f"/chats/{m['chat']}/messages/{m['id']}"
        if m := _CHANNEL.match(resource):
            container = f"channel:{m['team']}/{m['channel']}"
            return container, m["id"], f"/teams/{m['team']}/channels/{m['channel']}/messages/{m['id']}"
    elif m := _MAIL.match(resource):
        return f"mailbox:{m['user']}", m["id"], f"/users/{m['user']}/messages/{m['id']}"
    raise ValidationError(f"resource {resource!r} is not a {source} message")


async def fetch_inbound(ctx: GraphContext, job: Job) -> None:
    """Store the message the job's notification points to (or mark it deleted)."""
    source: Literal["teams", "outlook"] = "teams" if job.queue == "teams-inbound" else "outlook"
    note = parse(InboundMessage, job)
    container, message_id, path = locate(source, note.resource)
    if note.change_type == "deleted":
        await ctx.store.graph.save_message(source, container, message_id, {"id": message_id}, True)
        return
    resource, key = ("teams", None) if source == "teams" else ("outlook", container.removeprefix("mailbox:"))
    try:
        response = await ctx.graph.request("GET", path, resource=resource, key=key)
    except PermanentError as exc:
        if exc.graph is None or exc.graph.status != 404:
            raise
        # Gone before we got to it (deleted right after it was created): nothing to store.
        await ctx.store.graph.save_message(source, container, message_id, {"id": message_id}, True)
        return
    await ctx.store.graph.save_message(source, container, message_id, response.json(), False)
