"""outlook-outbound: mail sent with sendMail from the job's mailbox or the configured sender.

sendMail answers 202 with no message id: the effect recorded is "accepted", which is what Graph
guarantees (delivery is Exchange's job). Paced per mailbox: Outlook's 10,000 requests per 10
minutes and four concurrent requests apply to each app and mailbox pair.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fleetbox.graph.context import GraphContext, parse
from fleetbox.models import Job
from fleetbox.payloads import OutlookEmail


def _recipients(addresses: list[str] | None) -> list[dict[str, Any]]:
    # Graph wants an array of objects; a joined string is ErrorInvalidRecipients.
    return [{"emailAddress": {"address": a}} for a in addresses or ()]


def mail_message(mail: OutlookEmail) -> dict[str, Any]:
    """The Graph message resource of a job's mail."""
    message: dict[str, Any] = {
        "subject": mail.subject,
        "body": {"contentType": "HTML" if mail.body_type == "html" else "Text", "content": mail.body},
        "toRecipients": _recipients(mail.to),
        "importance": mail.importance,
    }
    if mail.cc:
        message["ccRecipients"] = _recipients(mail.cc)
    if mail.bcc:
        message["bccRecipients"] = _recipients(mail.bcc)
    if mail.attachments:
        message["attachments"] = [
            {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": a.name,
                "contentType": a.content_type,
                "contentBytes": a.content_bytes,
            }
            for a in mail.attachments
        ]
    return message


async def send_mail(ctx: GraphContext, job: Job) -> None:
    """Send the job's mail with one sendMail request."""
    mail = parse(OutlookEmail, job)
    if await ctx.effect(job, "sent") is not None:
        return
    mailbox = ctx.mailbox(mail.sender)
    body: dict[str, Any] = {"message": mail_message(mail)}
    if mail.save_to_sent_items is not None:
        body["saveToSentItems"] = mail.save_to_sent_items
    response = await ctx.graph.request(
        "POST", f"/users/{quote(mailbox, safe='@')}/sendMail", resource="outlook", key=mailbox, json=body
    )
    await ctx.record(job, "sent", None, {"mailbox": mailbox, "requestId": response.request_id})
