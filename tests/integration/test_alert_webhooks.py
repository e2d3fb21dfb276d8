"""Alert webhooks end to end: a real appliance, real PostgreSQL and a local HTTP receiver per
format. Signatures are checked with the Standard Webhooks reference library, not fleetbox's code."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from fleetbox.app import Appliance
from fleetbox.models import ManualClock
from fleetbox.store import Store
from tests.conftest import monitor_for, wait_for

AppFactory = Callable[..., Awaitable[Appliance]]
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP receiver that records every POST and answers with the statuses it is given."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    #: the answers to give, in order; then 200
    answers: list[int] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(dict(request.headers), await request.read()))
        status = self.answers.pop(0) if self.answers else 200
        headers = {"Retry-After": "0"} if status in (429, 503) else {}
        return web.Response(status=status, text="nope" if status >= 400 else "ok", headers=headers)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rec.url = f"http://127.0.0.1:{port}/hooks/T0K3N-in-the-path"
    yield rec
    await runner.cleanup()


def hook(receiver: Receiver, **kw: Any) -> dict[str, Any]:
    return {"name": "ops", "url": receiver.url, "secret": SECRET, "group_seconds": 0, **kw}


async def backlog(app: Appliance, count: int = 2) -> None:
    """A backlog on the paused queue sync (the appliance does not run it away)."""
    await app.service.queues.set_paused("sync", True, actor="test")
    for n in range(count):
        await app.client.enqueue("sync", {"n": n})


async def test_an_alert_that_opens_and_resolves_is_posted_signed_per_standard_webhooks(
    appliance_factory: AppFactory, receiver: Receiver, db: Store
) -> None:
    app = await appliance_factory(monitor={"max_backlog": 1, "schedule": False}, alerts={"webhooks": [hook(receiver)]})
    await backlog(app)
    [opened] = await app.monitor.check_alerts()
    await wait_for(lambda: len(receiver.received) == 1)
    first = receiver.received[0]
    payload = Webhook(SECRET).verify(first.body, first.headers)  # raises when the signature is wrong
    assert payload["type"] == "fleetbox.alerts"
    [alert] = payload["data"]["alerts"]
    assert (alert["transition"], alert["kind"], alert["queue"], alert["alertId"]) == (
        "opened",
        "backlog",
        "sync",
        opened.id,
    )
    assert alert["message"] == "sync: backlog 2 exceeds maxBacklog 1" and alert["resolvedAt"] is None
    assert payload["data"]["summary"] == "fleetbox: 1 alert: 1 opened"
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(first.body.replace(b"backlog 2", b"backlog 9"), first.headers)

    await app.service.queues.clear("sync", actor="test")
    assert len(await app.monitor.check_alerts()) == 1
    await wait_for(lambda: len(receiver.received) == 2)
    second = receiver.received[1]
    [alert] = Webhook(SECRET).verify(second.body, second.headers)["data"]["alerts"]
    assert (alert["transition"], alert["alertId"]) == ("resolved", opened.id)
    assert alert["resolvedAt"] is not None
    assert first.headers["webhook-id"] != second.headers["webhook-id"]
    # nothing more while nothing changes
    assert await app.monitor.check_alerts() == []
    assert len(receiver.received) == 2


async def test_a_receiver_that_fails_gets_the_same_message_again_and_nothing_is_lost(
    appliance_factory: AppFactory, receiver: Receiver, db: Store
) -> None:
    receiver.answers = [503, 429]
    app = await appliance_factory(monitor={"max_backlog": 1, "schedule": False}, alerts={"webhooks": [hook(receiver)]})
    await backlog(app)
    await app.monitor.check_alerts()
    await wait_for(lambda: len(receiver.received) == 3, timeout=30)
    bodies = {r.body for r in receiver.received}
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert len(bodies) == 1 and len(ids) == 1  # one message, sent until it was taken: receivers de-duplicate
    for r in receiver.received:
        Webhook(SECRET).verify(r.body, r.headers)

    async def delivered() -> bool:
        return await db.pool.fetchval("SELECT count(*) FROM jobs_done WHERE queue = 'alert-webhooks'") == 1

    await wait_for(delivered)
    row = await db.pool.fetchrow("SELECT state::text, attempts FROM jobs_done WHERE queue = 'alert-webhooks'")
    assert (row["state"], row["attempts"]) == ("succeeded", 3)


async def test_a_receiver_that_refuses_the_message_dead_letters_the_delivery_and_a_retry_sends_it(
    appliance_factory: AppFactory, receiver: Receiver, db: Store
) -> None:
    receiver.answers = [400]
    app = await appliance_factory(monitor={"max_backlog": 1, "schedule": False}, alerts={"webhooks": [hook(receiver)]})
    await backlog(app)
    await app.monitor.check_alerts()

    async def dead() -> bool:
        return await db.pool.fetchval("SELECT count(*) FROM dead_letters WHERE queue = 'alert-webhooks'") == 1

    await wait_for(dead)
    letter = await db.pool.fetchrow("SELECT id, error_class, error FROM dead_letters WHERE queue = 'alert-webhooks'")
    assert letter["error_class"] == "permanent"
    assert "alert webhook ops: the receiver refused the message (HTTP 400) nope" in letter["error"]
    assert "T0K3N" not in letter["error"]  # the URL's token never reaches an error
    assert len(receiver.received) == 1
    # The operator fixes the receiver and retries the dead letter: the same alerts go out.
    await app.service.dead_letters.retry(letter["id"], actor="ops")
    await wait_for(lambda: len(receiver.received) == 2)
    first, again = (Webhook(SECRET).verify(r.body, r.headers) for r in receiver.received)
    assert again["data"]["alerts"] == first["data"]["alerts"]


async def test_changes_while_a_delivery_waits_go_out_in_one_message(
    appliance_factory: AppFactory, receiver: Receiver, db: Store
) -> None:
    app = await appliance_factory(
        monitor={"max_backlog": 1, "max_dead_letter_jobs": 0, "schedule": False}, alerts={"webhooks": [hook(receiver)]}
    )
    # The delivery queue is paused while alerts open one check after another: one job waits.
    await app.service.queues.set_paused("alert-webhooks", True, actor="test")
    await backlog(app)
    await app.monitor.check_alerts()
    await db.pool.execute(
        "INSERT INTO dead_letters (job_id, queue, priority, data, error_class, error, attempts, history, "
        "job_created_at, failed_at) VALUES (999, 'sync', 5, '{}', 'permanent', 'e', 1, '[]', now(), now())"
    )
    await app.monitor.check_alerts()
    assert await db.pool.fetchval("SELECT count(*) FROM jobs WHERE queue = 'alert-webhooks'") == 1
    await app.service.queues.set_paused("alert-webhooks", False, actor="test")
    await wait_for(lambda: len(receiver.received) == 1)
    payload = Webhook(SECRET).verify(receiver.received[0].body, receiver.received[0].headers)
    assert sorted(a["kind"] for a in payload["data"]["alerts"]) == ["backlog", "dead_letters"]
    assert payload["data"]["summary"] == "fleetbox: 2 alerts: 2 opened"


async def test_an_alert_still_open_is_repeated_after_the_interval_and_filters_apply(
    db: Store, clock: ManualClock
) -> None:
    from fleetbox.client import Client
    from fleetbox.config import AlertWebhookSettings
    from fleetbox.models import Thresholds
    from fleetbox.monitor.notify import AlertNotifier

    every = AlertWebhookSettings(name="every", url="https://h.example/a", secret=SECRET, repeat_interval_seconds=3600)
    resolved_only = AlertWebhookSettings(
        name="resolved-only", url="https://h.example/b", format="slack", events=["resolved"]
    )
    dead_only = AlertWebhookSettings(
        name="dead-only", url="https://h.example/c", format="teams", kinds=["dead_letters"]
    )
    notifier = AlertNotifier([every, resolved_only, dead_only])
    monitor = monitor_for(
        db,
        clock=clock,
        thresholds=Thresholds(max_backlog=1),
        depth_cache_seconds=0,
        settle_seconds=0,
        notifier=notifier,
    )
    client = Client(db, clock=clock)
    await client.enqueue_many([{"queue": "sync", "data": {}} for _ in range(2)])

    async def notes() -> list[tuple[str, str]]:
        rows = await db.pool.fetch("SELECT webhook, transition FROM alert_notifications ORDER BY id")
        return [(r["webhook"], r["transition"]) for r in rows]

    await monitor.check_alerts()
    assert await notes() == [("every", "opened")]
    clock.advance(3599)
    await monitor.check_alerts()
    assert await notes() == [("every", "opened")]
    clock.advance(1)
    await monitor.check_alerts()
    assert await notes() == [("every", "opened"), ("every", "repeat")]
    await db.pool.execute("DELETE FROM jobs WHERE queue = 'sync'")
    await monitor.check_alerts()
    assert await notes() == [
        ("every", "opened"),
        ("every", "repeat"),
        ("every", "resolved"),
        ("resolved-only", "resolved"),
    ]
    # one delivery job per webhook that had something to send, due group_seconds (30) after
    jobs = await db.pool.fetch(
        "SELECT data->>'webhook' AS w, run_at FROM jobs WHERE queue = 'alert-webhooks' ORDER BY id"
    )
    assert [j["w"] for j in jobs] == ["every", "resolved-only"]
    assert jobs[0]["run_at"] == clock.now() - dt.timedelta(seconds=3600) + dt.timedelta(seconds=30)


@pytest.mark.parametrize("fmt", ["slack", "teams", "pagerduty"])
async def test_each_format_posts_what_its_receiver_documents(
    appliance_factory: AppFactory, receiver: Receiver, fmt: str
) -> None:
    secret = "R0UT1NGKEY" * 3 if fmt == "pagerduty" else None
    app = await appliance_factory(
        monitor={"max_backlog": 1, "schedule": False}, alerts={"webhooks": [hook(receiver, format=fmt, secret=secret)]}
    )
    await backlog(app)
    [alert] = await app.monitor.check_alerts()
    await wait_for(lambda: len(receiver.received) == 1)
    await app.service.queues.clear("sync", actor="test")
    await app.monitor.check_alerts()
    await wait_for(lambda: len(receiver.received) == 2)
    opened, resolved = (r.json() for r in receiver.received)
    for r in receiver.received:
        assert r.headers["Content-Type"] == "application/json"
        assert "webhook-signature" not in r.headers
    if fmt == "slack":
        assert opened["text"] == "fleetbox: 1 alert: 1 opened"
        line = "[OPEN] backlog on sync: sync: backlog 2 exceeds maxBacklog 1"
        assert opened["blocks"][1] == {"type": "section", "text": {"type": "mrkdwn", "text": line}}
        assert resolved["text"] == "fleetbox: 1 alert: 1 resolved"
    elif fmt == "teams":
        [attachment] = opened["attachments"]
        assert opened["type"] == "message"
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        card = attachment["content"]
        assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
        assert card["body"][0]["text"] == "fleetbox: 1 alert: 1 opened"
        assert card["body"][1]["facts"] == [{"title": "[OPEN] backlog on sync", "value": alert.message}]
    else:
        assert opened["routing_key"] == secret and resolved["routing_key"] == secret
        assert (opened["event_action"], resolved["event_action"]) == ("trigger", "resolve")
        assert opened["dedup_key"] == resolved["dedup_key"] == f"fleetbox-alert-{alert.id}"
        assert opened["payload"]["severity"] == "warning" and opened["payload"]["source"] == "fleetbox"
        assert opened["payload"]["summary"] == "[OPEN] backlog on sync: sync: backlog 2 exceeds maxBacklog 1"
        assert "payload" not in resolved


@pytest.mark.parametrize(
    ("webhook", "message"),
    [
        ({"format": "json", "secret": None}, "format json needs secret"),
        ({"format": "json", "secret": "not-whsec"}, "format json needs secret"),
        ({"format": "pagerduty", "secret": None}, "format pagerduty needs secret"),
        ({"url": "ftp://h.example/x"}, "must be an http:// or https:// URL"),
        ({"format": "email"}, "format"),
    ],
)
def test_a_bad_webhook_is_refused_naming_what_is_wrong(webhook: dict[str, Any], message: str) -> None:
    from fleetbox.config import load_settings
    from fleetbox.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_settings(
            None,
            {"alerts": {"webhooks": [{"name": "ops", "url": "https://h.example/T0K3N", "secret": SECRET, **webhook}]}},
            environ={},
        )
    assert "alerts.webhooks" in str(caught.value) and message in str(caught.value)
    assert "T0K3N" not in str(caught.value) and SECRET not in str(caught.value)


def test_config_show_never_prints_a_webhook_url_or_secret(tmp_path: Any) -> None:
    from fleetbox.config import effective_values, load_settings

    config = tmp_path / "fleetbox.toml"
    config.write_text(
        '[[alerts.webhooks]]\nname = "chat"\nurl = "https://hooks.slack.com/services/T0/B0/T0K3N"\nformat = "slack"\n'
        f'[[alerts.webhooks]]\nname = "signed"\nurl = "https://h.example/x"\nsecret = "{SECRET}"\n'
    )
    shown = "\n".join(f"{k} {v}" for k, v, _ in effective_values(load_settings(config, environ={})))
    assert "alerts.webhooks" in shown and "'name': 'chat'" in shown
    assert "T0K3N" not in shown and SECRET not in shown and "h.example" not in shown
