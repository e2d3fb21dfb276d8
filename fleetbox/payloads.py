"""Payload shapes of the spec's helper methods, checked before a job is written.

Unknown extra fields are kept (processors may use them); missing or mistyped known fields are
rejected with the field's name.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class TeamsMessage(_Payload):
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


class OutlookEmail(_Payload):
    """outlook-outbound: a message sent with sendMail."""

    to: list[str] = Field(min_length=1)
    cc: list[str] | None = None
    bcc: list[str] | None = None
    subject: str
    body: str
    body_type: Literal["text", "html"] = Field("text", alias="bodyType")
    importance: Literal["low", "normal", "high"] = "normal"


class AttachmentOperation(_Payload):
    """attachments: an upload to or a download from Graph."""

    file_id: str = Field(alias="fileId", min_length=1)
    file_name: str = Field(alias="fileName", min_length=1)
    file_size: int = Field(alias="fileSize", ge=0)
    content_type: str = Field(alias="contentType", min_length=1)
    operation: Literal["upload", "download"]
    source: Literal["teams", "outlook"]


class WebhookEvent(_Payload):
    """webhooks: a received change notification to process."""

    webhook_id: str = Field(alias="webhookId", min_length=1)
    source: Literal["teams", "outlook"]
    event_type: str = Field(alias="eventType", min_length=1)
    data: dict[str, Any]
    received_at: dt.datetime = Field(alias="receivedAt")


class SyncRequest(_Payload):
    """sync: a delta sync of a resource."""

    resource_type: str = Field(alias="resourceType", min_length=1)
    user_id: str | None = Field(None, alias="userId")
    team_id: str | None = Field(None, alias="teamId")
    full_sync: bool = Field(False, alias="fullSync")
