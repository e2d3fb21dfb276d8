"""Graph's error answers as fleetbox errors: Retry-After in every format, the error envelope in every shape."""

from __future__ import annotations

import datetime as dt
import email.utils
import json

import pytest

from fleetbox.errors import (
    AuthenticationError,
    JobError,
    NetworkError,
    PermanentError,
    RateLimitError,
    SyncStateLost,
    TransientError,
    ValidationError,
)
from fleetbox.graph.client import classify, error_detail, redacted_path
from fleetbox.rules import parse_retry_after

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("10", 10.0), ("0", 0.0), ("2.128", 2.128), (" 7 ", 7.0), (".5", 0.5), ("5,5", 5.0)],
)
def test_retry_after_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == pytest.approx(seconds)


def test_retry_after_http_date_counts_from_now() -> None:
    value = email.utils.format_datetime(NOW + dt.timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(value, now=NOW) == pytest.approx(30.0)


def test_retry_after_date_in_the_past_is_zero() -> None:
    value = email.utils.format_datetime(NOW - dt.timedelta(minutes=5), usegmt=True)
    assert parse_retry_after(value, now=NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-3", "inf", "nan", "1e400", "10 seconds", "Tue, 99 Foo"])
def test_retry_after_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


def _body(error: object) -> bytes:
    return json.dumps({"error": error}).encode()


def _classify(
    status: int, body: bytes, headers: dict[str, str] | None = None, *, max_retry_after: float = 3600
) -> JobError:
    headers = headers or {}
    detail = error_detail(status, headers, body, client_request_id="c-1")
    return classify(
        detail, headers, what="POST graph.example/v1.0/chats/x/messages", max_retry_after=max_retry_after, now=NOW
    )


def test_nested_inner_errors_give_every_code_outer_first() -> None:
    body = _body(
        {
            "code": "activityLimitReached",
            "message": "The request has been throttled",
            "innerError": {
                "code": "throttledRequest",
                "innerError": {"code": "quota"},
                "date": "2021-10-18T13:16:26",
                "request-id": "r-inner",
                "client-request-id": "c-1",
            },
        }
    )
    error = _classify(429, body, {"Retry-After": "41"})
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 41.0
    assert error.graph is not None
    assert error.graph.codes == ("activityLimitReached", "throttledRequest", "quota")
    assert error.graph.request_id == "r-inner"
    assert error.graph.date == "2021-10-18T13:16:26"
    assert error.graph.has_code("QUOTA")


def test_missing_inner_error_is_fine() -> None:
    body = _body({"code": "ErrorAccessDenied", "message": "Access is denied. Check credentials and try again."})
    error = _classify(403, body, {"request-id": "r-403"})
    assert type(error) is PermanentError
    assert error.graph is not None and error.graph.code == "ErrorAccessDenied"
    # the dead letter keeps what Graph said, and which request it was
    text = str(error)
    assert "403" in text and "ErrorAccessDenied" in text and "Access is denied" in text
    assert "request-id r-403" in text and "client-request-id c-1" in text
    assert "POST graph.example/v1.0/chats/x/messages" in text


def test_lower_case_innererror_spelling() -> None:
    body = _body({"code": "itemNotFound", "message": "gone", "innererror": {"code": "chatNotFound", "request-id": "r"}})
    error = _classify(404, body)
    assert error.graph is not None and error.graph.codes == ("itemNotFound", "chatNotFound")
    assert error.graph.request_id == "r"


def test_header_request_id_wins_over_the_body() -> None:
    body = _body({"code": "Forbidden", "message": "Forbidden", "innerError": {"request-id": "from-body"}})
    error = _classify(403, body, {"Request-Id": "from-header"})
    assert error.graph is not None and error.graph.request_id == "from-header"


def test_non_json_body_from_a_gateway() -> None:
    error = _classify(502, b"<html><body>Bad Gateway</body></html>", {"Content-Type": "text/html"})
    assert type(error) is TransientError
    assert error.graph is not None and error.graph.codes == () and error.graph.message is None
    assert "<html>" not in str(error)


@pytest.mark.parametrize("body", [b"", b"null", b"[1,2]", b'{"error": 5}', b"\xff\xfe"])
def test_odd_bodies_are_tolerated(body: bytes) -> None:
    error = _classify(500, body)
    assert type(error) is TransientError
    assert error.graph is not None and error.graph.status == 500


def test_429_is_rate_limited_with_its_retry_after() -> None:
    error = _classify(
        429, _body({"code": "TooManyRequests", "message": "Please retry again later."}), {"Retry-After": "2.5"}
    )
    assert isinstance(error, RateLimitError) and error.retry_after == 2.5


@pytest.mark.parametrize("status", [503, 504])
def test_503_and_504_are_network_errors_that_keep_retry_after(status: int) -> None:
    error = _classify(status, _body({"code": "serviceNotAvailable", "message": "try later"}), {"Retry-After": "4"})
    assert type(error) is NetworkError and error.retry_after == 4.0
    error = _classify(status, _body({"code": "serviceNotAvailable", "message": "try later"}))
    assert type(error) is NetworkError and error.retry_after is None


def test_throttled_with_an_http_date() -> None:
    when = email.utils.format_datetime(NOW + dt.timedelta(seconds=90), usegmt=True)
    error = _classify(429, _body({"code": "ApplicationThrottled", "message": "over"}), {"Retry-After": when})
    assert isinstance(error, RateLimitError) and error.retry_after == pytest.approx(90.0)


def test_retry_after_over_the_maximum_is_transient() -> None:
    error = _classify(
        429, _body({"code": "TooManyRequests", "message": "x"}), {"Retry-After": "7200"}, max_retry_after=3600
    )
    assert type(error) is TransientError
    assert "7200" in str(error) and "3600" in str(error)


def test_expired_token_is_an_authentication_error() -> None:
    body = _body(
        {"code": "InvalidAuthenticationToken", "message": "CompactToken validation failed with reason code: 80049228."}
    )
    assert type(_classify(401, body)) is AuthenticationError


def test_401_without_a_readable_body_is_an_authentication_error() -> None:
    assert type(_classify(401, b"")) is AuthenticationError


def test_app_only_message_post_is_permanent() -> None:
    body = _body(
        {
            "code": "Unauthorized",
            "message": "Message POST is allowed in application-only context only "
            "for import purposes. Refer to https://docs.microsoft.com/microsoftteams/platform for more details.",
        }
    )
    error = _classify(401, body)
    assert type(error) is PermanentError
    assert "only for import purposes" in str(error)


def test_400_is_a_validation_error() -> None:
    body = _body({"code": "ErrorInvalidRecipients", "message": "At least one recipient isn't valid."})
    error = _classify(400, body)
    assert type(error) is ValidationError
    assert isinstance(error, PermanentError)


@pytest.mark.parametrize("status", [403, 404, 409, 413, 405, 411, 416])
def test_other_client_errors_are_permanent(status: int) -> None:
    assert type(_classify(status, _body({"code": "x", "message": "y"}))) is PermanentError


@pytest.mark.parametrize("status", [500, 502, 507, 408])
def test_server_errors_are_transient(status: int) -> None:
    assert type(_classify(status, _body({"code": "generalException", "message": "y"}))) is TransientError


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (410, "SyncStateNotFound"),
        (410, None),
        (400, "syncstatenotfound"),
        (404, "ResyncRequired"),
        (400, "resyncRequired"),
    ],
)
def test_lost_sync_state_says_start_over(status: int, code: str | None) -> None:
    body = _body({"code": code, "message": "The sync state generation is not found"}) if code else b""
    error = _classify(status, body)
    assert isinstance(error, SyncStateLost) and isinstance(error, PermanentError)


def test_long_graph_messages_are_cut() -> None:
    error = _classify(400, _body({"code": "BadRequest", "message": "x" * 5000}))
    assert len(str(error)) < 800


def test_redacted_path_drops_the_query() -> None:
    url = "https://outlook.office.com/api/v2.0/Users('a')/AttachmentSessions('b')?authtoken=eyJsecret"
    assert "secret" not in redacted_path(url)
    assert redacted_path(url).startswith("outlook.office.com/api/v2.0/")
