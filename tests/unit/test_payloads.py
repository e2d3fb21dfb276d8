"""Payload models of the spec's helpers: the spec's examples pass, wrong shapes are named."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from fleetbox.payloads import (
    AttachmentOperation,
    OutlookEmail,
    SyncRequest,
    TeamsMessage,
    WebhookEvent,
)

# The examples from the spec's "Usage" section, as a Python caller writes them.
SPEC_TEAMS = {
    "chatId": "chat-id",
    "content": "Hello from Fleet System!",
    "contentType": "text",
    "importance": "high",
}
SPEC_EMAIL = {
    "to": ["user@example.com"],
    "subject": "Important Update",
    "body": "<h1>Hello!</h1><p>This is an important update.</p>",
    "bodyType": "html",
    "importance": "high",
}
SPEC_ATTACHMENT = {
    "fileId": "file-123",
    "fileName": "document.pdf",
    "fileSize": 1024000,
    "contentType": "application/pdf",
    "operation": "upload",
    "source": "teams",
}
RECEIVED = dt.datetime(2025, 11, 16, 0, 0, tzinfo=dt.UTC)
SPEC_WEBHOOK = {
    "webhookId": "webhook-123",
    "source": "teams",
    "eventType": "message.received",
    "data": {"resource": "chats/1/messages/2"},
    "receivedAt": RECEIVED,
}
SPEC_SYNC = {"resourceType": "messages", "userId": "user-123", "teamId": "team-456", "fullSync": False}


def error_fields(model: type[BaseModel], data: dict[str, Any]) -> set[str]:
    with pytest.raises(PydanticValidationError) as err:
        model.model_validate(data)
    return {".".join(str(p) for p in e["loc"]) for e in err.value.errors()}


def without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}


def test_spec_teams_message() -> None:
    message = TeamsMessage.model_validate(SPEC_TEAMS)
    assert message.chat_id == "chat-id"
    assert message.importance == "high"
    assert message.to_data() == SPEC_TEAMS


def test_teams_channel_message_and_defaults() -> None:
    message = TeamsMessage.model_validate({"teamId": "t1", "channelId": "c1", "content": "hi"})
    assert message.to_data() == {
        "teamId": "t1",
        "channelId": "c1",
        "content": "hi",
        "contentType": "text",
        "importance": "normal",
    }


def test_spec_outlook_email() -> None:
    email = OutlookEmail.model_validate(SPEC_EMAIL)
    assert email.to == ["user@example.com"]
    assert email.body_type == "html"
    assert email.to_data() == SPEC_EMAIL


def test_outlook_email_with_cc_and_bcc() -> None:
    data = {**SPEC_EMAIL, "cc": ["a@example.com"], "bcc": ["b@example.com", "c@example.com"]}
    assert OutlookEmail.model_validate(data).to_data() == data


def test_spec_attachment_upload() -> None:
    attachment = AttachmentOperation.model_validate(SPEC_ATTACHMENT)
    assert attachment.file_size == 1024000
    assert attachment.to_data() == SPEC_ATTACHMENT


def test_spec_webhook_processing() -> None:
    event = WebhookEvent.model_validate(SPEC_WEBHOOK)
    assert event.received_at == RECEIVED
    data = event.to_data()
    assert data["receivedAt"] == "2025-11-16T00:00:00Z"  # JSON-ready for the job payload
    assert data["data"] == {"resource": "chats/1/messages/2"}
    assert json.loads(json.dumps(data)) == data


def test_webhook_received_at_as_iso_text() -> None:
    event = WebhookEvent.model_validate({**SPEC_WEBHOOK, "receivedAt": "2025-11-16T00:00:00Z"})
    assert event.received_at == RECEIVED


def test_spec_sync() -> None:
    sync = SyncRequest.model_validate(SPEC_SYNC)
    assert sync.resource_type == "messages"
    assert sync.full_sync is False
    assert sync.to_data() == SPEC_SYNC


def test_sync_needs_only_a_resource_type() -> None:
    assert SyncRequest.model_validate({"resourceType": "chatMessages"}).to_data() == {
        "resourceType": "chatMessages",
        "fullSync": False,
    }


def test_sync_refuses_a_resource_it_cannot_sync() -> None:
    with pytest.raises(PydanticValidationError, match="resourceType"):
        SyncRequest.model_validate({"resourceType": "events"})


def test_python_field_names_are_accepted_too() -> None:
    sync = SyncRequest(resource_type="messages", user_id="u1", full_sync=True)
    assert sync.to_data() == {"resourceType": "messages", "userId": "u1", "fullSync": True}
    message = TeamsMessage.model_validate({"chat_id": "c", "content": "x", "content_type": "html"})
    assert message.to_data()["contentType"] == "html"


def test_unknown_extra_fields_are_kept() -> None:
    data = {**SPEC_TEAMS, "mentions": [{"id": "u1"}], "replyToId": "m9"}
    out = TeamsMessage.model_validate(data).to_data()
    assert out["mentions"] == [{"id": "u1"}]
    assert out["replyToId"] == "m9"


@pytest.mark.parametrize(
    ("model", "example", "missing"),
    [
        (TeamsMessage, SPEC_TEAMS, "content"),
        (OutlookEmail, SPEC_EMAIL, "to"),
        (OutlookEmail, SPEC_EMAIL, "subject"),
        (OutlookEmail, SPEC_EMAIL, "body"),
        (AttachmentOperation, SPEC_ATTACHMENT, "fileId"),
        (AttachmentOperation, SPEC_ATTACHMENT, "fileName"),
        (AttachmentOperation, SPEC_ATTACHMENT, "fileSize"),
        (AttachmentOperation, SPEC_ATTACHMENT, "contentType"),
        (AttachmentOperation, SPEC_ATTACHMENT, "operation"),
        (AttachmentOperation, SPEC_ATTACHMENT, "source"),
        (WebhookEvent, SPEC_WEBHOOK, "webhookId"),
        (WebhookEvent, SPEC_WEBHOOK, "source"),
        (WebhookEvent, SPEC_WEBHOOK, "eventType"),
        (WebhookEvent, SPEC_WEBHOOK, "data"),
        (WebhookEvent, SPEC_WEBHOOK, "receivedAt"),
        (SyncRequest, SPEC_SYNC, "resourceType"),
    ],
)
def test_missing_required_field_is_named(model: type[BaseModel], example: dict[str, Any], missing: str) -> None:
    assert missing in error_fields(model, without(example, missing))


@pytest.mark.parametrize(
    ("model", "example", "field", "bad"),
    [
        (TeamsMessage, SPEC_TEAMS, "content", ""),
        (TeamsMessage, SPEC_TEAMS, "content", 123),
        (TeamsMessage, SPEC_TEAMS, "contentType", "markdown"),
        (TeamsMessage, SPEC_TEAMS, "importance", "low"),
        (TeamsMessage, SPEC_TEAMS, "chatId", ""),
        (OutlookEmail, SPEC_EMAIL, "to", "user@example.com"),
        (OutlookEmail, SPEC_EMAIL, "to", []),
        (OutlookEmail, SPEC_EMAIL, "to", [42]),
        (OutlookEmail, SPEC_EMAIL, "subject", None),
        (OutlookEmail, SPEC_EMAIL, "bodyType", "rtf"),
        (OutlookEmail, SPEC_EMAIL, "importance", "urgent"),
        (OutlookEmail, SPEC_EMAIL, "cc", "a@example.com"),
        (AttachmentOperation, SPEC_ATTACHMENT, "fileSize", "big"),
        (AttachmentOperation, SPEC_ATTACHMENT, "fileSize", -1),
        (AttachmentOperation, SPEC_ATTACHMENT, "fileSize", 1.5),
        (AttachmentOperation, SPEC_ATTACHMENT, "operation", "delete"),
        (AttachmentOperation, SPEC_ATTACHMENT, "source", "slack"),
        (AttachmentOperation, SPEC_ATTACHMENT, "fileName", ""),
        (WebhookEvent, SPEC_WEBHOOK, "data", [1, 2]),
        (WebhookEvent, SPEC_WEBHOOK, "data", "payload"),
        (WebhookEvent, SPEC_WEBHOOK, "receivedAt", "yesterday"),
        (WebhookEvent, SPEC_WEBHOOK, "source", "github"),
        (WebhookEvent, SPEC_WEBHOOK, "eventType", ""),
        (SyncRequest, SPEC_SYNC, "resourceType", ""),
        (SyncRequest, SPEC_SYNC, "resourceType", ["messages"]),
        (SyncRequest, SPEC_SYNC, "fullSync", "maybe"),
        (SyncRequest, SPEC_SYNC, "userId", 123),
    ],
)
def test_mistyped_field_is_named(model: type[BaseModel], example: dict[str, Any], field: str, bad: object) -> None:
    fields = error_fields(model, {**example, field: bad})
    assert any(f == field or f.startswith(field + ".") for f in fields), fields


@pytest.mark.parametrize(
    "data",
    [
        {"content": "hi"},
        {"teamId": "t1", "content": "hi"},
        {"channelId": "c1", "content": "hi"},
    ],
)
def test_teams_message_needs_a_chat_or_a_channel(data: dict[str, Any]) -> None:
    with pytest.raises(PydanticValidationError, match="give chatId, or teamId and channelId"):
        TeamsMessage.model_validate(data)


@pytest.mark.parametrize("model", [TeamsMessage, OutlookEmail, AttachmentOperation, WebhookEvent, SyncRequest])
@pytest.mark.parametrize("bad", [None, "text", 42, ["list"]])
def test_payload_must_be_an_object(model: type[BaseModel], bad: object) -> None:
    with pytest.raises(PydanticValidationError):
        model.model_validate(bad)
