"""Graph delivery under Microsoft Graph's and Entra's real fault behaviour, through the real queue.

An appliance runs on real PostgreSQL with Graph pointed at the TLS simulator; faults are injected
there. Retry time runs on a ManualClock where a test checks when the next attempt is due.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fleetbox.client import Client
from fleetbox.config import GraphSettings
from fleetbox.graph.simulator import GraphSimulator
from fleetbox.graph.tokens import TokenKind, Tokens, graph_scope
from fleetbox.models import JobState, ManualClock
from tests.conftest import wait_for
from tests.graph.helpers import SENDER, admin_url, attempts, finished, posts, subscribed


@pytest.fixture
async def sim() -> AsyncIterator[GraphSimulator]:
    """The simulator, allowed to post notifications to the appliance's plain-HTTP admin port."""
    async with GraphSimulator(allow_http_notification_urls=True) as simulator:
        yield simulator
    assert simulator.internal_errors == []


MAIL = {"to": ["driver@contoso.example"], "subject": "Route change", "body": "Take the A7"}
SEND_MAIL = r"POST /v1\.0/users/.*/sendMail"


def forget_access_tokens(graph: dict[str, Any]) -> None:
    """Leave only the refresh token in the service account's cache: the next Teams post refreshes."""
    path = Path(graph["token_cache_path"])
    cache = json.loads(path.read_text(encoding="utf-8"))
    cache["AccessToken"] = {}
    path.write_text(json.dumps(cache), encoding="utf-8")


def token_requests(sim: GraphSimulator, grant: str = "client_credentials") -> list[Any]:
    return [
        r for r in sim.requests if r.path.endswith("/oauth2/v2.0/token") and f"grant_type={grant}".encode() in r.body
    ]


# -- 1. the token scope ---------------------------------------------------------------------


async def test_graph_behind_another_host_gets_tokens_for_graphs_audience(
    start: Any, client: Client, sim: GraphSimulator
) -> None:
    # The simulator answers on 127.0.0.1 (as a proxy or gateway would on its own name) and, like
    # Graph, refuses a token whose audience is not Graph's.
    await start()
    job = await client.enqueue_outlook_email(MAIL)
    await wait_for(finished(client, job.id))
    assert b"scope=https%3A%2F%2Fgraph.microsoft.com%2F.default" in token_requests(sim)[0].body
    assert not [r for r in sim.requests if r.status == 401]


async def test_graph_scope_setting_names_the_audience(start: Any, client: Client, sim: GraphSimulator) -> None:
    sim.audience = "api://contoso-graph-gateway"
    await start(graph={"scope": "api://contoso-graph-gateway/.default"})
    job = await client.enqueue_outlook_email(MAIL)
    await wait_for(finished(client, job.id))
    assert b"scope=api%3A%2F%2Fcontoso-graph-gateway%2F.default" in token_requests(sim)[0].body


async def test_a_token_for_the_wrong_audience_is_refused_as_graph_refuses_it(
    start: Any, client: Client, sim: GraphSimulator
) -> None:
    sim.audience = "api://contoso-graph-gateway"  # the gateway wants its own audience; none configured
    await start()
    job = await client.enqueue_outlook_email(MAIL)
    await wait_for(finished(client, job.id, JobState.DEAD), timeout=15)
    info = await client.get_job(job.id)
    assert "Invalid audience" in (info.history[-1].error or "")


@pytest.mark.parametrize(
    ("base_url", "scope"),
    [
        ("https://graph.microsoft.com/v1.0", "https://graph.microsoft.com/.default"),
        ("https://graph.microsoft.us/v1.0", "https://graph.microsoft.us/.default"),
        ("https://dod-graph.microsoft.us/beta", "https://dod-graph.microsoft.us/.default"),
        ("https://microsoftgraph.chinacloudapi.cn/v1.0", "https://microsoftgraph.chinacloudapi.cn/.default"),
        ("https://graph-proxy.contoso.internal:8443/v1.0", "https://graph.microsoft.com/.default"),
    ],
)
def test_default_scope_per_cloud(base_url: str, scope: str) -> None:
    assert graph_scope(GraphSettings(base_url=base_url)) == scope


def test_a_scope_without_default_suffix_is_refused() -> None:
    with pytest.raises(ValueError, match=r"scope must be a resource followed by /\.default"):
        GraphSettings(scope="https://graph.microsoft.com/Mail.Send")


