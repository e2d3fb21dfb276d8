"""Graph delivery under Microsoft Graph's and Entra's real fault behaviour, through the real queue.

An appliance runs on real PostgreSQL with Graph pointed at the TLS simulator; faults are injected
there. Retry time runs on a ManualClock where a test checks when the next attempt is due.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from fleetbox.client import Client
from fleetbox.config import GraphSettings
from fleetbox.graph.simulator import GraphSimulator
from fleetbox.graph.tokens import graph_scope
from fleetbox.models import JobState, ManualClock
from tests.conftest import wait_for
from tests.graph.helpers import attempts, finished, posts

MAIL = {"to": ["driver@contoso.example"], "subject": "Route change", "body": "Take the A7"}
SEND_MAIL = r"POST /v1\.0/users/.*/sendMail"


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
    assert await _delays(client, app, clock, job.id, 4) == [("transient", 1), ("transient", 2),
                                                             ("transient", 4), ("transient", 8)]  # fmt: skip
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
    assert await _delays(client, app, clock, job.id, 3) == [("rate_limited", 2), ("rate_limited", 4),
                                                             ("rate_limited", 8)]  # fmt: skip
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
