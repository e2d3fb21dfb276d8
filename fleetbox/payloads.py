"""Payload shapes of the spec's helper methods, checked before a job is written.

Unknown extra fields are kept (processors may use them); missing or mistyped known fields are
rejected with the field's name.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Payload(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class TeamsMessage(Payload):
    """teams-outbound: a chat message (chatId) or a channel message (teamId and channelId)."""

    chat_id: str | None = Field(None, alias="chatId", min_length=1)
    team_id: str | None = Field(None, alias="teamId", min_length=1)
    channel_id: str | None = Field(None, alias="channelId", min_length=1)
    content: str = Field(min_length=1)
    content_type: Literal["text", "html"] = Field("text", alias="contentType")
    importance: Literal["normal", "high", "urgent"] = "normal"

    @model_validator(mode="after")
    def _target(self) -> TeamsMessage:
        if self.chat_id is None and (self.team_id is None or self.channel_id is None):
            raise ValueError("give chatId, or teamId and channelId")
        return self


#: An e-mail address as Graph's recipients take it; Graph resolves it (ErrorInvalidRecipients).
EmailAddress = Annotated[str, Field(pattern=r"^[^@\s;,]+@[^@\s;,]+$", max_length=320)]

#: Graph takes a file attachment inline (base64 in the request) only below 3 MB.
INLINE_ATTACHMENT_LIMIT = 3 * 1024 * 1024

#: Graph's limits on one sendMail: 500 recipients, a 4 MB request.
MAX_RECIPIENTS = 500


class InlineAttachment(Payload):
    """A small file sent inside the message (under 3 MB)."""

    name: str = Field(min_length=1, max_length=255)
    content_type: str = Field("application/octet-stream", alias="contentType", min_length=1)
    #: the file's bytes, base64-encoded
    content_bytes: str = Field(alias="contentBytes", min_length=1)

    @model_validator(mode="after")
    def _size(self) -> InlineAttachment:
        try:
            size = len(base64.b64decode(self.content_bytes, validate=True))
        except (binascii.Error, ValueError):
            raise ValueError("contentBytes must be base64") from None
        if size >= INLINE_ATTACHMENT_LIMIT:
            raise ValueError(f"an inline attachment must be under 3 MB ({size} bytes); use the attachments queue")
        return self


class OutlookEmail(Payload):
    """outlook-outbound: a message sent with sendMail."""

    to: list[EmailAddress] = Field(min_length=1)
    cc: list[EmailAddress] | None = None
    bcc: list[EmailAddress] | None = None
    subject: str
    body: str
    body_type: Literal["text", "html"] = Field("text", alias="bodyType")
    importance: Literal["low", "normal", "high"] = "normal"
    #: the sending mailbox (a user id or userPrincipalName); default: graph.sender
    sender: str | None = Field(None, alias="from", min_length=1)
    attachments: list[InlineAttachment] | None = None
    save_to_sent_items: bool | None = Field(None, alias="saveToSentItems")

    @model_validator(mode="after")
    def _limits(self) -> OutlookEmail:
        if len(self.to) + len(self.cc or ()) + len(self.bcc or ()) > MAX_RECIPIENTS:
            raise ValueError(f"at most {MAX_RECIPIENTS} recipients (to, cc and bcc together)")
        inline = sum(len(a.content_bytes) * 3 // 4 for a in self.attachments or ())
        if inline >= INLINE_ATTACHMENT_LIMIT:
            raise ValueError("inline attachments together must stay under 3 MB; use the attachments queue")
        return self


class ActivityNotification(Payload):
    """notifications: a Teams activity-feed notification to one user.

    Sent in the context of a chat (chatId), a team (teamId) or the user's own Teams app (no
    chatId/teamId). ``activityType`` must be declared in the Teams app manifest.
    """

    user_id: str = Field(alias="userId", min_length=1)
    activity_type: str = Field(alias="activityType", min_length=1)
    preview_text: str = Field(alias="previewText", min_length=1, max_length=150)
    topic: str | None = Field(None, min_length=1)
    web_url: str | None = Field(None, alias="webUrl", min_length=1)
    chat_id: str | None = Field(None, alias="chatId", min_length=1)
    team_id: str | None = Field(None, alias="teamId", min_length=1)
    template_parameters: dict[str, str] | None = Field(None, alias="templateParameters")

    @model_validator(mode="after")
    def _context(self) -> ActivityNotification:
        if self.chat_id is not None and self.team_id is not None:
            raise ValueError("give chatId or teamId, not both")
        if self.chat_id is None and self.team_id is None and (self.topic is None or self.web_url is None):
            raise ValueError("a notification outside a chat or team needs topic and webUrl")
        return self


class AttachmentOperation(Payload):
    """attachments: an upload to or a download from Graph.

    The file lives in the appliance's attachments directory under ``fileId``. An upload to Teams
    goes to a channel's files folder (teamId, channelId), a drive folder (driveId, parentId), or
    with neither to the Teams service account's OneDrive folder ``fleetbox/``; to Outlook it is
    attached to a draft message (userId, messageId). A download reads a drive item (driveId,
    itemId) or a mail attachment (userId, messageId, attachmentId).
    """

    file_id: str = Field(alias="fileId", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")
    file_name: str = Field(alias="fileName", min_length=1, max_length=255)
    file_size: int = Field(alias="fileSize", ge=0)
    content_type: str = Field(alias="contentType", min_length=1)
    operation: Literal["upload", "download"]
    source: Literal["teams", "outlook"]
    team_id: str | None = Field(None, alias="teamId", min_length=1)
    channel_id: str | None = Field(None, alias="channelId", min_length=1)
    drive_id: str | None = Field(None, alias="driveId", min_length=1)
    parent_id: str | None = Field(None, alias="parentId", min_length=1)
    item_id: str | None = Field(None, alias="itemId", min_length=1)
    user_id: str | None = Field(None, alias="userId", min_length=1)
    message_id: str | None = Field(None, alias="messageId", min_length=1)
    attachment_id: str | None = Field(None, alias="attachmentId", min_length=1)

    @model_validator(mode="after")
    def _target(self) -> AttachmentOperation:
        if self.file_id in (".", ".."):
            raise ValueError("fileId must name a file")
        needs = {
            ("upload", "teams"): (("team_id", "channel_id"), ("drive_id", "parent_id"), ()),
            ("upload", "outlook"): (("user_id", "message_id"),),
            ("download", "teams"): (("drive_id", "item_id"),),
            ("download", "outlook"): (("user_id", "message_id", "attachment_id"),),
        }[(self.operation, self.source)]
        if not any(all(getattr(self, f) is not None for f in group) for group in needs):
            options = " or ".join(", ".join(_ALIASES[f] for f in group) for group in needs)
            raise ValueError(f"a {self.source} {self.operation} needs {options}")
        return self


_ALIASES = {
    "team_id": "teamId",
    "channel_id": "channelId",
    "drive_id": "driveId",
    "parent_id": "parentId",
    "item_id": "itemId",
    "user_id": "userId",
    "message_id": "messageId",
    "attachment_id": "attachmentId",
}


class WebhookEvent(Payload):
    """webhooks: a received change notification to process."""

    webhook_id: str = Field(alias="webhookId", min_length=1)
    source: Literal["teams", "outlook"]
    event_type: str = Field(alias="eventType", min_length=1)
    data: dict[str, Any]
    received_at: dt.datetime = Field(alias="receivedAt")


class SyncRequest(Payload):
    """sync: a delta sync of a user's mail folder (messages) or of the user's chats (chatMessages)."""

    resource_type: Literal["messages", "chatMessages"] = Field(alias="resourceType")
    #: the mailbox or user; default: graph.sender
    user_id: str | None = Field(None, alias="userId", min_length=1)
    team_id: str | None = Field(None, alias="teamId")
    #: the mail folder of a messages sync (default inbox)
    folder: str | None = Field(None, min_length=1)
    full_sync: bool = Field(False, alias="fullSync")


class InboundMessage(Payload):
    """teams-inbound, outlook-inbound: fetch and store the message a notification points to."""

    #: the notification's resource, relative to the Graph root
    resource: str = Field(min_length=1)
    change_type: Literal["created", "updated", "deleted"] = Field("created", alias="changeType")