# -- 5. error classes as the spec says ------------------------------------------------------


async def _delays(client: Client, app: Any, clock: ManualClock, job_id: int, n: int) -> list[tuple[str, float]]:
    seen = []
    for i in range(1, n + 1):
        info = await attempts(client, job_id, i)
        last = info.history[-1]
        seen.append((last.error_class or "", round((info.run_at - last.finished_at).total_seconds(), 1)))
        clock.advance((info.run_at - clock.now()).total_seconds())
        app.wake()
    return seen


@pytest.mark.parametrize("status", [503, 504])
async def test_503_and_504_without_retry_after_are_network_errors(
    start: Any, client: Client, sim: GraphSimulator, clock: ManualClock, status: int
) -> None:
    app = await start(clock=clock)
    sim.fail(SEND_MAIL, status, times=4)
    job = await client.enqueue_outlook_email(MAIL, run_at=clock.now())
    assert await _delays(client, app, clock, job.id, 4) == [
        ("transient", 1),
        ("transient", 2),
        ("transient", 4),
        ("transient", 8),
    ]
    await wait_for(finished(client, job.id))


async def test_503_with_retry_after_waits_for_it(
    start: Any, client: Client, sim: GraphSimulator, clock: ManualClock
) -> None:
    app = await start(clock=clock)
    sim.fail(SEND_MAIL, 503, retry_after=7)
    job = await client.enqueue_outlook_email(MAIL, run_at=clock.now())
    assert await _delays(client, app, clock, job.id, 1) == [("transient", 7)]
    await wait_for(finished(client, job.id))


async def test_429_without_retry_after_backs_off_2_4_8(
    start: Any, client: Client, sim: GraphSimulator, clock: ManualClock
) -> None:
    app = await start(clock=clock)
    sim.fail(SEND_MAIL, 429, times=3)
    job = await client.enqueue_outlook_email(MAIL, run_at=clock.now())
    assert await _delays(client, app, clock, job.id, 3) == [
        ("rate_limited", 2),
        ("rate_limited", 4),
        ("rate_limited", 8),
    ]
    await wait_for(finished(client, job.id))


# -- 6. a 401 is retried once -----------------------------------------------------------------


async def test_a_persistent_401_is_one_refresh_and_one_retry_then_a_dead_letter(
    start: Any, client: Client, sim: GraphSimulator
) -> None:
    await start()
    warm = await client.enqueue_outlook_email(MAIL)
    await wait_for(finished(client, warm.id))
    fetched = len(token_requests(sim))
    sim.fail(SEND_MAIL, 401, code="InvalidAuthenticationToken", message="Access token has expired.", times=100)
    job = await client.enqueue_outlook_email(MAIL)
    await wait_for(finished(client, job.id, JobState.DEAD), timeout=15)
    info = await client.get_job(job.id)
    assert [a.error_class for a in info.history] == ["authentication", "authentication"]
    assert len(posts(sim, "POST /v1.0/users/")) == 3  # the warm-up, then one request and one retry
    assert len(token_requests(sim)) == fetched + 1  # one refresh
    assert "InvalidAuthenticationToken" in (info.history[-1].error or "")
    assert "Access token has expired." in (info.history[-1].error or "")


async def test_an_expired_token_costs_one_retry_with_a_fresh_token(
    start: Any, client: Client, sim: GraphSimulator
) -> None:
    await start()
    warm = await client.enqueue_outlook_email(MAIL)
    await wait_for(finished(client, warm.id))
    sim.expire_tokens()
    job = await client.enqueue_outlook_email(MAIL)
    await wait_for(finished(client, job.id))
    info = await client.get_job(job.id)
    assert [a.error_class for a in info.history] == ["authentication", None]
    assert [r.status for r in posts(sim, "POST /v1.0/users/")[-2:]] == [401, 202]
    assert len(sim.sent_mail) == 2
    assert info.history[1].started_at - info.history[0].finished_at < dt.timedelta(seconds=1)


# -- 2. an Entra outage ---------------------------------------------------------------------

TOKEN_ROUTE = r"POST /.*/oauth2/v2\.0/token"
CHAT = "19:2da4c29f6d7041eca70b638b43d45437@thread.v2"


