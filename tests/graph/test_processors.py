"""Each Graph processor end to end: the real queue, real PostgreSQL, the simulator over HTTPS.

An appliance runs with Graph pointed at a :class:`GraphSimulator` (its own test CA; the same msal
and aiohttp code as production). Jobs are enqueued with the spec's helpers; the tests look at
what Graph received, what the database holds, and how failures were classified and retried.
Retry timing runs on a ManualClock: the tests check when the next attempt is due, then move the
clock; waiting is always on a condition with a deadline.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import itertools
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from fleetbox.client import Client
from fleetbox.graph.attachments import CHUNK_BYTES
from fleetbox.graph.simulator import GraphSimulator
from fleetbox.models import JobState, ManualClock
from fleetbox.store import Store
from tests.conftest import wait_for
from tests.graph.helpers import SENDER, admin_url, attempts, finished, posts, subscribe, subscribed

CHAT = "19:2da4c29f6d7041eca70b638b43d45437@thread.v2"
TEAM = "5f3ad8e1-3c1b-4f0e-9a57-2a1c0e6b7d21"
CHANNEL = "19:c0ffee@thread.tacv2"


@pytest.fixture
async def sim() -> AsyncIterator[GraphSimulator]:
    async with GraphSimulator(allow_http_notification_urls=True) as simulator:
        yield simulator


# -- teams-outbound -------------------------------------------------------------------------


async def test_a_chat_message_is_posted_as_the_service_account_and_recorded(
    start: Any, client: Client, sim: GraphSimulator, db: Store
) -> None:
    await start()
    job = await client.enqueue_teams_message(
        {"chatId": CHAT, "content": "Truck 12 <b>arrived</b>", "contentType": "html", "importance": "high"}
    )
    await wait_for(finished(client, job.id))
    [message] = sim.chat_messages[CHAT]
    assert message["body"] == {"contentType": "html", "content": "Truck 12 <b>arrived</b>"}
    assert message["importance"] == "high"
    effect = await db.graph.effect(job.id, "message")
    assert effect is not None and effect.graph_id == message["id"]
    [post] = posts(sim, "POST /v1.0/chats/")
    assert post.headers["client-request-id"]


async def test_a_channel_message_goes_to_the_channel(start: Any, client: Client, sim: GraphSimulator) -> None:
    await start()
    job = await client.enqueue_teams_message({"teamId": TEAM, "channelId": CHANNEL, "content": "hi"})
    await wait_for(finished(client, job.id))
    [message] = sim.channel_messages[(TEAM, CHANNEL)]
    assert message["body"]["content"] == "hi"


async def test_a_retry_after_a_lost_completion_does_not_post_twice(
    start: Any, client: Client, sim: GraphSimulator, db: Store
) -> None:
    app = await start()
    job = await client.enqueue_teams_message({"chatId": CHAT, "content": "once"})
    await wait_for(finished(client, job.id))
    # The same job again, as after a crash between Graph's 201 and the completion write: the
    # recorded effect says the message exists.
    from fleetbox.graph.teams import send_teams_message

    info = await client.get_job(job.id)
    assert app.graph.ctx is not None
    from fleetbox.models import Job

    again = Job(
        id=info.id,
        queue=info.queue,
        priority=info.priority,
        data=info.data,
        attempt=2,
        max_attempts=None,
        retries={},
        run_at=info.run_at,
        created_at=info.created_at,
    )
    await send_teams_message(app.graph.ctx, again)
    assert len(sim.chat_messages[CHAT]) == 1


# -- outlook-outbound -----------------------------------------------------------------------


async def test_mail_is_sent_with_recipients_body_importance_and_inline_attachment(
    start: Any, client: Client, sim: GraphSimulator
) -> None:
    await start()
    content = base64.b64encode(b"route plan").decode()
    job = await client.enqueue_outlook_email(
        {
            "to": ["driver@contoso.example"],
            "cc": ["ops@contoso.example"],
            "bcc": ["audit@contoso.example"],
            "subject": "Important Update",
            "body": "<h1>Hello!</h1>",
            "bodyType": "html",
            "importance": "high",
            "attachments": [{"name": "plan.txt", "contentType": "text/plain", "contentBytes": content}],
        }
    )
    await wait_for(finished(client, job.id))
    [sent] = sim.sent_mail
    assert sent.mailbox == SENDER.lower()
    message = sent.message
    assert [r["emailAddress"]["address"] for r in message["toRecipients"]] == ["driver@contoso.example"]
    assert [r["emailAddress"]["address"] for r in message["bccRecipients"]] == ["audit@contoso.example"]
    assert message["body"]["contentType"].lower() == "html"
    assert message["attachments"][0]["contentBytes"] == content


# -- notifications --------------------------------------------------------------------------


async def test_an_activity_notification_reaches_the_user(start: Any, client: Client, sim: GraphSimulator) -> None:
    await start()
    job = await client.enqueue_notification(
        {"userId": "user-7", "chatId": CHAT, "activityType": "taskCreated", "previewText": "Inspection due"}
    )
    await wait_for(finished(client, job.id))
    [note] = sim.activity_notifications
    assert note.body["previewText"] == {"content": "Inspection due"}
    assert note.body["recipient"]["userId"] == "user-7"


# -- the error classes of the spec ----------------------------------------------------------


async def test_a_429_waits_at_least_retry_after_and_pauses_the_resource(
    start: Any, client: Client, sim: GraphSimulator, clock: ManualClock, db: Store, sql: asyncpg.Connection
) -> None:
    app = await start(clock=clock)
    sim.fail(r"POST /v1\.0/users/.*/sendMail", 429, code="ApplicationThrottled", retry_after=1.5)
    job = await client.enqueue_outlook_email(
        {"to": ["a@contoso.example"], "subject": "s", "body": "b"}, run_at=clock.now()
    )
    info = await attempts(client, job.id, 1)
    assert info.state is JobState.RETRYING
    assert info.history[0].error_class == "rate_limited"
    assert "ApplicationThrottled" in (info.history[0].error or "")
    # Not before Retry-After: the next attempt is due 1.5 s after the failure.
    assert info.run_at - info.history[0].finished_at >= dt.timedelta(seconds=1.5)

    async def throttle_recorded() -> bool:
        return await sql.fetchval("SELECT count(*) FROM rate_limit_tracking WHERE event = 'throttled'") == 1

    await wait_for(throttle_recorded)
    clock.advance(1.5)
    app.wake()
    await wait_for(finished(client, job.id))
    first, second = posts(sim, "POST /v1.0/users/")
    assert second.at - first.at >= 1.5  # the limiter held the retry until Retry-After had passed


async def test_network_errors_back_off_1_2_4_8_16_seconds(
    start: Any, client: Client, sim: GraphSimulator, clock: ManualClock
) -> None:
    app = await start(clock=clock)
    sim.drop(r"POST /v1\.0/chats/", times=5)
    job = await client.enqueue_teams_message({"chatId": CHAT, "content": "x"}, run_at=clock.now())
    delays = []
    for n in range(1, 6):
        info = await attempts(client, job.id, n)
        assert info.history[-1].error_class == "transient"
        delays.append(round((info.run_at - info.history[-1].finished_at).total_seconds()))
        clock.advance((info.run_at - clock.now()).total_seconds())
        app.wake()
    assert delays == [1, 2, 4, 8, 16]
    await wait_for(finished(client, job.id))
    assert len(sim.chat_messages[CHAT]) == 1


async def test_a_validation_error_dead_letters_at_once_with_graphs_code_and_request_id(
    start: Any, client: Client, sim: GraphSimulator
) -> None:
    await start()
    sim.fail(r"POST /v1\.0/users/.*/sendMail", 400, code="ErrorInvalidRecipients", message="Recipient isn't valid.")
    job = await client.enqueue_outlook_email({"to": ["nobody@contoso.example"], "subject": "s", "body": "b"})
    await wait_for(finished(client, job.id, JobState.DEAD))
    info = await client.get_job(job.id)
    assert len(info.history) == 1
    error = info.history[0].error or ""
    assert "ErrorInvalidRecipients" in error and "Recipient isn't valid." in error
    assert re.search(r"request-id [0-9a-f-]{36}", error)  # Graph's, for Microsoft support
    sent = posts(sim, "POST /v1.0/users/")[0].headers["client-request-id"]
    assert f"client-request-id {sent}" in error


async def test_an_app_only_token_cannot_post_to_a_chat_and_that_is_permanent(
    start: Any, client: Client, sim: GraphSimulator, tmp_path: Path
) -> None:
    os.remove(tmp_path / "token-cache.json")  # nobody signed in: the delegated token is missing
    await start()
    job = await client.enqueue_teams_message({"chatId": CHAT, "content": "x"})
    await wait_for(finished(client, job.id, JobState.DEAD))
    info = await client.get_job(job.id)
    assert "fleetbox auth login" in (info.history[0].error or "")


# -- rate limits ----------------------------------------------------------------------------


async def test_teams_posts_never_exceed_the_configured_rate_in_any_second(
    start: Any, client: Client, sim: GraphSimulator
) -> None:
    # Channel posts: Graph allows 50 per second per tenant for them, the spec's Teams rate. Graph
    # also allows one post per second per user; here that limit is lifted on both sides, so the
    # appliance-wide Teams limiter is what holds the rate.
    sim.teams_limits = dataclasses.replace(sim.teams_limits, per_user=1000)
    await start(rate_limits={"teams_per_second": 50, "teams_per_user_per_second": 1000}, pools={"high": 40})
    jobs = [
        {"queue": "teams-outbound", "data": {"teamId": TEAM, "channelId": f"19:chan-{i}@thread.tacv2", "content": "m"}}
        for i in range(300)
    ]
    await client.enqueue_many(jobs)

    async def all_posted() -> bool:
        return sum(len(v) for v in sim.channel_messages.values()) == 300

    await wait_for(all_posted, timeout=30)
    assert not [r for r in sim.requests if r.status == 429]
    times = sorted(r.at for r in posts(sim, "POST /v1.0/teams/") if r.status == 201)
    assert len(times) == 300
    busiest = max(sum(1 for t in times[i:] if t < start_at + 1.0) for i, start_at in enumerate(times))
    assert busiest <= 50


async def test_the_service_account_posts_at_most_once_a_second(start: Any, client: Client, sim: GraphSimulator) -> None:
    await start()
    # A first post opens the connection (its TLS handshake delays that one request's arrival).
    warm = await client.enqueue_teams_message({"chatId": "19:warm@thread.v2", "content": "x"})
    await wait_for(finished(client, warm.id))
    await client.enqueue_many(
        [{"queue": "teams-outbound", "data": {"chatId": f"19:pace-{i}@thread.v2", "content": "x"}} for i in range(3)]
    )

    async def all_posted() -> bool:
        return sum(len(v) for v in sim.chat_messages.values()) == 4

    await wait_for(all_posted, timeout=15)
    times = sorted(r.at for r in posts(sim, "POST /v1.0/chats/19:pace-"))
    assert len(times) == 3  # none refused: Graph's per-user limit was never hit
    assert all(later - earlier >= 0.98 for earlier, later in itertools.pairwise(times))


# -- attachments ----------------------------------------------------------------------------


def write_file(graph: dict[str, Any], name: str, size: int) -> bytes:
    data = os.urandom(size)
    Path(graph["files_dir"], name).write_bytes(data)
    return data


async def test_a_small_file_is_uploaded_to_the_channel_in_one_request(
    start: Any, client: Client, sim: GraphSimulator, graph: dict[str, Any]
) -> None:
    await start()
    data = write_file(graph, "f-1", 200_000)
    job = await client.enqueue_attachment_upload(
        {
            "fileId": "f-1",
            "fileName": "report.pdf",
            "fileSize": len(data),
            "contentType": "application/pdf",
            "operation": "upload",
            "source": "teams",
            "teamId": TEAM,
            "channelId": CHANNEL,
        }
    )
    await wait_for(finished(client, job.id))
    [item] = [f for f in sim.drive_items.values() if f.name == "report.pdf"]
    assert item.data == data


async def test_a_large_file_goes_in_ordered_chunks_and_resumes_after_a_failed_chunk(
    start: Any,
    client: Client,
    sim: GraphSimulator,
    graph: dict[str, Any],
    clock: ManualClock,
    db: Store,
    sql: asyncpg.Connection,
) -> None:
    app = await start(clock=clock)
    data = write_file(graph, "big", 3 * CHUNK_BYTES + 1000)
    # The connection dies under the first chunk, and again under aiohttp's own one re-send of an
    # idempotent request on a reused connection.
    sim.drop(r"PUT /_upload/", times=2)
    job = await client.enqueue_attachment_upload(
        {
            "fileId": "big",
            "fileName": "video.mp4",
            "fileSize": len(data),
            "contentType": "video/mp4",
            "operation": "upload",
            "source": "teams",
            "teamId": TEAM,
            "channelId": CHANNEL,
        },
        run_at=clock.now(),
    )
    info = await attempts(client, job.id, 1)
    assert info.history[0].error_class == "transient"
    assert await sql.fetchval("SELECT count(*) FROM graph_uploads") == 1  # the session is kept
    clock.advance((info.run_at - clock.now()).total_seconds())
    app.wake()
    await wait_for(finished(client, job.id))
    [item] = [f for f in sim.drive_items.values() if f.name == "video.mp4"]
    assert item.data == data
    puts = [r for r in sim.requests if r.method == "PUT" and r.status in (200, 201, 202)]
    ranges = [r.headers["content-range"] for r in puts]
    assert ranges == sorted(set(ranges), key=lambda r: int(r.split()[1].split("-")[0]))  # in order, none twice
    assert all("authorization" not in r.headers for r in puts)
    assert all(len(r.body) % (320 * 1024) == 0 for r in puts[:-1])
    # The second attempt asked the session where to go on, instead of opening another one.
    assert len(posts(sim, "POST /v1.0/drives/")) == 1
    assert [r.method for r in sim.requests if r.path.startswith("/_upload/")][:4] == ["PUT", "PUT", "GET", "PUT"]
    assert await sql.fetchval("SELECT count(*) FROM graph_uploads") == 0


async def test_a_drive_item_is_downloaded_without_sending_the_token_to_the_download_url(
    start: Any, client: Client, sim: GraphSimulator, graph: dict[str, Any]
) -> None:
    await start()
    data = write_file(graph, "up", 1000)
    up = await client.enqueue_attachment_upload(
        {
            "fileId": "up",
            "fileName": "doc.txt",
            "fileSize": 1000,
            "contentType": "text/plain",
            "operation": "upload",
            "source": "teams",
            "teamId": TEAM,
            "channelId": CHANNEL,
        }
    )
    await wait_for(finished(client, up.id))
    [(item_id, item)] = [(i, f) for i, f in sim.drive_items.items() if f.name == "doc.txt"]
    down = await client.enqueue_attachment_upload(
        {
            "fileId": "down",
            "fileName": "doc.txt",
            "fileSize": 1000,
            "contentType": "text/plain",
            "operation": "download",
            "source": "teams",
            "driveId": item.drive_id,
            "itemId": item_id,
        }
    )
    await wait_for(finished(client, down.id))
    assert Path(graph["files_dir"], "down").read_bytes() == data  # noqa: ASYNC240 -- a test's check, after the work


# -- webhooks, inbound, sync ----------------------------------------------------------------


async def test_the_subscription_handshake_and_a_notification_fetch_the_new_mail(
    start: Any, client: Client, sim: GraphSimulator, db: Store, sql: asyncpg.Connection
) -> None:
    _app, sub_id = await subscribed(start)
    assert sub_id in sim.subscriptions  # Graph's validation POST got the token back
    mail = sim.add_mail(SENDER, "inbox", {"subject": "Breakdown on A7", "body": {"content": "help"}})

    async def stored() -> bool:
        return bool(await sql.fetchval("SELECT count(*) FROM inbound_messages WHERE graph_id = $1", mail["id"]))

    await wait_for(stored, timeout=15)
    data = json.loads(await sql.fetchval("SELECT data::text FROM inbound_messages WHERE graph_id = $1", mail["id"]))
    assert data["subject"] == "Breakdown on A7"


async def test_a_client_state_mismatch_is_answered_202_and_discarded_unstored(
    start: Any, sim: GraphSimulator, db: Store, sql: asyncpg.Connection
) -> None:
    app, sub_id = await subscribed(start)
    delivery = await sim.deliver(sub_id, client_state="forged")
    # Graph takes anything but a 2xx as a failed delivery, retries it, and at last disables the
    # subscription: a forged item is discarded and counted, and answered like any other.
    assert delivery.status == 202 and delivery.elapsed < 3
    assert json.loads(delivery.body) == {"accepted": 0, "duplicates": 0, "rejected": 1}
    assert await sql.fetchval("SELECT count(*) FROM webhook_events") == 0
    assert await sql.fetchval("SELECT count(*) FROM jobs WHERE queue = 'webhooks'") == 0
    assert app.graph.receiver is not None and app.graph.receiver.rejected_total == 1
    scraped = app.metrics.render().decode()
    assert "fleetbox_graph_notifications_rejected_total 1.0" in scraped  # an operator sees it in /metrics


async def test_a_replayed_notification_is_processed_once(
    start: Any, sim: GraphSimulator, db: Store, sql: asyncpg.Connection
) -> None:
    _app, sub_id = await subscribed(start)
    sim.notify_on_change = False
    mail = sim.add_mail(SENDER, "inbox", {"subject": "once"})
    item = {
        "changeType": "created",
        "resource": f"users/{SENDER}/messages/{mail['id']}",
        "resourceData": {"id": mail["id"], "@odata.etag": 'W/"1"'},
    }
    first = await sim.deliver(sub_id, [item])
    second = await sim.deliver(sub_id, [item])
    assert (first.status, second.status) == (202, 202)
    assert first.elapsed < 3 and second.elapsed < 3  # Graph's deadline for an answer
    assert await sql.fetchval("SELECT count(*) FROM webhook_events WHERE status = 'accepted'") == 1


async def test_lifecycle_events_renew_recreate_and_resync(
    start: Any, client: Client, sim: GraphSimulator, db: Store, sql: asyncpg.Connection
) -> None:
    _app, sub_id = await subscribed(start)

    await sim.lifecycle(sub_id, "reauthorizationRequired")
    await wait_for(lambda: any(r.method == "PATCH" and r.status == 200 for r in sim.requests), timeout=15)

    await sim.lifecycle(sub_id, "missed")

    async def synced() -> bool:
        return bool(await sql.fetchval("SELECT count(*) FROM sync_history WHERE finished_at IS NOT NULL"))

    await wait_for(synced, timeout=15)

    await sim.lifecycle(sub_id, "subscriptionRemoved")

    async def recreated() -> bool:
        rows = await db.graph.live_subscriptions()
        return len(rows) == 1 and rows[0].id != sub_id

    await wait_for(recreated, timeout=15)


async def test_a_mail_sync_follows_pages_stores_the_delta_link_and_resyncs_when_it_expires(
    start: Any, client: Client, sim: GraphSimulator, db: Store, sql: asyncpg.Connection
) -> None:
    await start()
    sim.notify_on_change = False
    for i in range(120):
        sim.add_mail(SENDER, "inbox", {"subject": f"m{i}"})
    job = await client.enqueue_sync({"resourceType": "messages", "userId": SENDER})
    await wait_for(finished(client, job.id), timeout=20)
    assert await sql.fetchval("SELECT count(*) FROM inbound_messages WHERE source = 'outlook'") == 120
    link = await db.graph.last_delta_link("messages", f"{SENDER}/inbox")
    assert link and link.startswith(f"users/{SENDER}/") and "$deltatoken=" in link  # relative to base_url

    sim.add_mail(SENDER, "inbox", {"subject": "later"})
    again = await client.enqueue_sync({"resourceType": "messages", "userId": SENDER})
    await wait_for(finished(client, again.id), timeout=20)
    rows = await sql.fetch("SELECT items, full_sync FROM sync_history ORDER BY id")
    assert (rows[-1]["items"], rows[-1]["full_sync"]) == (1, False)  # only the change

    sim.expire_delta_tokens()
    third = await client.enqueue_sync({"resourceType": "messages", "userId": SENDER})
    await wait_for(finished(client, third.id), timeout=20)
    rows = await sql.fetch("SELECT items, full_sync, error FROM sync_history ORDER BY id")
    assert rows[-1]["full_sync"] is True and rows[-1]["items"] == 121
    assert "full resync" in (rows[-2]["error"] or "")


async def test_configured_subscriptions_are_created_renewed_and_recreated_when_graph_lost_them(
    start: Any, sim: GraphSimulator, db: Store, sql: asyncpg.Connection
) -> None:
    resource = f"users/{SENDER}/mailFolders('inbox')/messages"
    # The schedule off: this test runs the subscription check itself.
    app = await start(
        graph={"subscriptions": [{"source": "outlook", "resource": resource}]}, monitor={"schedule": False}
    )
    assert app.graph.ctx is not None and app.graph.subscriptions is not None
    app.graph.ctx.settings = app.graph.ctx.settings.model_copy(update={"webhook_base_url": admin_url(app)})
    assert await app.graph.subscriptions.maintain() == {"created": 1, "renewed": 0}
    assert await app.graph.subscriptions.maintain() == {"created": 0, "renewed": 0}  # nothing due
    [row] = await db.graph.live_subscriptions()
    assert row.resource == resource and row.id in sim.subscriptions

    # Close to expiry: renewed with a PATCH.
    await sql.execute("UPDATE graph_subscriptions SET expires_at = now() + interval '1 hour'")
    assert await app.graph.subscriptions.maintain() == {"created": 0, "renewed": 1}
    [renewed] = await db.graph.live_subscriptions()
    assert renewed.expires_at is not None and row.expires_at is not None
    assert renewed.id == row.id and renewed.expires_at > row.expires_at - dt.timedelta(minutes=5)

    # Graph dropped it (expired on its side): the renewal's 404 subscribes again.
    sim.expire_subscription(row.id)
    await sql.execute("UPDATE graph_subscriptions SET expires_at = now() + interval '1 hour'")
    await app.graph.subscriptions.maintain()
    [again] = await db.graph.live_subscriptions()
    assert again.id != row.id and again.id in sim.subscriptions

    # Two processes subscribing to one resource at once: the second keeps the first's.
    from fleetbox.config import SubscriptionSettings

    kept = await app.graph.subscriptions.create(SubscriptionSettings(source="outlook", resource=resource))
    assert kept == again.id
    assert [s["id"] for s in sim.subscriptions.values() if s["resource"] == resource] == [again.id]


async def test_a_chat_sync_stores_messages_of_every_chat_and_marks_deletions(
    start: Any, client: Client, sim: GraphSimulator, sql: asyncpg.Connection
) -> None:
    await start()
    sim.notify_on_change = False
    first = sim.add_chat_message(CHAT, "Driver 4 checked in")
    sim.add_chat_message("19:other@thread.v2", "Depot B is full")
    job = await client.enqueue_sync({"resourceType": "chatMessages", "userId": "svc@contoso.example"})
    await wait_for(finished(client, job.id), timeout=20)
    rows = await sql.fetch("SELECT container, deleted FROM inbound_messages WHERE source = 'teams' ORDER BY container")
    expected = [(f"chat:{CHAT}", False), ("chat:19:other@thread.v2", False)]
    assert [(r["container"], r["deleted"]) for r in rows] == expected

    sim.remove_chat_message(CHAT, first["id"])
    again = await client.enqueue_sync({"resourceType": "chatMessages", "userId": "svc@contoso.example"})
    await wait_for(finished(client, again.id), timeout=20)
    deleted = await sql.fetchval("SELECT deleted FROM inbound_messages WHERE graph_id = $1", first["id"])
    assert deleted is True


async def test_the_stream_shows_each_graph_queues_limiter(start: Any, client: Client) -> None:
    app = await start()
    job = await client.enqueue_outlook_email({"to": ["a@contoso.example"], "subject": "s", "body": "b"})
    await wait_for(finished(client, job.id))
    states = app.graph.limiter_states()
    assert states["teams-outbound"]["ratePerSecond"] == pytest.approx(50)
    outlook = states["outlook-outbound"]
    assert outlook["ratePerSecond"] == pytest.approx(10_000 / 600)
    assert (outlook.get("concurrency"), outlook.get("per")) == (4, "mailbox")
    assert (outlook.get("appConcurrency"), outlook.get("uploadBytes")) == (4, 150 * 1024 * 1024)
    assert (states["attachments"].get("concurrency"), states["attachments"].get("per")) == (5, "appliance")


async def test_outlook_attachments_upload_to_a_draft_through_a_session_and_download(
    start: Any, client: Client, sim: GraphSimulator, graph: dict[str, Any]
) -> None:
    await start()
    draft = sim.add_mail(SENDER, "drafts", {"subject": "Inspection photos"})
    data = write_file(graph, "photos", CHUNK_BYTES + 5000)  # over 3 MB: an upload session, two chunks
    up = await client.enqueue_attachment_upload(
        {
            "fileId": "photos",
            "fileName": "photos.zip",
            "fileSize": len(data),
            "contentType": "application/zip",
            "operation": "upload",
            "source": "outlook",
            "userId": SENDER,
            "messageId": draft["id"],
        }
    )
    await wait_for(finished(client, up.id))
    [attached] = sim.mail_attachments[draft["id"]]
    assert (attached.name, attached.data) == ("photos.zip", data)

    inbound = sim.add_mail(
        SENDER, "inbox", {"subject": "Damage report"}, attachments=[("damage.jpg", b"JPEG", "image/jpeg")]
    )
    [photo] = sim.mail_attachments[inbound["id"]]
    down = await client.enqueue_attachment_upload(
        {
            "fileId": "damage",
            "fileName": "damage.jpg",
            "fileSize": 4,
            "contentType": "image/jpeg",
            "operation": "download",
            "source": "outlook",
            "userId": SENDER,
            "messageId": inbound["id"],
            "attachmentId": photo.id,
        }
    )
    await wait_for(finished(client, down.id))
    assert Path(graph["files_dir"], "damage").read_bytes() == b"JPEG"  # noqa: ASYNC240 -- the test's check


async def test_a_teams_chat_notification_fetches_and_stores_the_message(
    start: Any, sim: GraphSimulator, sql: asyncpg.Connection
) -> None:
    app = await start()
    assert app.graph.ctx is not None
    app.graph.ctx.settings = app.graph.ctx.settings.model_copy(update={"webhook_base_url": admin_url(app)})
    await subscribe(app, "chats/getAllMessages", source="teams")
    message = sim.add_chat_message(CHAT, "Flat tyre on truck 9")

    async def stored() -> bool:
        return bool(await sql.fetchval("SELECT count(*) FROM inbound_messages WHERE graph_id = $1", message["id"]))

    await wait_for(stored, timeout=15)
    row = await sql.fetchrow(
        "SELECT source, container, data::text AS data FROM inbound_messages WHERE graph_id = $1", message["id"]
    )
    assert (row["source"], row["container"]) == ("teams", f"chat:{CHAT}")
    assert json.loads(row["data"])["body"]["content"] == "Flat tyre on truck 9"
