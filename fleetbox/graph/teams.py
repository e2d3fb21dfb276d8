"""teams-outbound: chat and channel messages, posted as the Teams service account.

Graph accepts application-only message posts only for imports, so these use the delegated token
of the service account that signed in with ``fleetbox auth login``. Each post is paced by the
Teams limiter, by Graph's one-message-per-second limit of the chat or channel, and by its
one-post-per-second limit of a user (the service account).
"""

from __future__ import annotations

from urllib.parse import quote

from fleetbox.graph.context import GraphContext, parse
from fleetbox.graph.ratelimit import Resource
from fleetbox.graph.tokens import TokenKind
from fleetbox.models import Job
from fleetbox.payloads import TeamsMessage


def _seg(value: str) -> str:
    # Chat and channel ids look like 19:abc@thread.v2: ':' and '@' are legal in a path segment.
    return quote(value, safe=":@")


async def send_teams_message(ctx: GraphContext, job: Job) -> None:
    """Post the job's message to its chat, or to its team's channel."""
    message = parse(TeamsMessage, job)
    if await ctx.effect(job, "message") is not None:
        return  # an earlier attempt posted it; its completion was lost
    if message.chat_id is not None:
        url = f"/chats/{_seg(message.chat_id)}/messages"
        key = f"chat:{message.chat_id}"
    else:
        assert message.team_id is not None and message.channel_id is not None  # the payload checks this
        url = f"/teams/{_seg(message.team_id)}/channels/{_seg(message.channel_id)}/messages"
        key = f"channel:{message.team_id}/{message.channel_id}"
    body = {
        "body": {"contentType": message.content_type, "content": message.content},
        "importance": message.importance,
    }
    # Graph paces each user's posts (1/s), and every post here is the one service account's.
    async with ctx.limiters.acquire(Resource.TEAMS_USER):
        response = await ctx.graph.request("POST", url, resource="teams", key=key, token=TokenKind.DELEGATED, json=body)
    posted = response.json()
    await ctx.record(job, "message", str(posted.get("id")), {"target": key, "requestId": response.request_id})
