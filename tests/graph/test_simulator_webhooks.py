"""The Graph simulator's change notifications (validation handshake, lifetimes, delivery) and delta queries.

A tiny aiohttp receiver plays the fleetbox webhook endpoint; the simulator calls it for real.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import requests
from aiohttp import web

from fleetbox.graph.simulator import GraphSimulator
from tests.graph.test_simulator import CHAT, MAILBOX, app_token, call, user_token


@dataclass
class Receiver:
    """A webhook receiver: answers validation POSTs, records notification batches."""

    url: str = ""
    tokens: list[str] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    echo_wrong: bool = False
    stall: asyncio.Event | None = None  # validation waits on it (never set: the simulator times out)
    status: int = 202
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        if "validationToken" in request.query:
            token = request.query["validationToken"]
            self.tokens.append(token)
            if self.stall is not None:
                await self.stall.wait()
            return web.Response(text=token + ("x" if self.echo_wrong else ""), content_type="text/plain")
        body = await request.json()
        (self.lifecycle if request.path.endswith("lifecycle") else self.batches).append(body)
        self.arrived.set()
        return web.Response(status=self.status)


async def _serve(receiver: Receiver, ssl_context: Any = None) -> AsyncIterator[Receiver]:
    app = web.Application()
    app.router.add_post("/notify", receiver.handle)
    app.router.add_post("/lifecycle", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    scheme = "https" if ssl_context else "http"
    receiver.url = f"{scheme}://127.0.0.1:{runner.addresses[0][1]}"
    yield receiver
    if receiver.stall is not None:
        receiver.stall.set()
    await runner.cleanup()


@pytest.fixture
async def sim() -> AsyncIterator[GraphSimulator]:
    async with GraphSimulator(allow_http_notification_urls=True) as simulator:
        yield simulator
        assert simulator.internal_errors == []


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async for served in _serve(Receiver()):
        yield served


def in_minutes(minutes: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def mail_subscription(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    return {
        "changeType": "created,deleted",
        "notificationUrl": f"{receiver.url}/notify?tenant=a",
        "lifecycleNotificationUrl": f"{receiver.url}/lifecycle",
        "resource": f"users/{MAILBOX}/mailFolders('inbox')/messages",
        "expirationDateTime": in_minutes(60),
        "clientState": "s3cret",
        **extra,
    }


async def subscribe(
    sim: GraphSimulator, http: aiohttp.ClientSession, token: str, body: dict[str, Any], **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    status, answer, _ = await call(http, "POST", f"{sim.base_url}/subscriptions", token, json=body, **kwargs)
    return status, answer


# -- subscriptions ----------------------------------------------------------------------------------


async def test_subscription_validates_both_urls_with_a_decoded_token(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session], receiver: Receiver
) -> None:
    token = await app_token(sim, sessions)
    status, sub = await subscribe(sim, http, token, mail_subscription(receiver))
    assert status == 201
    assert sub["clientState"] == "s3cret" and sub["applicationId"] == sim.client_id
    assert sub["expirationDateTime"].endswith("Z") and len(sub["expirationDateTime"].split(".")[1]) == 8
    assert len(receiver.tokens) == 2
    assert all(" a b/c+d?e&f=g%h" in t for t in receiver.tokens)  # URL-special characters, decoded
    assert sim.subscriptions[sub["id"]]["resource"] == f"users/{MAILBOX}/mailFolders('inbox')/messages"


async def test_wrong_echo_and_timeout_fail_the_subscription(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session], receiver: Receiver
) -> None:
    token = await app_token(sim, sessions)
    receiver.echo_wrong = True
    status, body = await subscribe(sim, http, token, mail_subscription(receiver))
    assert status == 400 and body["error"]["code"] == "ValidationError"
    receiver.echo_wrong = False
    receiver.stall = asyncio.Event()
    sim.validation_timeout_seconds = 0.2
    status, body = await subscribe(sim, http, token, mail_subscription(receiver))
    assert status == 400 and body["error"]["message"] == "Subscription validation request timed out."
    assert sim.subscriptions == {}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"expirationDateTime": in_minutes(4300)}, "4230 minutes"),
        ({"changeType": "moved"}, "changeType"),
        ({"resource": "groups/x/events"}, "not supported"),
        ({"clientState": "x" * 256}, "255"),
        ({"notificationUrl": "ftp://example.com/x"}, "https URL"),
    ],
)
async def test_subscription_field_rules(
    sim: GraphSimulator,
    http: aiohttp.ClientSession,
    sessions: list[requests.Session],
    receiver: Receiver,
    change: dict[str, Any],
    fragment: str,
) -> None:
    token = await app_token(sim, sessions)
    status, body = await subscribe(sim, http, token, mail_subscription(receiver, **change))
    assert status == 400 and fragment in body["error"]["message"]
    assert receiver.tokens == []  # nothing is validated when the request itself is wrong


async def test_teams_subscription_beyond_an_hour_needs_a_lifecycle_url(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session], receiver: Receiver
) -> None:
    token = await app_token(sim, sessions)
    body = {
        "changeType": "created",
        "notificationUrl": f"{receiver.url}/notify",
        "resource": "chats/getAllMessages",
        "expirationDateTime": in_minutes(120),
        "clientState": "s",
    }
    status, answer = await subscribe(sim, http, token, body)
    assert status == 400 and "lifecycleNotificationUrl is a required property" in answer["error"]["message"]
    status, _ = await subscribe(sim, http, token, {**body, "expirationDateTime": in_minutes(50)})
    assert status == 201
    status, _ = await subscribe(
        sim,
        http,
        token,
        {**body, "lifecycleNotificationUrl": f"{receiver.url}/lifecycle", "expirationDateTime": in_minutes(4300)},
    )
    assert status == 201


async def test_http_receiver_refused_unless_allowed(sessions: list[requests.Session], receiver: Receiver) -> None:
    async with GraphSimulator() as strict, aiohttp.ClientSession() as http:
        token = await app_token(strict, sessions)
        status, body = await subscribe(
            strict, http, token, mail_subscription(receiver), ssl=strict.client_ssl_context()
        )
    assert status == 400 and "https" in body["error"]["message"]


async def test_https_receiver_with_a_certificate_from_the_simulator_ca(sessions: list[requests.Session]) -> None:
    async with GraphSimulator() as strict:
        async for receiver in _serve(Receiver(), strict.server_ssl_context("127.0.0.1")):
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=strict.client_ssl_context())) as http:
                token = await app_token(strict, sessions)
                status, _ = await subscribe(strict, http, token, mail_subscription(receiver))
            assert status == 201 and len(receiver.tokens) == 2


async def test_renew_delete_list_reauthorize_and_expiry(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session], receiver: Receiver
) -> None:
    token = await app_token(sim, sessions)
    _, sub = await subscribe(sim, http, token, mail_subscription(receiver))
    url = f"{sim.base_url}/subscriptions/{sub['id']}"
    status, renewed, _ = await call(http, "PATCH", url, token, json={"expirationDateTime": in_minutes(4000)})
    assert status == 200 and renewed["expirationDateTime"] != sub["expirationDateTime"]
    status, body, _ = await call(http, "PATCH", url, token, json={"expirationDateTime": in_minutes(5000)})
    assert status == 400 and body["error"]["code"] == "ExtensionError"
    status, listing, _ = await call(http, "GET", f"{sim.base_url}/subscriptions", token)
    assert status == 200 and [s["id"] for s in listing["value"]] == [sub["id"]]
    assert (await call(http, "POST", f"{url}/reauthorize", token))[0] == 204

    sim.expire_subscription(sub["id"])
    status, body, _ = await call(http, "PATCH", url, token, json={"expirationDateTime": in_minutes(30)})
    assert status == 404 and body["error"]["code"] == "ResourceNotFound"

    _, second = await subscribe(sim, http, token, mail_subscription(receiver))
    assert (await call(http, "DELETE", f"{sim.base_url}/subscriptions/{second['id']}", token))[0] == 204
    assert sim.subscriptions == {}


# -- delivery ---------------------------------------------------------------------------------------


async def test_deliver_a_batch_and_time_the_receiver(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session], receiver: Receiver
) -> None:
    token = await app_token(sim, sessions)
    _, sub = await subscribe(sim, http, token, mail_subscription(receiver))
    delivery = await sim.deliver(sub["id"], [{"resourceData": {"id": "m1"}}, {"changeType": "deleted"}])
    assert delivery.ok and delivery.status == 202 and delivery.elapsed < 3
    assert delivery.url.endswith("/notify?tenant=a")
    [batch] = receiver.batches
    assert [item["changeType"] for item in batch["value"]] == ["created", "deleted"]
    assert {item["clientState"] for item in batch["value"]} == {"s3cret"}
    assert {item["subscriptionId"] for item in batch["value"]} == {sub["id"]}
    assert batch["value"][0]["tenantId"] == sim.tenant

    receiver.status = 500
    wrong = await sim.deliver(sub["id"], client_state="forged")
    assert not wrong.ok and wrong.status == 500
    assert receiver.batches[-1]["value"][0]["clientState"] == "forged"
    assert sim.deliveries == [delivery, wrong]


async def test_deliver_times_out_on_a_slow_receiver(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    gate = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        if "validationToken" in request.query:
            return web.Response(text=request.query["validationToken"], content_type="text/plain")
        await gate.wait()
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/notify", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        token = await app_token(sim, sessions)
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/notify"
        body = {
            "changeType": "created",
            "notificationUrl": url,
            "resource": f"users/{MAILBOX}/messages",
            "expirationDateTime": in_minutes(30),
            "clientState": "s",
        }
        _, sub = await subscribe(sim, http, token, body)
        sim.delivery_timeout_seconds = 0.2
        delivery = await sim.deliver(sub["id"])
        assert delivery.timed_out and delivery.status == 0 and not delivery.ok
    finally:
        gate.set()
        await runner.cleanup()


async def test_lifecycle_events(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session], receiver: Receiver
) -> None:
    token = await app_token(sim, sessions)
    _, sub = await subscribe(sim, http, token, mail_subscription(receiver))
    await sim.lifecycle(sub["id"], "reauthorizationRequired")
    assert sim.reauthorization_required == {sub["id"]}
    await call(http, "POST", f"{sim.base_url}/subscriptions/{sub['id']}/reauthorize", token)
    assert sim.reauthorization_required == set()
    await sim.lifecycle(sub["id"], "missed")
    await sim.lifecycle(sub["id"], "subscriptionRemoved")
    events = [b["value"][0]["lifecycleEvent"] for b in receiver.lifecycle]
    assert events == ["reauthorizationRequired", "missed", "subscriptionRemoved"]
    assert receiver.lifecycle[0]["value"][0]["clientState"] == "s3cret"
    assert sub["id"] not in sim.subscriptions


async def test_seeded_mail_and_chat_messages_notify_subscriptions(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session], receiver: Receiver
) -> None:
    token = await app_token(sim, sessions)
    _, mail_sub = await subscribe(sim, http, token, mail_subscription(receiver))
    chat_body = {
        "changeType": "created",
        "notificationUrl": f"{receiver.url}/notify",
        "resource": f"chats/{CHAT}/messages",
        "expirationDateTime": in_minutes(30),
        "clientState": "c",
    }
    _, chat_sub = await subscribe(sim, http, token, chat_body)

    message = sim.add_mail(MAILBOX, "inbox", {"subject": "hello"})
    sim.add_mail(MAILBOX, "archive", {"subject": "not watched"})
    chat = sim.add_chat_message(CHAT, "ping")
    sim.remove_mail(MAILBOX, "inbox", message["id"])
    async with asyncio.timeout(10):
        await sim.drain_notifications()
    items = [item for batch in receiver.batches for item in batch["value"]]
    mail_items = [i for i in items if i["subscriptionId"] == mail_sub["id"]]
    assert sorted(i["changeType"] for i in mail_items) == ["created", "deleted"]
    assert {i["resourceData"]["id"] for i in mail_items} == {message["id"]}
    [chat_item] = [i for i in items if i["subscriptionId"] == chat_sub["id"]]
    assert chat_item["resource"] == f"chats('{CHAT}')/messages('{chat['id']}')" and chat_item["clientState"] == "c"


async def test_posted_chat_message_notifies_and_redelivery_happens_on_failure(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session], receiver: Receiver
) -> None:
    token = await app_token(sim, sessions)
    body = {
        "changeType": "created",
        "notificationUrl": f"{receiver.url}/notify",
        "resource": "chats/getAllMessages",
        "expirationDateTime": in_minutes(30),
        "clientState": "c",
    }
    _, sub = await subscribe(sim, http, token, body)
    receiver.status = 503
    sim.notification_redeliveries = 1
    user = await user_token(sim, sessions)
    status, _, _ = await call(
        http, "POST", f"{sim.base_url}/chats/{CHAT}/messages", user, json={"body": {"content": "out"}}
    )
    assert status == 201
    async with asyncio.timeout(10):
        await receiver.arrived.wait()
        receiver.status = 202
        await sim.drain_notifications()
    assert [d.status for d in sim.deliveries] == [503, 202]
    assert len(receiver.batches) == 2 and receiver.batches[0] == receiver.batches[1]
    assert sub["id"] in sim.subscriptions


# -- delta ------------------------------------------------------------------------------------------


async def test_mail_delta_pages_changes_and_removals(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await app_token(sim, sessions)
    first = [sim.add_mail(MAILBOX, "inbox", {"subject": f"m{i}"}) for i in range(3)]
    url = f"{sim.base_url}/users/{MAILBOX}/mailFolders/inbox/messages/delta"
    status, page1, headers = await call(http, "GET", url, token, headers={"Prefer": "odata.maxpagesize=2"})
    assert status == 200 and headers["Preference-Applied"] == "odata.maxpagesize=2"
    assert [m["subject"] for m in page1["value"]] == ["m0", "m1"]
    assert page1["@odata.nextLink"].startswith(url + "?$skiptoken=")
    _, page2, _ = await call(http, "GET", page1["@odata.nextLink"], token)
    assert [m["subject"] for m in page2["value"]] == ["m2"] and "@odata.nextLink" not in page2
    delta_link = page2["@odata.deltaLink"]
    assert delta_link.startswith(url + "?$deltatoken=")

    _, empty, _ = await call(http, "GET", delta_link, token)
    assert empty["value"] == []
    added = sim.add_mail(MAILBOX, "inbox", {"subject": "new"})
    sim.remove_mail(MAILBOX, "inbox", first[0]["id"])
    _, changes, _ = await call(http, "GET", delta_link, token)
    by_id = {item["id"]: item for item in changes["value"]}
    assert by_id[added["id"]]["subject"] == "new"
    assert by_id[first[0]["id"]]["@removed"] == {"reason": "deleted"}
    assert len(by_id) == 2 and "@odata.deltaLink" in changes


async def test_expired_and_reset_delta_tokens_are_410(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    token = await app_token(sim, sessions)
    sim.add_mail(MAILBOX, "inbox", {"subject": "x"})
    url = f"{sim.base_url}/users/{MAILBOX}/mailFolders/inbox/messages/delta"
    _, page, _ = await call(http, "GET", url, token)
    link = page["@odata.deltaLink"]
    sim.resync_required()
    status, body, headers = await call(http, "GET", link, token)
    assert status == 410 and body["error"]["code"] == "resyncRequired"
    assert headers["Location"] == url + "?$deltatoken="
    assert (await call(http, "GET", link, token))[0] == 200  # the reset was one-shot
    sim.expire_delta_tokens()
    status, body, _ = await call(http, "GET", link, token)
    assert status == 410 and body["error"]["code"] == "SyncStateNotFound"
    status, fresh, _ = await call(http, "GET", url, token)
    assert status == 200 and len(fresh["value"]) == 1


async def test_chat_messages_delta_is_app_only_with_top_capped(
    sim: GraphSimulator, http: aiohttp.ClientSession, sessions: list[requests.Session]
) -> None:
    app = await app_token(sim, sessions)
    user = await user_token(sim, sessions)
    url = f"{sim.base_url}/users/{MAILBOX}/chats/getAllMessages/delta"
    status, body, _ = await call(http, "GET", url, user)
    assert status == 412 and body["error"]["code"] == "PreconditionFailed"
    status, body, _ = await call(http, "GET", url + "?$top=51", app)
    assert status == 400 and "50" in body["error"]["message"]
    posted = [sim.add_chat_message(CHAT, f"c{i}") for i in range(3)]
    _, page, _ = await call(http, "GET", url + "?$top=2", app)
    assert [m["id"] for m in page["value"]] == [p["id"] for p in posted[:2]]
    _, page2, _ = await call(http, "GET", page["@odata.nextLink"], app)
    assert [m["body"]["content"] for m in page2["value"]] == ["c2"]
    sim.remove_chat_message(CHAT, posted[1]["id"])
    _, changes, _ = await call(http, "GET", page2["@odata.deltaLink"], app)
    assert changes["value"] == [
        {"@odata.type": "#microsoft.graph.chatMessage", "id": posted[1]["id"], "@removed": {"reason": "deleted"}}
    ]
