"""notifications: Teams activity-feed notifications (sendActivityNotification).

Sent with the application token (TeamsActivity.Send) to one user, in the context of a chat, a
team, or the user's own Teams app; the activity type must be declared in the Teams app manifest.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fleetbox.graph.context import GraphContext, parse
from fleetbox.models import Job
from fleetbox.payloads import ActivityNotification


def notification_request(note: ActivityNotification, graph_root: str) -> tuple[str, dict[str, Any]]:
    """The URL and body of the Graph request for a notification."""
    body: dict[str, Any] = {
        "activityType": note.activity_type,
        "previewText": {"content": note.preview_text},
    }
    if note.template_parameters:
        body["templateParameters"] = [{"name": k, "value": v} for k, v in note.template_parameters.items()]
    recipient = {"@odata.type": "microsoft.graph.aadUserNotificationRecipient", "userId": note.user_id}
    if note.chat_id is not None:
        chat = quote(note.chat_id, safe=":@")
        body["topic"] = {"source": "entityUrl", "value": f"{graph_root}/chats/{chat}"}
        body["recipient"] = recipient
        return f"/chats/{chat}/sendActivityNotification", body
    if note.team_id is not None:
        team = quote(note.team_id, safe="")
        body["topic"] = {"source": "entityUrl", "value": f"{graph_root}/teams/{team}"}
        body["recipient"] = recipient
        return f"/teams/{team}/sendActivityNotification", body
    body["topic"] = {"source": "text", "value": note.topic, "webUrl": note.web_url}
    return f"/users/{quote(note.user_id, safe='@')}/teamwork/sendActivityNotification", body


async def send_notification(ctx: GraphContext, job: Job) -> None:
    """Send the job's activity-feed notification."""
    note = parse(ActivityNotification, job)
    if await ctx.effect(job, "notified") is not None:
        return
    url, body = notification_request(note, ctx.settings.base_url.rstrip("/"))
    response = await ctx.graph.request("POST", url, resource="teams", json=body)
    await ctx.record(job, "notified", None, {"userId": note.user_id, "requestId": response.request_id})