async def _all_waiting(client: Client, clock: ManualClock, ids: list[int]) -> dt.datetime:
    """Wait until every job waits for a later time; return the earliest of those times."""
    due: list[dt.datetime] = []

    async def check() -> bool:
        infos = [await client.get_job(i) for i in ids]
        for info in infos:
            assert info.state is not JobState.DEAD, [a.error for a in info.history]
        due[:] = [i.run_at for i in infos]
        # (the state says "waiting" once the database's own time passes run_at: the ManualClock decides)
        waiting = (JobState.SCHEDULED, JobState.WAITING, JobState.RETRYING)
        return all(i.state in waiting and i.run_at > clock.now() for i in infos)

    await wait_for(check, timeout=15)
    return min(due)


async def test_a_four_minute_entra_outage_dead_letters_no_teams_job_and_raises_an_alert(
    start: Any, client: Client, sim: GraphSimulator, clock: ManualClock, graph: dict[str, Any]
) -> None:
    forget_access_tokens(graph)
    app = await start(clock=clock)
    sim.fail(TOKEN_ROUTE, 503, times=100_000)  # Entra is down before the first refresh
    jobs = [
        await client.enqueue_teams_message({"chatId": CHAT, "content": f"m{i}"}, run_at=clock.now()) for i in range(3)
    ]
    ids = [j.id for j in jobs]
    began = clock.now()
    await app.presence.beat()
    while (due := await _all_waiting(client, clock, ids)) - began < dt.timedelta(minutes=4):
        clock.advance((due - clock.now()).total_seconds())
        app.wake()
    await app.presence.beat()
    [alert] = [c for c in await app.presence.conditions() if c.kind == "task_failing"]
    assert alert.subject is not None and alert.subject.endswith("/graph-tokens-delegated")
    assert alert.value > 60
    # One token request per probe (1, 2, 4 ... 30 s apart), not one per job and retry.
    refreshes = [r for r in sim.requests if r.path.endswith("/oauth2/v2.0/token")]
    assert 8 <= len(refreshes) <= 16
    sim.clear_faults()  # Entra is back; msal's own 60 s throttle must not hide it
    clock.advance((due - clock.now()).total_seconds())
    app.wake()
    for job_id in ids:
        await wait_for(finished(client, job_id), timeout=20)
        info = await client.get_job(job_id)
        assert [a.error_class for a in info.history if a.error_class] == []  # no attempt was used up
    assert len(sim.chat_messages[CHAT]) == 3


async def test_an_outage_longer_than_the_wait_lets_jobs_use_their_retries(
    start: Any, client: Client, sim: GraphSimulator, clock: ManualClock, graph: dict[str, Any]
) -> None:
    forget_access_tokens(graph)
    app = await start(clock=clock, graph={"identity_outage_wait_seconds": 10})
    sim.fail(TOKEN_ROUTE, 503, times=100_000)
    job = await client.enqueue_teams_message({"chatId": CHAT, "content": "late"}, run_at=clock.now())

    async def dead_or_waiting() -> bool:
        info = await client.get_job(job.id)
        return info.state is JobState.DEAD or (info.state is not JobState.RUNNING and info.run_at > clock.now())

    for _ in range(40):
        await wait_for(dead_or_waiting, timeout=15)
        info = await client.get_job(job.id)
        if info.state is JobState.DEAD:
            break
        clock.advance((info.run_at - clock.now()).total_seconds())
        app.wake()
    assert info.state is JobState.DEAD
    assert "Entra" in (info.history[-1].error or "")


# -- 3. waiting for a limiter does not hold a worker slot ------------------------------------


async def test_mail_starts_within_a_second_while_200_teams_posts_wait_for_their_turn(
    start: Any, client: Client, sim: GraphSimulator
) -> None:
    await start()  # real time: Teams goes at one post a second (the service account's limit)
    teams = [await client.enqueue_teams_message({"chatId": CHAT, "content": f"stop {i}"}) for i in range(200)]
    await wait_for(lambda: len(sim.chat_messages.get(CHAT, [])) >= 2, timeout=15)
    mail = await client.enqueue_outlook_email(MAIL)  # the same (high) tier as teams-outbound
    await wait_for(finished(client, mail.id), timeout=10)
    info = await client.get_job(mail.id)
    assert info.history[0].started_at - info.created_at < dt.timedelta(seconds=1)
    # The Teams posts waited outside the pool, used no attempt, and keep to one a second.
    waiting = [await client.get_job(j.id) for j in teams[-5:]]
    assert all(i.state is not JobState.DEAD and not [a for a in i.history if a.error_class] for i in waiting)
    times = sorted(r.at for r in posts(sim, "POST /v1.0/chats/") if r.status == 201)
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(times))


