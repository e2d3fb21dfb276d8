"""The Graph queues' payloads: what each processor accepts, and what it refuses before any write."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import ValidationError as PydanticValidationError

from fleetbox.graph.inbound import locate
from fleetbox.graph.notifications import notification_request
from fleetbox.graph.outlook import mail_message
from fleetbox.graph.webhooks import dedupe_key, source_of
from fleetbox.payloads import ActivityNotification, AttachmentOperation, OutlookEmail

GRAPH = "https://graph.microsoft.com/v1.0"


def test_mail_message_has_recipients_as_object_arrays_and_graph_casing() -> None:
    mail = OutlookEmail.model_validate(
        {
            "to": ["a@x.example"],
            "cc": ["b@x.example"],
            "bcc": ["c@x.example"],
            "subject": "S",
            "body": "<b>hi</b>",
            "bodyType": "html",
            "importance": "high",
        }
    )
    message = mail_message(mail)
    assert message["toRecipients"] == [{"emailAddress": {"address": "a@x.example"}}]
    assert message["ccRecipients"] == [{"emailAddress": {"address": "b@x.example"}}]
    assert message["bccRecipients"] == [{"emailAddress": {"address": "c@x.example"}}]
    assert message["body"] == {"contentType": "HTML", "content": "<b>hi</b>"}
    assert message["importance"] == "high"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"to": ["a@x.example; b@x.example"]}, "to.0"),
        ({"to": []}, "to"),
        ({"to": [f"u{i}@x.example" for i in range(501)]}, "500 recipients"),
        ({"attachments": [{"name": "a", "contentBytes": "not base64!"}]}, "base64"),
        (
            {"attachments": [{"name": "big", "contentBytes": base64.b64encode(b"x" * (3 * 1024 * 1024)).decode()}]},
            "under 3 MB",
        ),
        ({"importance": "urgent"}, "importance"),
    ],
)
def test_mail_refuses_what_graph_would_refuse(change: dict[str, Any], field: str) -> None:
    with pytest.raises(PydanticValidationError, match=field.replace(".", r"\.")):
        OutlookEmail.model_validate({"to": ["a@x.example"], "subject": "S", "body": "B", **change})


def test_small_inline_attachment_is_sent_as_a_file_attachment() -> None:
    data = base64.b64encode(b"hello").decode()
    mail = OutlookEmail.model_validate(
        {
            "to": ["a@x.example"],
            "subject": "S",
            "body": "B",
            "attachments": [{"name": "a.txt", "contentType": "text/plain", "contentBytes": data}],
        }
    )
    assert mail_message(mail)["attachments"] == [
        {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": "a.txt",
            "contentType": "text/plain",
            "contentBytes": data,
        }
    ]


def test_activity_notification_in_a_chat_names_the_chat_and_the_recipient() -> None:
    note = ActivityNotification.model_validate(
        {
            "userId": "u-1",
            "chatId": "19:abc@thread.v2",
            "activityType": "taskCreated",
            "previewText": "New task",
            "templateParameters": {"taskId": "T-9"},
        }
    )
    url, body = notification_request(note, GRAPH)
    assert url == "/chats/19:abc@thread.v2/sendActivityNotification"
    assert body["topic"] == {"source": "entityUrl", "value": f"{GRAPH}/chats/19:abc@thread.v2"}
    assert body["recipient"] == {"@odata.type": "microsoft.graph.aadUserNotificationRecipient", "userId": "u-1"}
    assert body["previewText"] == {"content": "New task"}
    assert body["templateParameters"] == [{"name": "taskId", "value": "T-9"}]


def test_activity_notification_to_a_user_needs_a_topic_and_url() -> None:
    with pytest.raises(PydanticValidationError, match="topic and webUrl"):
        ActivityNotification.model_validate({"userId": "u", "activityType": "t", "previewText": "p"})
    note = ActivityNotification.model_validate(
        {"userId": "u", "activityType": "t", "previewText": "p", "topic": "Fleet", "webUrl": "https://x.example/1"}
    )
    url, body = notification_request(note, GRAPH)
    assert url == "/users/u/teamwork/sendActivityNotification"
    assert body["topic"] == {"source": "text", "value": "Fleet", "webUrl": "https://x.example/1"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"operation": "download", "source": "teams"}, "driveId, itemId"),
        ({"operation": "download", "source": "outlook", "userId": "u"}, "userId, messageId, attachmentId"),
        ({"operation": "upload", "source": "outlook"}, "userId, messageId"),
        ({"operation": "upload", "source": "teams", "fileId": "../etc/passwd"}, "fileId"),
    ],
)
def test_attachment_operations_name_what_is_missing(data: dict[str, Any], message: str) -> None:
    base = {"fileId": "f-1", "fileName": "a.pdf", "fileSize": 10, "contentType": "application/pdf"}
    with pytest.raises(PydanticValidationError, match=message):
        AttachmentOperation.model_validate({**base, **data})


def test_spec_attachment_upload_goes_to_the_service_accounts_drive() -> None:
    op = AttachmentOperation.model_validate(
        {
            "fileId": "file-123",
            "fileName": "document.pdf",
            "fileSize": 1024000,
            "contentType": "application/pdf",
            "operation": "upload",
            "source": "teams",
        }
    )
    assert op.team_id is None and op.drive_id is None


@pytest.mark.parametrize(
    ("source", "resource", "expected"),
    [
        (
            "teams",
            "chats('19:a@thread.v2')/messages('1616991463150')",
            ("chat:19:a@thread.v2", "1616991463150", "/chats/19:a@thread.v2/messages/1616991463150"),
        ),
        (
            "teams",
            "teams('t1')/channels('19:c@thread.tacv2')/messages('17')",
            ("channel:t1/19:c@thread.tacv2", "17", "/teams/t1/channels/19:c@thread.tacv2/messages/17"),
        ),
        ("outlook", "Users/u-1/Messages/AAMk=", ("mailbox:u-1", "AAMk=", "/users/u-1/messages/AAMk=")),
    ],
)
def test_notification_resources_locate_the_message(source: Any, resource: str, expected: tuple[str, ...]) -> None:
    assert locate(source, resource) == expected


def test_a_resource_of_the_wrong_kind_is_refused() -> None:
    from fleetbox.errors import ValidationError

    with pytest.raises(ValidationError, match="not a teams message"):
        locate("teams", "users/u/messages/m")


def test_replays_of_one_change_share_a_dedupe_key_and_other_changes_do_not() -> None:
    item = {
        "subscriptionId": "s",
        "changeType": "created",
        "resource": "users/u/messages/m",
        "resourceData": {"@odata.etag": 'W/"1"', "id": "m"},
    }
    assert dedupe_key(item) == dedupe_key(dict(item))
    assert dedupe_key(item) != dedupe_key({**item, "changeType": "updated"})
    assert dedupe_key(item) != dedupe_key({**item, "resourceData": {"@odata.etag": 'W/"2"', "id": "m"}})
    assert source_of("chats('x')/messages('y')") == "teams"
    assert source_of("users/u/messages/m") == "outlook"
