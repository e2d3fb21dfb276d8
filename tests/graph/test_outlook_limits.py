"""Issue 13 item 10: Outlook's real limits and Graph's app-wide one, kept through the real queue.

An appliance runs on real PostgreSQL with Graph pointed at the TLS simulator, which enforces the
same limits (429 ApplicationThrottled) and keeps what it saw: the most requests at once per
mailbox and across mailboxes, and every upload's arrival and size. Limits are scaled down where
Graph's own would take minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from fleetbox.client import Client
from fleetbox.graph.ratelimit import ByteWindow
from fleetbox.graph.simulator import GraphSimulator, OutlookLimits
from tests.conftest import wait_for
from tests.graph.helpers import SENDER, admin_url, finished

MAIL = {"to": ["driver@contoso.example"], "subject": "Route change", "body": "Take the A7"}
SEND_MAIL = r"POST /v1\.0/users/.*/sendMail"
MIB = 1024 * 1024


def graph_calls(sim: GraphSimulator, prefix: str = "/v1.0/") -> list[Any]:
    return [r for r in sim.requests if r.path.startswith(prefix)]


def throttled(sim: GraphSimulator) -> list[str]:
    return [f"{r.method} {r.path}" for r in sim.requests if r.status == 429]


async def prometheus(app: Any) -> dict[str, float]:
    """The appliance's /metrics, as sample line (name and labels) -> value."""
    async with aiohttp.ClientSession() as http, http.get(f"{admin_url(app)}/metrics") as resp:
        text = await resp.text()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


async def test_never_more_than_four_requests_at_once_to_one_mailbox(
    start: Any, client: Client, sim: GraphSimulator
) -> None:
    box = "dispatch@contoso.example"
    app = await start(rate_limits={"outlook_concurrent": 20})
    # Slow answers pile the requests up: 16 sends of half a second each, 20 workers free.
    sim.slow(SEND_MAIL, 0.5, times=16)
    jobs = [await client.enqueue_outlook_email({**MAIL, "from": box}) for _ in range(16)]
    for job in jobs:
        await wait_for(finished(client, job.id), timeout=30)
    assert sim.outlook.peak_per_mailbox[box] == 4
    assert throttled(sim) == []
    assert len(sim.sent_mail) == 16
    figures = await prometheus(app)
    mailbox = 'kind="concurrency",limiter="outlook",per="mailbox"'
    assert figures[f"fleetbox_graph_limiter_capacity{{{mailbox}}}"] == 4
    assert figures[f"fleetbox_graph_limiter_waits_total{{{mailbox}}}"] >= 1
    assert figures[f"fleetbox_graph_limiter_in_use{{{mailbox}}}"] == 0  # all answered
    app_wide = 'kind="concurrency",limiter="outlook",per="appliance"'
    assert figures[f"fleetbox_graph_limiter_capacity{{{app_wide}}}"] == 20
    graph = 'kind="rate",limiter="graph",per="appliance"'
    assert figures[f"fleetbox_graph_limiter_capacity{{{graph}}}"] == 13_000
    upload = 'kind="bytes",limiter="outlook",per="mailbox"'
    assert figures[f"fleetbox_graph_limiter_capacity{{{upload}}}"] == 150 * MIB


async def test_never_more_than_the_apps_outlook_requests_at_once_across_mailboxes(
    start: Any, client: Client, sim: GraphSimulator
) -> None:
    # Graph: 4 Outlook requests at once per app whichever the mailboxes; here 3, enforced by the
    # simulator too (a fourth would be answered 429).
    sim.outlook.limits = OutlookLimits(concurrent_per_app=3)
    app = await start(rate_limits={"outlook_concurrent": 3})
    sim.slow(SEND_MAIL, 0.4, times=16)
    jobs = [await client.enqueue_outlook_email({**MAIL, "from": f"box{n % 8}@contoso.example"}) for n in range(16)]
    for job in jobs:
        await wait_for(finished(client, job.id), timeout=30)
    assert sim.outlook.peak_app == 3
    assert throttled(sim) == []
    states = app.graph.limiter_states()
    assert states["outlook-outbound"].get("appConcurrency") == 3