# -- 7. per-chat pacing with a margin ---------------------------------------------------------


async def test_posts_to_one_chat_arrive_at_least_1_1_seconds_apart(
    start: Any, client: Client, sim: GraphSimulator
) -> None:
    await start()
    jobs = [await client.enqueue_teams_message({"chatId": CHAT, "content": f"leg {i}"}) for i in range(5)]
    for job in jobs:
        await wait_for(finished(client, job.id), timeout=20)
    times = sorted(r.at for r in posts(sim, "POST /v1.0/chats/") if r.status == 201)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Graph allows one a second per chat; fleetbox paces at 1.1 s so jitter cannot break the limit.
    assert len(times) == 5 and min(gaps) >= 1.0, gaps
    assert (times[-1] - times[0]) / 4 >= 1.08, gaps  # the pace, whatever one gap's jitter
    assert not [r for r in sim.requests if r.status == 429]


# -- 4. a 429 stops everything aimed at that resource ---------------------------------------

OTHER_MAILBOX = "dispatch@contoso.example"


def sends_to(sim: GraphSimulator, mailbox: str) -> list[Any]:
    return [r for r in posts(sim, f"POST /v1.0/users/{mailbox}/sendMail")]


async def test_after_a_429_no_request_to_that_mailbox_leaves_before_retry_after(
    start: Any, client: Client, sim: GraphSimulator
) -> None:
    await start()
    sim.fail(SEND_MAIL, 429, code="ApplicationThrottled", retry_after=3)
    jobs = [await client.enqueue_outlook_email({**MAIL, "from": OTHER_MAILBOX}) for _ in range(6)]
    for job in jobs:
        await wait_for(finished(client, job.id), timeout=20)
    calls = sends_to(sim, OTHER_MAILBOX)
    [throttled] = [r for r in calls if r.status == 429]
    # Requests already on the wire when the 429 came back cannot be recalled: a quarter second for
    # them (they left before fleetbox knew); none may leave after it knew, inside the window.
    inside = [r for r in calls if r is not throttled and throttled.at + 0.25 <= r.at < throttled.at + 3]
    assert inside == []
    assert len(sim.sent_mail) == 6


async def test_a_pause_one_appliance_was_given_holds_back_another(
    start: Any, client: Client, sim: GraphSimulator, sql: Any
) -> None:
    first = await start()
    sim.fail(SEND_MAIL, 429, code="ApplicationThrottled", retry_after=4)
    job = await client.enqueue_outlook_email({**MAIL, "from": OTHER_MAILBOX})
    await wait_for(lambda: any(r.status == 429 for r in sends_to(sim, OTHER_MAILBOX)), timeout=10)

    async def shared() -> bool:
        return await sql.fetchval("SELECT count(*) FROM graph_pauses WHERE key = $1", OTHER_MAILBOX) == 1

    await wait_for(shared)
    await first.stop()
    await start()  # another appliance, which never saw the 429
    other = await client.enqueue_outlook_email({**MAIL, "from": OTHER_MAILBOX})
    for job_id in (job.id, other.id):
        await wait_for(finished(client, job_id), timeout=20)
    calls = sends_to(sim, OTHER_MAILBOX)
    [throttled] = [r for r in calls if r.status == 429]
    assert [r for r in calls if r is not throttled and r.at < throttled.at + 4] == []
    assert len(sim.sent_mail) == 2


# -- 8. change notifications ------------------------------------------------------------------


async def test_the_validation_handshake_echoes_plain_text_only(start: Any) -> None:
    app = await start()
    url = admin_url(app) + "/api/graph/notifications"
    token = "Validation: Testing client application reachability for subscription Request-Id: 5f3a"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, params={"validationToken": token}) as resp:
            assert resp.status == 200 and await resp.text() == token
            assert resp.content_type == "text/plain"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
        for bad in ("<script>alert(1)</script>\n", "x" * 1025, ""):
            async with http.post(url, params={"validationToken": bad}) as resp:
                assert resp.status == 400 and resp.content_type == "text/plain"
                assert bad not in await resp.text() or bad == ""


