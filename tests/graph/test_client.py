"""GraphClient against the Graph simulator: success, every error class, Retry-After, token refresh, redirects."""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
from pathlib import Path

import pytest

from fleetbox.config import RateLimitSettings
from fleetbox.errors import (
    AuthenticationError,
    NetworkError,
    PermanentError,
    RateLimitError,
    SyncStateLost,
    TransientError,
    ValidationError,
)
from fleetbox.graph.simulator import GraphSimulator
from fleetbox.graph.tokens import TokenKind
from tests.graph.conftest import Rig, make_rig

MAILBOX = "sender@simulated.example"
SEND = rf"POST /v1.0/users/{MAILBOX}/sendMail"


def mail(subject: str = "hello") -> dict[str, object]:
    return {
        "message": {
            "subject": subject,
            "body": {"contentType": "Text", "content": "hi"},
            "toRecipients": [{"emailAddress": {"address": "to@simulated.example"}}],
        }
    }


async def send(rig: Rig, mailbox: str = MAILBOX) -> object:
    return await rig.client.request("POST", f"/users/{mailbox}/sendMail", resource="outlook", key=mailbox, json=mail())


def graph_calls(sim: GraphSimulator, fragment: str) -> list[object]:
    return [r for r in sim.requests if fragment in r.path]


async def test_a_request_carries_a_fresh_client_request_id_and_keeps_graphs_request_id(rig: Rig) -> None:
    first = await rig.client.request("POST", f"/users/{MAILBOX}/sendMail", resource="outlook", key=MAILBOX, json=mail())
    second = await rig.client.request(
        "POST", f"{rig.sim.base_url}/users/{MAILBOX}/sendMail", resource="outlook", key=MAILBOX, json=mail()
    )
    assert (first.status, second.status) == (202, 202)
    sent = [r for r in rig.sim.requests if r.path.endswith("/sendMail")]
    assert [r.headers["client-request-id"] for r in sent] == [first.client_request_id, second.client_request_id]
    assert first.client_request_id != second.client_request_id
    assert first.request_id and first.request_id != second.request_id
    assert sent[0].headers["authorization"].startswith("Bearer ")
    assert len(rig.sim.sent_mail) == 2


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "ErrorInvalidRecipients", ValidationError),
        (403, "ErrorAccessDenied", PermanentError),
        (404, "ErrorItemNotFound", PermanentError),
        (409, "Conflict", PermanentError),
        (413, "RequestEntityTooLarge", PermanentError),
        (500, "generalException", TransientError),
        (502, "BadGateway", TransientError),
        (410, "SyncStateNotFound", SyncStateLost),
    ],
)
async def test_graph_errors_become_fleetbox_errors(rig: Rig, status: int, code: str, expected: type) -> None:
    rig.sim.fail(SEND, status, code=code, message="what Graph said")
    with pytest.raises(expected) as raised:
        await send(rig)
    error = raised.value
    assert type(error) is expected
    recorded = graph_calls(rig.sim, "/sendMail")[-1]
    assert error.graph is not None
    assert error.graph.status == status and error.graph.code == code
    assert error.graph.request_id
    assert error.graph.client_request_id == recorded.headers["client-request-id"]
    text = str(error)
    assert code in text and "what Graph said" in text and error.graph.request_id in text
    assert len(graph_calls(rig.sim, "/sendMail")) == 1  # never retried inside the client
    assert not rig.sim.sent_mail


async def test_an_outlook_error_without_inner_error(rig: Rig) -> None:
    rig.sim.revoke_permission(SEND)
    with pytest.raises(PermanentError) as raised:
        await send(rig)
    assert raised.value.graph is not None and raised.value.graph.code == "ErrorAccessDenied"
    assert raised.value.graph.request_id  # from the response header


@pytest.mark.parametrize(
    ("status", "header", "seconds", "error"),
    [
        (429, 3, 3.0, RateLimitError),
        (429, None, None, RateLimitError),
        (503, 2.5, 2.5, NetworkError),
        (504, 4, 4.0, NetworkError),
    ],
)
async def test_throttling_pauses_the_mailbox(
    rig: Rig, status: int, header: float | None, seconds: float | None, error: type[Exception]
) -> None:
    rig.sim.fail(SEND, status, retry_after=header)
    with pytest.raises(error) as raised:
        await send(rig)
    assert getattr(raised.value, "retry_after", None) == seconds
    snap = next(s for s in rig.limiters.snapshot() if s.key == MAILBOX)
    assert snap.throttled == 1 and snap.paused_until is not None
    assert [e.event for e in rig.events] == ["throttled"]
    assert rig.events[0].retry_after_ms == (seconds if seconds is not None else 2.0) * 1000


async def test_a_503_without_retry_after_pauses_nothing(rig: Rig) -> None:
    rig.sim.fail(SEND, 503)
    with pytest.raises(NetworkError):
        await send(rig)
    assert not [s for s in rig.limiters.snapshot() if s.paused_until is not None]


async def test_retry_after_as_an_http_date(rig: Rig) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
    rig.sim.fail(SEND, 429, code="ApplicationThrottled", retry_after=email.utils.format_datetime(when, usegmt=True))
    with pytest.raises(RateLimitError) as raised:
        await send(rig)
    assert raised.value.retry_after is not None and 100 < raised.value.retry_after <= 120