async def test_uploads_into_one_mailbox_never_exceed_its_budget_in_any_window(
    start: Any, client: Client, sim: GraphSimulator, graph: dict[str, Any]
) -> None:
    # Graph: 150 MB per 5 minutes per mailbox, in any window; here 4 MiB per 2 s at both ends.
    # Each file is 3.3 MB: the second cannot start until the first has left the window.
    sim.outlook.limits = OutlookLimits(upload_bytes=4 * MIB, upload_period_seconds=2)
    await start(rate_limits={"outlook_upload_bytes": 4 * MIB, "outlook_upload_period_seconds": 2})
    size = 3 * MIB + 300_000
    jobs = []
    for n in (1, 2, 3):
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
    # Mail from the same mailbox meanwhile: its bodies count against the same budget.
    mails = [await client.enqueue_outlook_email({**MAIL, "from": SENDER}) for _ in range(3)]
    for job in [*jobs, *mails]:
        await wait_for(finished(client, job.id), timeout=30)
    assert throttled(sim) == []
    assert sim.outlook.most_uploaded(SENDER, 2) <= 4 * MIB
    assert sum(size for _, size in sim.outlook.uploads[SENDER.lower()]) >= 3 * size
    assert sorted(len(a) for a in sim.mail_attachments.values()) == [1, 1, 1]


async def test_every_graph_request_keeps_to_the_apps_global_rate(
    start: Any, client: Client, sim: GraphSimulator
) -> None:
    # Graph: 130,000 requests per 10 s per app; here 5 per second, across mailboxes that each
    # have room to spare.
    await start(rate_limits={"graph_requests": 5, "graph_period_seconds": 1})
    jobs = [await client.enqueue_outlook_email({**MAIL, "from": f"box{n}@contoso.example"}) for n in range(12)]
    for job in jobs:
        await wait_for(finished(client, job.id), timeout=30)
    arrivals = sorted(r.at for r in graph_calls(sim))
    assert len(arrivals) >= 12
    busiest = max(sum(1 for t in arrivals if start_at <= t < start_at + 1) for start_at in arrivals)
    assert busiest <= 5


def test_config_show_names_every_limit_and_where_it_came_from(tmp_path: Path) -> None:
    env = {**os.environ, "FLEETBOX_RATE_LIMITS__OUTLOOK_CONCURRENT": "2"}
    shown = subprocess.run(
        [sys.executable, "-m", "fleetbox", "config", "show"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    lines = {line.split()[0]: line.split() for line in shown.splitlines() if line.startswith("rate_limits.")}
    assert lines["rate_limits.outlook_concurrent"][1:] == ["2", "[environment]"]
    for key, value in [
        ("graph_requests", "130000"),
        ("graph_period_seconds", "10.0"),
        ("outlook_concurrent_per_mailbox", "4"),
        ("outlook_upload_bytes", str(150 * MIB)),
        ("outlook_upload_period_seconds", "300.0"),
    ]:
        assert lines[f"rate_limits.{key}"][1:] == [value, "[default]"]


async def test_the_upload_window_lets_the_whole_budget_go_then_waits_until_it_has_left() -> None:
    now = [100.0]
    window = ByteWindow(100, 10.0, clock=lambda: now[0])
    await window.acquire(60)
    now[0] = 104.0
    await window.acquire(40)  # the whole budget within the window: no wait
    assert window.wait(1) == 6.0  # the first 60 bytes leave the window at 110
    assert window.wait(61) == 10.0  # more than they free: until the 40 have left too, at 114
    now[0] = 110.0
    assert (window.used(), window.wait(60)) == (40, 0.0)