async def test_a_burst_of_forged_notifications_is_counted_not_stored_and_raises_an_alert(
    start: Any, sim: GraphSimulator, sql: Any
) -> None:
    app, sub_id = await subscribed(start)
    for _ in range(3):
        delivery = await sim.deliver(sub_id, [{"changeType": "created"}] * 50, client_state="forged")
        assert delivery.status == 202
    assert await sql.fetchval("SELECT count(*) FROM webhook_events") == 0
    assert app.graph.receiver is not None and app.graph.receiver.rejected_total == 150
    assert "wrong clientState" in (app.graph.failing()["graph-webhook-receiver"] or "")


async def test_malformed_or_oversized_notification_bodies_are_400_or_413_never_5xx(start: Any) -> None:
    app = await start()
    url = admin_url(app) + "/api/graph/notifications"
    deep = "[" * 2000 + "]" * 2000
    bodies = [
        deep,
        '{"value": [{"a": NaN}]}',
        '{"value": [{"a": 1e999}]}',
        '{"value": [{"a": "\\u0000"}]}',
        '{"value": [{"a": "\\ud800"}]}',
        "not json",
        "\xff",
    ]
    async with aiohttp.ClientSession() as http:
        for body in bodies:
            async with http.post(url, data=body.encode("utf-8", "surrogateescape")) as resp:
                assert resp.status == 400, body[:40]
        many = {"value": [{"changeType": "created"}] * 1001}
        async with http.post(url, json=many) as resp:
            assert resp.status == 413
        # Graph's fields are strings: a batch with a number there is not Graph's (the field named)
        async with http.post(url, json={"value": [{"changeType": "created", "subscriptionId": 5}]}) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["field"] == "body.value.0.subscriptionId"


async def test_a_peer_flooding_the_receiver_gets_429(start: Any) -> None:
    app = await start()
    url = admin_url(app) + "/api/graph/notifications"
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(150):
            async with http.post(url, json={"value": []}) as resp:
                statuses.append(resp.status)
    assert statuses[0] == 202 and 429 in statuses


# -- 9. subscriptions at start ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_configured_subscriptions_are_created_at_start_not_at_the_first_tick(
    start: Any, sim: GraphSimulator
) -> None:
    port = free_port()
    resource = f"users/{SENDER}/mailFolders('inbox')/messages"
    await start(
        admin={"port": port, "socket_enabled": False},
        graph={
            "webhook_base_url": f"http://127.0.0.1:{port}",
            "subscriptions": [{"source": "outlook", "resource": resource}],
        },
    )
    # Graph keeps a subscription only once the receiver answered its validation handshake; the
    # scheduled check would first run five minutes after start.
    await wait_for(lambda: any(s["resource"] == resource for s in sim.subscriptions.values()), timeout=10)


# -- issue 10: the OneDrive upload path, private attachment files -------------------------------


@pytest.mark.parametrize("size", [1000, 3 * 1024 * 1024 + 5])
async def test_the_onedrive_default_uploads_to_a_valid_path_in_the_service_accounts_drive(
    start: Any, client: Client, sim: GraphSimulator, graph: dict[str, Any], size: int
) -> None:
    await start()
    data = os.urandom(size)
    Path(graph["files_dir"], "report").write_bytes(data)  # noqa: ASYNC240 -- test setup, before the work
    job = await client.enqueue_attachment_upload(
        {
            "fileId": "report",
            "fileName": "route report.pdf",
            "fileSize": size,
            "contentType": "application/pdf",
            "operation": "upload",
            "source": "teams",
        }
    )
    await wait_for(finished(client, job.id), timeout=20)
    [item] = [f for f in sim.drive_items.values() if f.name == "route report.pdf"]
    assert item.data == data
    assert sim.drive_items[item.parent_id].name == "fleetbox"
    [call] = [r for r in sim.requests if r.path.startswith("/v1.0/me/drive/")]
    assert call.path.startswith("/v1.0/me/drive/root:/fleetbox/route report.pdf:/")


