"""The Graph simulator, driven by the real msal and plain aiohttp: tokens, Teams, mail, drive, faults.

Every assertion is about what a Graph client sees on the wire (status, headers, body), or what the
simulator recorded that a user of fleetbox would check (the mail that left, the file that landed).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msal
import pytest
import requests
import trustme
from cryptography import x509

from fleetbox.graph.simulator import GraphSimulator, TeamsLimits
from tests.conftest import wait_for

GRAPH_DEFAULT = ["https://graph.microsoft.com/.default"]
CHAT = "19:2da4c29f6d7041eca70b638b43d45437@thread.v2"
TEAM = "0a7c1c2e-52ba-4b1b-9d7c-2f6a3b5d8e11"
CHANNEL = "19:4a95f7d8db4c4e7fae857bcebe0623e6@thread.tacv2"
MAILBOX = "sender@simulated.example"


# -- fixtures and helpers ----------------------------------------------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[GraphSimulator]:
    """A running simulator with a small upload-session minimum (tests use small files)."""
    async with GraphSimulator(min_upload_session_bytes=1024) as simulator:
        yield simulator
        assert simulator.internal_errors == []


def msal_session(sim: GraphSimulator, sessions: list[requests.Session]) -> requests.Session:
    """What fleetbox gives msal: verify the simulator CA, ignore REQUESTS_CA_BUNDLE (contract 8)."""
    session = requests.Session()
    session.verify = str(sim.ca_pem_path)
    session.trust_env = False
    sessions.append(session)
    return session


def confidential(sim: GraphSimulator, sessions: list[requests.Session], credential: Any = None) -> Any:
    return msal.ConfidentialClientApplication(
        sim.client_id,
        client_credential=sim.client_secret if credential is None else credential,
        authority=f"{sim.authority_host}/{sim.tenant}",
        instance_discovery=False,
        http_client=msal_session(sim, sessions),
    )


def public(sim: GraphSimulator, sessions: list[requests.Session]) -> Any:
    return msal.PublicClientApplication(
        sim.client_id,
        authority=f"{sim.authority_host}/{sim.tenant}",
        instance_discovery=False,
        http_client=msal_session(sim, sessions),
    )


async def app_token(sim: GraphSimulator, sessions: list[requests.Session]) -> str:
    app = await asyncio.to_thread(confidential, sim, sessions)
    result = await asyncio.to_thread(app.acquire_token_for_client, scopes=GRAPH_DEFAULT)
    return str(result["access_token"])


async def user_token(sim: GraphSimulator, sessions: list[requests.Session]) -> str:
    app = await asyncio.to_thread(public, sim, sessions)
    flow = await asyncio.to_thread(app.initiate_device_flow, scopes=["ChatMessage.Send", "ChannelMessage.Send"])
    result = await asyncio.to_thread(app.acquire_token_by_device_flow, flow)
    return str(result["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(
    http: aiohttp.ClientSession, method: str, url: str, token: str | None = None, **kwargs: Any
) -> tuple[int, Any, dict[str, str]]:
    """One request; returns status, parsed body (JSON, text or None) and headers."""
    headers = {**(bearer(token) if token else {}), **kwargs.pop("headers", {})}
    async with http.request(method, url, headers=headers, allow_redirects=False, **kwargs) as resp:
        raw = await resp.read()
        if resp.content_type == "application/json" and raw:
            body: Any = await resp.json()
        else:
            body = raw.decode() if raw else None
        return resp.status, body, dict(resp.headers)


def text_message(content: str = "Hello from fleetbox", **extra: Any) -> dict[str, Any]:
    return {"body": {"contentType": "text", "content": content}, **extra}


# -- Entra: tokens through msal ----------------------------------------------------------------------


async def test_client_credentials_through_msal_with_cache(
    sim: GraphSimulator, sessions: list[requests.Session]
) -> None:
    app = await asyncio.to_thread(confidential, sim, sessions)
    first = await asyncio.to_thread(app.acquire_token_for_client, scopes=GRAPH_DEFAULT)
    second = await asyncio.to_thread(app.acquire_token_for_client, scopes=GRAPH_DEFAULT)
    assert first["token_type"] == "Bearer" and first["expires_in"] > 3000
    assert first["token_source"] == "identity_provider"
    # No "scope" in the answer, so msal caches under the requested .default and answers from cache.
    assert second["token_source"] == "cache" and second["access_token"] == first["access_token"]
    token_posts = [r for r in sim.requests if r.route.endswith("/oauth2/v2.0/token")]
    assert len(token_posts) == 1
    assert b"grant_type=client_credentials" in token_posts[0].body
    assert sim.requests[0].route == f"GET /{sim.tenant}/v2.0/.well-known/openid-configuration"


async def test_token_answer_has_no_scope_and_discovery_is_https_on_this_host(
    sim: GraphSimulator, http: aiohttp.ClientSession
) -> None:
    status, config, _ = await call(
        http, "GET", f"{sim.authority_host}/{sim.tenant}/v2.0/.well-known/openid-configuration"
    )
    assert status == 200
    for key in ("authorization_endpoint", "token_endpoint", "device_authorization_endpoint", "issuer"):
        assert config[key].startswith(f"{sim.authority_host}/{sim.tenant}/")
    form = {
        "grant_type": "client_credentials",
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "scope": GRAPH_DEFAULT[0],
    }
    status, body, _ = await call(http, "POST", config["token_endpoint"], data=form)
    assert status == 200 and "scope" not in body
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}


async def test_wrong_secret_is_an_error_dict_not_an_exception(
    sim: GraphSimulator, sessions: list[requests.Session]
) -> None:
    app = await asyncio.to_thread(confidential, sim, sessions, "not-the-secret")
    result = await asyncio.to_thread(app.acquire_token_for_client, scopes=GRAPH_DEFAULT)
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert "not-the-secret" not in result["error_description"]
    assert sim.requests[-1].status == 401


async def test_scope_without_default_suffix_is_invalid_scope(
    sim: GraphSimulator, sessions: list[requests.Session]
) -> None:
    app = await asyncio.to_thread(confidential, sim, sessions)
    result = await asyncio.to_thread(app.acquire_token_for_client, scopes=["https://graph.microsoft.com/Mail.Send"])
    assert result["error"] == "invalid_scope"


async def test_client_assertion_from_a_certificate(sim: GraphSimulator, sessions: list[requests.Session]) -> None:
    leaf = trustme.CA().issue_cert("fleetbox.example", key_type=trustme.KeyType.RSA)
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    thumbprint = hashlib.sha1(cert.public_bytes(encoding=_pem())).hexdigest()
    credential = {"private_key": leaf.private_key_pem.bytes().decode(), "thumbprint": thumbprint}
    app = await asyncio.to_thread(confidential, sim, sessions, credential)
    result = await asyncio.to_thread(app.acquire_token_for_client, scopes=GRAPH_DEFAULT)
    assert "access_token" in result
    post = next(r for r in sim.requests if r.route.endswith("/token"))
    assert b"client_assertion=" in post.body and b"client_secret" not in post.body


def _pem() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


async def test_device_code_sign_in_builds_an_account_and_refreshes(
    sim: GraphSimulator, sessions: list[requests.Session]
) -> None:
    app = await asyncio.to_thread(public, sim, sessions)
    flow = await asyncio.to_thread(app.initiate_device_flow, scopes=["ChatMessage.Send"])
    assert flow["verification_uri"] == f"{sim.authority_host}/devicelogin" and flow["user_code"] in flow["message"]
    result = await asyncio.to_thread(app.acquire_token_by_device_flow, flow)
    assert result["id_token_claims"]["preferred_username"] == sim.user
    assert result["refresh_token"] and result["access_token"]
    accounts = await asyncio.to_thread(app.get_accounts)
    assert [a["username"] for a in accounts] == [sim.user]

    sim.expire_tokens()
    refreshed = await asyncio.to_thread(
        app.acquire_token_silent, ["ChatMessage.Send"], account=accounts[0], force_refresh=True
    )
    assert refreshed["access_token"] != result["access_token"]
    assert any(b"grant_type=refresh_token" in r.body for r in sim.requests)

    sim.revoke_refresh_tokens()
    failed = await asyncio.to_thread(
        app.acquire_token_silent_with_error, ["ChatMessage.Send"], account=accounts[0], force_refresh=True
    )
    assert failed["error"] == "invalid_grant"


async def test_device_code_is_pending_until_approved(sessions: list[requests.Session]) -> None:
    async with GraphSimulator(auto_approve_device_codes=False) as sim:
        app = await asyncio.to_thread(public, sim, sessions)
        flow = await asyncio.to_thread(app.initiate_device_flow, scopes=["ChatMessage.Send"])

        def poll_once() -> Any:
            return app.acquire_token_by_device_flow(flow, exit_condition=lambda _flow: True)

        pending = await asyncio.to_thread(poll_once)
        assert pending["error"] == "authorization_pending"
        sim.approve_device_code(flow["user_code"])
        flow["latest_attempt_at"] = 0  # msal paces polls by the interval; this test does not wait
        done = await asyncio.to_thread(poll_once)
        assert "access_token" in done


# -- Graph: authentication and the envelope ---------------------------------------------------------


async def test_graph_routes_need_an_issued_unexpired_token(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    url = f"{sim.base_url}/users/{MAILBOX}/messages/unknown"
    status, body, headers = await call(http, "GET", url, headers={"client-request-id": "my-correlation"})
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"
    assert body["error"]["message"] == "Access token is empty."
    inner = body["error"]["innerError"]
    assert inner["client-request-id"] == "my-correlation" == headers["client-request-id"]
    assert inner["request-id"] == headers["request-id"] and re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", inner["date"]
    )

    status, body, _ = await call(http, "GET", url, "forged-token")
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"

    token = await app_token(sim, sessions)
    status, body, _ = await call(http, "GET", url, token)
    assert status == 404 and body["error"]["code"] == "ErrorItemNotFound"
    sim.expire_tokens()
    status, body, _ = await call(http, "GET", url, token)
    assert status == 401 and "expired" in body["error"]["message"]


async def test_unknown_route_is_a_graph_400(sim: GraphSimulator, http: aiohttp.ClientSession) -> None:
    status, body, headers = await call(http, "GET", f"{sim.base_url}/nothing/here")
    assert status == 400 and body["error"]["code"] == "BadRequest" and "request-id" in headers


# -- Teams ------------------------------------------------------------------------------------------


async def test_chat_message_post_and_get(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await user_token(sim, sessions)
    url = f"{sim.base_url}/chats/{CHAT}/messages"
    status, body, _ = await call(http, "POST", url, token, json=text_message("Hi <b>there</b>", importance="high"))
    assert status == 201
    assert body["id"].isdigit() and body["etag"] == body["id"] and body["chatId"] == CHAT
    assert body["importance"] == "high" and body["body"] == {"contentType": "text", "content": "Hi <b>there</b>"}
    assert body["from"]["user"]["userIdentityType"] == "aadUser"
    assert sim.chat_messages[CHAT][0]["id"] == body["id"]
    status, fetched, _ = await call(http, "GET", f"{url}/{body['id']}", token)
    assert status == 200 and fetched["id"] == body["id"]
    status, missing, _ = await call(http, "GET", f"{url}/1", token)
    assert status == 404 and missing["error"]["code"] == "NotFound"


async def test_app_only_token_cannot_post_messages(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await app_token(sim, sessions)
    status, body, _ = await call(http, "POST", f"{sim.base_url}/chats/{CHAT}/messages", token, json=text_message())
    assert status == 401 and body["error"]["code"] == "Unauthorized"
    assert body["error"]["message"].startswith("Message POST is allowed in application-only context only for import")
    assert CHAT not in sim.chat_messages


@pytest.mark.parametrize(
    ("payload", "status", "fragment"),
    [
        ({"body": {"contentType": "markdown", "content": "x"}}, 400, "contentType"),
        ({"body": {"content": "x"}, "importance": "low"}, 400, "importance"),
        ({"body": {"content": "x" * (28 * 1024 + 1)}}, 413, "28 KB"),
        ({"body": {"contentType": "html", "content": "no tag"}, "attachments": [{"id": "a1"}]}, 400, "a1"),
        ({"subject": "no body"}, 400, "body.content"),
    ],
)
async def test_chat_message_validation(
    sim: GraphSimulator,
    http: aiohttp.ClientSession,
    sessions: list[requests.Session],
    payload: dict[str, Any],
    status: int,
    fragment: str,
) -> None:
    token = await user_token(sim, sessions)
    got, body, _ = await call(http, "POST", f"{sim.base_url}/chats/{CHAT}/messages", token, json=payload)
    assert got == status and fragment in body["error"]["message"]
    assert CHAT not in sim.chat_messages


async def test_channel_message_with_a_file_reference(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await user_token(sim, sessions)
    payload = {
        "body": {"contentType": "html", "content": 'Report <attachment id="153fa47d"></attachment>'},
        "attachments": [
            {"id": "153fa47d", "contentType": "reference", "contentUrl": "https://x/y.pdf", "name": "y.pdf"}
        ],
    }
    url = f"{sim.base_url}/teams/{TEAM}/channels/{CHANNEL}/messages"
    status, body, _ = await call(http, "POST", url, token, json=payload)
    assert status == 201
    assert body["channelIdentity"] == {"teamId": TEAM, "channelId": CHANNEL} and body["chatId"] is None
    assert body["webUrl"].startswith("https://teams.microsoft.com/l/message/")
    assert sim.channel_messages[(TEAM, CHANNEL)][0]["attachments"][0]["name"] == "y.pdf"
    status, _, _ = await call(http, "GET", f"{url}/{body['id']}", token)
    assert status == 200


async def test_teams_posts_are_throttled_per_chat_with_retry_after(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    sim.teams_limits = TeamsLimits(per_user=100)
    token = await user_token(sim, sessions)
    url = f"{sim.base_url}/chats/{CHAT}/messages"
    results = [await call(http, "POST", url, token, json=text_message(f"m{i}")) for i in range(3)]
    assert [s for s, _, _ in results] == [201, 429, 429]
    _, body, headers = results[1]
    assert body["error"]["code"] == "TooManyRequests" and headers["Retry-After"] == "1"
    assert len(sim.chat_messages[CHAT]) == 1


async def test_teams_posts_are_throttled_per_tenant_and_no_window_exceeds_the_limit(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    sim.teams_limits = TeamsLimits(per_user=100, per_tenant_chats=3)
    token = await user_token(sim, sessions)
    chats = [f"19:chat{i}@thread.v2" for i in range(6)]
    results = await asyncio.gather(
        *(call(http, "POST", f"{sim.base_url}/chats/{c}/messages", token, json=text_message()) for c in chats)
    )
    assert sorted(s for s, _, _ in results) == [201, 201, 201, 429, 429, 429]
    accepted = sorted(r.at for r in sim.requests if r.method == "POST" and r.status == 201)
    assert all(b - a >= 1.0 for a, b in zip(accepted, accepted[3:], strict=False))


async def test_per_user_limit_spans_chats(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await user_token(sim, sessions)
    first = await call(http, "POST", f"{sim.base_url}/chats/19:a@thread.v2/messages", token, json=text_message())
    second = await call(http, "POST", f"{sim.base_url}/chats/19:b@thread.v2/messages", token, json=text_message())
    assert (first[0], second[0]) == (201, 429)
    sim.enforce_limits = False
    third = await call(http, "POST", f"{sim.base_url}/chats/19:b@thread.v2/messages", token, json=text_message())
    assert third[0] == 201


async def test_activity_notifications(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await app_token(sim, sessions)
    user_body = {
        "topic": {"source": "text", "value": "Deployment", "webUrl": "https://fleetbox.example/jobs/1"},
        "activityType": "systemDefault",
        "previewText": {"content": "Job 1 finished"},
        "templateParameters": [{"name": "systemDefaultText", "value": "done"}],
    }
    status, _, _ = await call(
        http, "POST", f"{sim.base_url}/users/{MAILBOX}/teamwork/sendActivityNotification", token, json=user_body
    )
    assert status == 204
    chat_body = {
        "activityType": "systemDefault",
        "previewText": {"content": "hi"},
        "recipient": {"@odata.type": "microsoft.graph.aadUserNotificationRecipient", "userId": "u1"},
    }
    status, _, _ = await call(
        http, "POST", f"{sim.base_url}/chats/{CHAT}/sendActivityNotification", token, json=chat_body
    )
    assert status == 204
    status, body, _ = await call(
        http,
        "POST",
        f"{sim.base_url}/teams/{TEAM}/sendActivityNotification",
        token,
        json={**chat_body, "recipient": {}},
    )
    assert status == 400 and "recipient" in body["error"]["message"]
    assert [(n.scope, n.target) for n in sim.activity_notifications] == [("user", MAILBOX), ("chat", CHAT)]


# -- Outlook ----------------------------------------------------------------------------------------


def mail(**extra: Any) -> dict[str, Any]:
    return {
        "subject": "Build report",
        "body": {"contentType": "Text", "content": "All green."},
        "toRecipients": [{"emailAddress": {"address": "ops@simulated.example"}}],
        **extra,
    }


async def test_send_mail_202_and_what_left(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await app_token(sim, sessions)
    attachment = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": "report.txt",
        "contentType": "text/plain",
        "contentBytes": base64.b64encode(b"hello").decode(),
    }
    status, body, _ = await call(
        http,
        "POST",
        f"{sim.base_url}/users/{MAILBOX}/sendMail",
        token,
        json={"message": mail(attachments=[attachment]), "saveToSentItems": "false"},
    )
    assert (status, body) == (202, None)
    [sent] = sim.sent_mail
    assert sent.mailbox == MAILBOX and sent.message["subject"] == "Build report" and sent.via == "sendMail"
    assert [(a.name, a.data) for a in sent.attachments] == [("report.txt", b"hello")]
    assert not sent.saved_to_sent_items and "sentitems" not in sim.mailboxes.get(MAILBOX, {})


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        (mail(toRecipients="a@x.example;b@x.example"), "array"),
        (mail(toRecipients=[{"emailAddress": {"address": "not-an-address"}}]), "isn't resolved"),
        (mail(toRecipients=[]), "no recipients"),
    ],
)
async def test_send_mail_recipient_errors(
    sim: GraphSimulator,
    http: aiohttp.ClientSession,
    sessions: list[requests.Session],
    message: dict[str, Any],
    fragment: str,
) -> None:
    token = await app_token(sim, sessions)
    status, body, _ = await call(
        http, "POST", f"{sim.base_url}/users/{MAILBOX}/sendMail", token, json={"message": message}
    )
    assert status == 400 and body["error"]["code"] == "ErrorInvalidRecipients" and fragment in body["error"]["message"]
    assert sim.sent_mail == []


async def test_send_mail_over_4_mb_is_413(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await app_token(sim, sessions)
    big = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": "big.bin",
        "contentBytes": base64.b64encode(b"\0" * (3 * 1024 * 1024)).decode(),
    }
    payload = io.BytesIO(json.dumps({"message": mail(attachments=[big])}).encode())
    status, body, _ = await call(
        http,
        "POST",
        f"{sim.base_url}/users/{MAILBOX}/sendMail",
        token,
        data=payload,
        headers={"Content-Type": "application/json"},
    )
    assert status == 413 and body["error"]["code"] == "RequestEntityTooLarge"


async def test_mailbox_allows_four_concurrent_requests(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await app_token(sim, sessions)
    sim.slow(r"POST /v1.0/users/.*/sendMail", 0.5, times=5)
    url = f"{sim.base_url}/users/{MAILBOX}/sendMail"
    results = await asyncio.gather(*(call(http, "POST", url, token, json={"message": mail()}) for _ in range(5)))
    statuses = sorted(s for s, _, _ in results)
    assert statuses == [202, 202, 202, 202, 429]
    throttled = next(b for s, b, _ in results if s == 429)
    assert throttled == {
        "error": {"code": "ApplicationThrottled", "message": "Application is over its MailboxConcurrency limit."}
    }
    other = await call(
        http, "POST", f"{sim.base_url}/users/other@simulated.example/sendMail", token, json={"message": mail()}
    )
    assert other[0] == 202


async def test_large_attachment_through_a_draft_and_upload_session(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await app_token(sim, sessions)
    status, draft, _ = await call(http, "POST", f"{sim.base_url}/users/{MAILBOX}/messages", token, json=mail())
    assert status == 201 and draft["isDraft"] and draft["id"] in sim.drafts
    attachments = f"{sim.base_url}/users/{MAILBOX}/messages/{draft['id']}/attachments"

    small = {"AttachmentItem": {"attachmentType": "file", "name": "tiny.bin", "size": 10}}
    status, body, _ = await call(http, "POST", f"{attachments}/createUploadSession", token, json=small)
    assert status == 400 and body["error"]["code"] == "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize"

    data = bytes(range(256)) * 12  # 3072 bytes, three chunks of 1024
    item = {"AttachmentItem": {"attachmentType": "file", "name": "data.bin", "size": len(data)}}
    status, session, _ = await call(http, "POST", f"{attachments}/createUploadSession", token, json=item)
    assert status == 201 and session["nextExpectedRanges"] == ["0-"]
    upload = session["uploadUrl"]
    assert upload.startswith(sim.pre_auth_origin) and not upload.startswith(sim.authority_host)

    def chunk(start: int, end: int) -> dict[str, Any]:
        return {"data": data[start:end], "headers": {"Content-Range": f"bytes {start}-{end - 1}/{len(data)}"}}

    status, body, _ = await call(http, "PUT", upload, token, **chunk(0, 1024))
    assert status == 401  # a bearer token must not go to a pre-authenticated URL
    status, body, _ = await call(http, "PUT", upload, **chunk(0, 1024))
    assert status == 200 and body["nextExpectedRanges"] == ["1024"] and "ExpirationDateTime" in body
    status, body, _ = await call(http, "PUT", upload, **chunk(0, 1024))
    assert status == 416 and body["error"]["innerError"]["code"] == "fragmentOverlap"
    status, body, _ = await call(http, "PUT", upload, **chunk(2048, 3072))
    assert status == 416 and body["error"]["innerError"]["code"] == "fragmentOutOfOrder"
    status, body, _ = await call(http, "GET", upload)
    assert status == 200 and body["nextExpectedRanges"] == ["1024"]
    await call(http, "PUT", upload, **chunk(1024, 2048))
    status, body, headers = await call(http, "PUT", upload, **chunk(2048, 3072))
    assert status == 201 and body is None and "/Attachments('" in headers["Location"]
    assert sim.upload_sessions == {}

    status, body, _ = await call(http, "POST", f"{sim.base_url}/users/{MAILBOX}/messages/{draft['id']}/send", token)
    assert (status, body) == (202, None)
    [sent] = sim.sent_mail
    assert sent.via == "draft" and [(a.name, a.data) for a in sent.attachments] == [("data.bin", data)]
    assert sim.drafts == {} and draft["id"] in sim.mailboxes[MAILBOX]["sentitems"]


async def test_upload_session_can_be_cancelled(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await app_token(sim, sessions)
    _, draft, _ = await call(http, "POST", f"{sim.base_url}/users/{MAILBOX}/messages", token, json=mail())
    item = {"AttachmentItem": {"attachmentType": "file", "name": "x.bin", "size": 4096}}
    url = f"{sim.base_url}/users/{MAILBOX}/messages/{draft['id']}/attachments/createUploadSession"
    _, session, _ = await call(http, "POST", url, token, json=item)
    assert (await call(http, "DELETE", session["uploadUrl"]))[0] == 204
    status, body, _ = await call(http, "GET", session["uploadUrl"])
    assert status == 404 and body["error"]["code"] == "itemNotFound"


async def test_inbound_mail_and_attachment_value(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await app_token(sim, sessions)
    seeded = sim.add_mail(MAILBOX, "Inbox", {"subject": "Ticket 7"}, attachments=[("log.txt", b"boom", "text/plain")])
    status, body, _ = await call(http, "GET", f"{sim.base_url}/users/{MAILBOX}/messages/{seeded['id']}", token)
    assert (
        status == 200 and body["subject"] == "Ticket 7" and body["hasAttachments"] and body["parentFolderId"] == "inbox"
    )
    [attachment] = sim.mail_attachments[seeded["id"]]
    url = f"{sim.base_url}/users/{MAILBOX}/messages/{seeded['id']}/attachments/{attachment.id}/$value"
    async with http.get(url, headers=bearer(token)) as resp:
        assert resp.status == 200 and resp.content_type == "text/plain" and await resp.read() == b"boom"


# -- Drive ------------------------------------------------------------------------------------------


async def test_channel_files_small_upload_and_download(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await user_token(sim, sessions)
    status, folder, _ = await call(http, "GET", f"{sim.base_url}/teams/{TEAM}/channels/{CHANNEL}/filesFolder", token)
    assert status == 200 and "folder" in folder
    drive = folder["parentReference"]["driveId"]
    put_url = f"{sim.base_url}/drives/{drive}/items/{folder['id']}:/report.pdf:/content"
    status, item, _ = await call(http, "PUT", put_url, token, data=b"%PDF-1")
    assert status == 201 and item["size"] == 6 and item["name"] == "report.pdf"
    assert re.fullmatch(r'"\{[0-9A-F-]{36}\},1"', item["eTag"])
    assert item["webUrl"] == f"{folder['webUrl']}/report.pdf"
    status, item2, _ = await call(http, "PUT", put_url, token, data=b"%PDF-2")
    assert status == 200 and item2["id"] == item["id"] and item2["eTag"].endswith(',2"')
    status, body, _ = await call(http, "PUT", put_url + "?@microsoft.graph.conflictBehavior=fail", token, data=b"x")
    assert status == 409 and body["error"]["code"] == "nameAlreadyExists"

    content = f"{sim.base_url}/drives/{drive}/items/{item['id']}/content"
    status, _, headers = await call(http, "GET", content, token)
    assert status == 302 and headers["Location"].startswith(sim.pre_auth_origin)
    status, body, _ = await call(http, "GET", headers["Location"], token)
    assert status == 401  # the download URL refuses a bearer token
    # aiohttp follows the redirect to the other origin and drops the Authorization header itself
    async with http.get(content, headers=bearer(token)) as resp:
        assert resp.status == 200 and await resp.read() == b"%PDF-2"
    async with http.get(headers["Location"], headers={"Range": "bytes=1-3"}) as resp:
        assert resp.status == 206 and await resp.read() == b"PDF" and resp.headers["Content-Range"] == "bytes 1-3/6"


async def test_drive_upload_session_rules(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await user_token(sim, sessions)
    _, folder, _ = await call(http, "GET", f"{sim.base_url}/teams/{TEAM}/channels/{CHANNEL}/filesFolder", token)
    drive = folder["parentReference"]["driveId"]
    url = f"{sim.base_url}/drives/{drive}/items/{folder['id']}:/big.bin:/createUploadSession"
    status, session, _ = await call(
        http, "POST", url, token, json={"item": {"@microsoft.graph.conflictBehavior": "rename"}}
    )
    assert status == 200 and session["uploadUrl"].startswith(sim.pre_auth_origin)
    upload = session["uploadUrl"]
    unit = 320 * 1024
    data = b"\x01" * unit * 2 + b"tail"
    total = len(data)

    def chunk(start: int, end: int) -> dict[str, Any]:
        return {"data": data[start:end], "headers": {"Content-Range": f"bytes {start}-{end - 1}/{total}"}}

    status, body, _ = await call(http, "PUT", upload, **chunk(0, 1000))
    assert status == 400 and "320 KiB" in body["error"]["message"]
    status, body, _ = await call(http, "PUT", upload, **chunk(0, unit))
    assert status == 202 and body["nextExpectedRanges"] == [f"{unit}-"]
    status, body, _ = await call(http, "PUT", upload, **chunk(0, unit))
    assert status == 416 and body["error"]["code"] == "invalidRange"
    status, body, _ = await call(http, "GET", upload)
    assert status == 200 and body["nextExpectedRanges"] == [f"{unit}-"]
    status, _, _ = await call(http, "PUT", upload, **chunk(unit, 2 * unit))
    assert status == 202
    status, item, _ = await call(http, "PUT", upload, **chunk(2 * unit, total))
    assert status == 201 and item["name"] == "big.bin" and item["size"] == total
    assert sim.drive_items[item["id"]].data == data


async def test_a_fragment_whose_client_died_waiting_is_stored_and_recorded_as_undelivered(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await user_token(sim, sessions)
    _, folder, _ = await call(http, "GET", f"{sim.base_url}/teams/{TEAM}/channels/{CHANNEL}/filesFolder", token)
    drive = folder["parentReference"]["driveId"]
    url = f"{sim.base_url}/drives/{drive}/items/{folder['id']}:/v.bin:/createUploadSession"
    _, session, _ = await call(http, "POST", url, token, json={})
    unit = 320 * 1024
    sim.slow(r"PUT /_upload/", 0.5)
    headers = {"Content-Range": f"bytes 0-{unit - 1}/{2 * unit}"}
    put = asyncio.create_task(call(http, "PUT", session["uploadUrl"], data=b"\x02" * unit, headers=headers))
    await wait_for(lambda: any(r.method == "PUT" and len(r.body) == unit for r in sim.requests))
    put.cancel()  # the client dies while Graph works on the whole fragment it received
    with contextlib.suppress(asyncio.CancelledError):
        await put
    await wait_for(lambda: [r.status for r in sim.requests if r.method == "PUT"] != [0])
    [record] = [r for r in sim.requests if r.method == "PUT"]
    assert (record.status, record.delivered) == (202, False)
    status, body, _ = await call(http, "GET", session["uploadUrl"])  # how a new client finds out
    assert status == 200 and body["nextExpectedRanges"] == [f"{unit}-"]


# -- fault injection --------------------------------------------------------------------------------


async def test_fail_with_retry_after_forms_and_times(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await app_token(sim, sessions)
    url = f"{sim.base_url}/users/{MAILBOX}/sendMail"
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    sim.fail(r"POST /v1.0/users/.*/sendMail", 429, retry_after=5)
    sim.fail(r"POST /v1.0/users/.*/sendMail", 429, retry_after=2.5)
    sim.fail(r"POST /v1.0/users/.*/sendMail", 503, retry_after=date, times=2, inner_error=False)
    seen = [await call(http, "POST", url, token, json={"message": mail()}) for _ in range(5)]
    assert [s for s, _, _ in seen] == [429, 429, 503, 503, 202]
    assert [h.get("Retry-After") for _, _, h in seen[:4]] == ["5", "2.5", date, date]
    assert seen[0][1]["error"]["code"] == "TooManyRequests" and "innerError" in seen[0][1]["error"]
    assert seen[2][1] == {
        "error": {"code": "serviceNotAvailable", "message": "The service is temporarily unavailable."}
    }
    assert len(sim.sent_mail) == 1


async def test_drop_and_slow(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await app_token(sim, sessions)
    url = f"{sim.base_url}/users/{MAILBOX}/sendMail"
    sim.drop(r"sendMail")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(http, "POST", url, token, json={"message": mail()})
    assert sim.requests[-1].status == 0 and sim.sent_mail == []
    sim.slow(r"sendMail", 0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, _, _ = await call(http, "POST", url, token, json={"message": mail()})
    assert status == 202 and loop.time() - started >= 0.3


async def test_revoke_permission_per_workload(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await user_token(sim, sessions)
    sim.revoke_permission(r"sendMail")
    sim.revoke_permission(r"/chats/")
    status, body, _ = await call(
        http, "POST", f"{sim.base_url}/users/{MAILBOX}/sendMail", token, json={"message": mail()}
    )
    assert status == 403 and body == {
        "error": {"code": "ErrorAccessDenied", "message": "Access is denied. Check credentials and try again."}
    }
    status, body, _ = await call(http, "POST", f"{sim.base_url}/chats/{CHAT}/messages", token, json=text_message())
    assert status == 403 and body["error"]["code"] == "Forbidden" and "innerError" in body["error"]


async def test_token_endpoint_faults_reach_msal(sim: GraphSimulator, sessions: list[requests.Session]) -> None:
    app = await asyncio.to_thread(confidential, sim, sessions)
    sim.fail(r"POST /.*/oauth2/v2.0/token", 503, retry_after=1)
    with pytest.raises(Exception, match="503"):
        await asyncio.to_thread(app.acquire_token_for_client, scopes=GRAPH_DEFAULT)
    fresh = await asyncio.to_thread(confidential, sim, sessions)
    sim.fail(r"POST /.*/oauth2/v2.0/token", 400, code="invalid_request", message="AADSTS90014 missing field")
    result = await asyncio.to_thread(fresh.acquire_token_for_client, scopes=GRAPH_DEFAULT)
    assert result["error"] == "invalid_request"


async def test_requests_are_recorded_in_order(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await app_token(sim, sessions)
    await call(
        http,
        "POST",
        f"{sim.base_url}/users/{MAILBOX}/sendMail",
        token,
        json={"message": mail()},
        headers={"client-request-id": "abc"},
    )
    last = sim.requests[-1]
    assert last.method == "POST" and last.path == f"/v1.0/users/{MAILBOX}/sendMail" and last.status == 202
    assert last.headers["client-request-id"] == "abc" and last.json()["message"]["subject"] == "Build report"
    assert [r.at for r in sim.requests] == sorted(r.at for r in sim.requests)


async def test_send_mail_as_base64_mime(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await app_token(sim, sessions)
    url = f"{sim.base_url}/users/{MAILBOX}/sendMail"
    mime = b"To: ops@simulated.example\r\nSubject: raw\r\n\r\nbody"
    plain = {"Content-Type": "text/plain"}
    status, _, _ = await call(http, "POST", url, token, data=base64.b64encode(mime), headers=plain)
    assert status == 202 and sim.sent_mail[-1].message == {"mime": mime.decode()} and sim.sent_mail[-1].via == "mime"
    status, body, _ = await call(http, "POST", url, token, data=b"not base64!", headers=plain)
    assert status == 400 and body["error"]["code"] == "ErrorMimeContentInvalidBase64String"