async def test_a_retry_after_over_the_maximum_is_transient(sim: GraphSimulator, cache_path: Path) -> None:
    rig = await make_rig(sim, cache_path, limits=RateLimitSettings(max_retry_after_seconds=30))
    try:
        sim.fail(SEND, 429, retry_after=600)
        with pytest.raises(TransientError) as raised:
            await send(rig)
        assert not isinstance(raised.value, RateLimitError)
        assert "600" in str(raised.value)
    finally:
        await rig.close()


async def test_after_a_429_the_next_request_waits_for_retry_after(rig: Rig) -> None:
    rig.sim.fail(SEND, 429, code="ApplicationThrottled", retry_after=0.4)
    with pytest.raises(RateLimitError):
        await send(rig)
    await send(rig, "other@simulated.example")  # another mailbox is not held back
    await send(rig)
    calls = graph_calls(rig.sim, "/sendMail")
    assert calls[1].at - calls[0].at < 0.4
    assert calls[2].at - calls[0].at >= 0.39
    waits = [e for e in rig.events if e.event == "wait"]
    # one wait held for the Retry-After, on the paused mailbox only (a loaded machine may add a
    # millisecond wait for a bucket's turn, recorded too: it is not the pause)
    assert [e.key for e in waits if (e.wait_ms or 0) >= 300] == [MAILBOX]
    assert {e.key for e in waits} == {MAILBOX}


async def test_an_expired_token_is_dropped_so_the_next_request_gets_a_new_one(rig: Rig) -> None:
    await send(rig)
    rig.sim.expire_tokens()
    with pytest.raises(AuthenticationError):
        await send(rig)  # the retry is the retry policy's (one, for an authentication error)
    response = await send(rig)
    assert response.status == 202
    calls = graph_calls(rig.sim, "/sendMail")
    assert [c.status for c in calls] == [202, 401, 202]
    assert calls[1].headers["authorization"] == calls[0].headers["authorization"]
    assert calls[2].headers["authorization"] != calls[1].headers["authorization"]
    assert len(graph_calls(rig.sim, "/oauth2/v2.0/token")) == 2


async def test_an_app_only_message_post_is_permanent_and_not_retried(rig: Rig) -> None:
    with pytest.raises(PermanentError) as raised:
        await rig.client.request(
            "POST",
            "/chats/19:abc@thread.v2/messages",
            resource="teams",
            key="19:abc@thread.v2",
            json={"body": {"content": "hi"}},
        )
    assert type(raised.value) is PermanentError
    assert "only for import purposes" in str(raised.value)
    assert [c.status for c in graph_calls(rig.sim, "/chats/")] == [401]


async def test_a_dropped_connection_is_a_network_error(rig: Rig) -> None:
    rig.sim.drop(SEND)
    with pytest.raises(NetworkError) as raised:
        await send(rig)
    assert isinstance(raised.value, TransientError)
    assert f"POST 127.0.0.1:{rig.sim.port}/v1.0/users/{MAILBOX}/sendMail" in str(raised.value)


async def test_a_slow_answer_times_out_as_a_network_error(sim: GraphSimulator, cache_path: Path) -> None:
    rig = await make_rig(sim, cache_path, timeout_seconds=0.3)
    try:
        sim.slow(SEND, 1.0)
        with pytest.raises(NetworkError, match=r"did not answer within 0.3 s"):
            await send(rig)
    finally:
        await rig.close()


async def test_a_download_redirect_never_carries_the_bearer_token(rig: Rig) -> None:
    folder = (
        await rig.client.request("GET", "/teams/team-1/channels/19:general@thread.tacv2/filesFolder", resource="teams")
    ).json()
    drive = folder["parentReference"]["driveId"]
    item = (
        await rig.client.request(
            "PUT", f"/drives/{drive}/items/{folder['id']}:/hello.txt:/content", resource="teams", data=b"hello world"
        )
    ).json()
    response = await rig.client.request("GET", f"/drives/{drive}/items/{item['id']}/content", resource="attachments")
    assert response.status == 200 and response.body == b"hello world"
    download = next(r for r in rig.sim.requests if r.path.startswith("/_download/"))
    assert "authorization" not in download.headers
    redirect = await rig.client.request(
        "GET", f"/drives/{drive}/items/{item['id']}/content", resource="attachments", allow_redirects=False
    )
    assert redirect.status == 302
    plain = await rig.client.request("GET", redirect.headers["Location"], resource="attachments", token=None)
    assert plain.body == b"hello world"
    assert "authorization" not in rig.sim.requests[-1].headers


async def test_failures_are_logged_without_token_or_body(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fleetbox.graph")
    rig.sim.fail(SEND, 404, code="ErrorItemNotFound", message="secret-ish payload echo")
    with pytest.raises(PermanentError):
        await send(rig)
    record = next(r for r in caplog.records if getattr(r, "event", None) == "graph_request_failed")
    assert record.status == 404 and record.code == "ErrorItemNotFound"  # type: ignore[attr-defined]
    assert record.method == "POST" and record.path.endswith("/sendMail")  # type: ignore[attr-defined]
    assert record.request_id and record.client_request_id  # type: ignore[attr-defined]
    token = await rig.tokens.token(TokenKind.APP)
    for r in caplog.records:
        assert token not in r.getMessage() and token not in str(r.__dict__)
        assert "secret-ish" not in str(r.__dict__)