async def test_a_path_with_a_colon_per_folder_is_refused_as_graph_refuses_it(
    sim: GraphSimulator, http: aiohttp.ClientSession, graph: dict[str, Any]
) -> None:
    tokens = Tokens(GraphSettings(**graph), cache_path=Path(graph["token_cache_path"]))
    await tokens.start()
    try:
        token = await tokens.token(TokenKind.DELEGATED)
    finally:
        tokens.close()
    url = f"{sim.base_url}/me/drive/root:/fleetbox:/a.txt:/content"
    async with http.put(url, data=b"x", headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 400


async def test_downloaded_attachments_are_owner_only(
    start: Any, client: Client, sim: GraphSimulator, tmp_path: Path
) -> None:
    private = tmp_path / "private"
    await start(graph={"files_dir": str(private)})
    assert stat.S_IMODE(private.stat().st_mode) == 0o700  # made by the appliance, owner-only
    (private / "up").write_bytes(b"manifest")
    up = await client.enqueue_attachment_upload(
        {
            "fileId": "up",
            "fileName": "m.txt",
            "fileSize": 8,
            "contentType": "text/plain",
            "operation": "upload",
            "source": "teams",
            "teamId": "5f3ad8e1-3c1b-4f0e-9a57-2a1c0e6b7d21",
            "channelId": "19:c0ffee@thread.tacv2",
        }
    )
    await wait_for(finished(client, up.id))
    [(item_id, item)] = [(i, f) for i, f in sim.drive_items.items() if f.name == "m.txt"]
    down = await client.enqueue_attachment_upload(
        {
            "fileId": "down",
            "fileName": "m.txt",
            "fileSize": 8,
            "contentType": "text/plain",
            "operation": "download",
            "source": "teams",
            "driveId": item.drive_id,
            "itemId": item_id,
        }
    )
    await wait_for(finished(client, down.id))
    assert (private / "down").read_bytes() == b"manifest"
    assert stat.S_IMODE((private / "down").stat().st_mode) == 0o600


# -- issue 12: simulator-mode sync state survives a restart -------------------------------------


async def test_a_sync_after_a_restart_in_simulator_mode_goes_on_from_the_stored_delta_link(
    appliance_factory: Any, client: Client, sql: Any
) -> None:
    section = {"enabled": True, "simulate": True, "sender": SENDER}
    sync = {"resourceType": "messages", "userId": SENDER, "folder": "inbox"}
    first = await appliance_factory(graph=section)
    job = await client.enqueue("sync", sync)
    await wait_for(finished(client, job.id), timeout=15)
    link = await sql.fetchval("SELECT delta_link FROM sync_history WHERE delta_link IS NOT NULL")
    assert link.startswith("users/") and "$deltatoken=" in link  # relative to graph.base_url
    await first.stop()
    await appliance_factory(graph=section)  # a new simulator, on another port
    again = await client.enqueue("sync", sync)
    await wait_for(finished(client, again.id), timeout=15)
    info = await client.get_job(again.id)
    assert [a.error_class for a in info.history] == [None]


# -- 10. Outlook's upload budget per mailbox -----------------------------------------------------


async def test_attachment_uploads_into_one_mailbox_keep_to_its_byte_budget(
    start: Any, client: Client, sim: GraphSimulator, graph: dict[str, Any]
) -> None:
    # Graph: 150 MB per 5 minutes per mailbox; here 4 MiB per 2 s, so two 3.2 MB files cannot both
    # go at once: the second waits (outside the worker pool) until the budget has room.
    await start(rate_limits={"outlook_upload_bytes": 4 * 1024 * 1024, "outlook_upload_period_seconds": 2})
    size = 3 * 1024 * 1024 + 300_000
    jobs = []
    for n in (1, 2):
        draft = sim.add_mail(SENDER, "drafts", {"subject": f"photos {n}"})
        Path(graph["files_dir"], f"p{n}").write_bytes(os.urandom(size))  # noqa: ASYNC240 -- test setup
        jobs.append(
            await client.enqueue_attachment_upload(
                {
                    "fileId": f"p{n}",
                    "fileName": f"p{n}.zip",
                    "fileSize": size,
                    "contentType": "application/zip",
                    "operation": "upload",
                    "source": "outlook",
                    "userId": SENDER,
                    "messageId": draft["id"],
                }
            )
        )
    for job in jobs:
        await wait_for(finished(client, job.id), timeout=20)
    puts = [r for r in sim.requests if r.method == "PUT" and r.path.startswith("/_upload/")]
    firsts = sorted(r.at for r in puts if r.headers["content-range"].startswith("bytes 0-"))
    assert len(firsts) == 2 and firsts[1] - firsts[0] >= 0.9
    assert sorted(len(a) for a in sim.mail_attachments.values()) == [1, 1]
