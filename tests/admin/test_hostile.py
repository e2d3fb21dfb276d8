"""Hostile input against the whole admin API.

Hypothesis sends a few hundred arbitrary requests per run to every route (random ids, query
parameters, actor headers, keys and bodies): none may be answered 5xx or log a traceback. Then
payloads stored around fleetbox's checks (by SQL, as an old version or a hand-written INSERT could)
must render on every list and detail.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import string
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetbox.admin import ApplianceInfo, build_app
from fleetbox.admin.auth import KeyThrottle, ThrottleRule
from fleetbox.admin.server import api_routes
from fleetbox.client import Client
from fleetbox.config import AdminSettings, Settings
from fleetbox.store import Store
from tests.admin.conftest import ADMIN, ADMIN_KEY, READ, WORK, Api, Rig, admin_section
from tests.admin.conftest import test_monitor as monitor_for
from tests.admin.test_dead_letters import dead_jobs
from tests.conftest import SCHEMA

ROUTES = [r for r in api_routes(AdminSettings()) if r.operation_id != "streamQueues"]
QUERY_NAMES = [
    "status",
    "limit",
    "offset",
    "after",
    "before",
    "queue",
    "reviewed",
    "errorClass",
    "q",
    "include",
    "minutes",
    "timeRange",
    "confirm",
    "cursor",
]
BODY_NAMES = [
    "data",
    "priority",
    "delay",
    "runAt",
    "singletonKey",
    "maxAttempts",
    "reviewedBy",
    "resolutionNotes",
    "queue",
    "errorClass",
    "q",
    "reviewed",
    "expectedCount",
    "maxBacklog",
    "maxFailureRate",
]

#: header values a client can send at all (aiohttp refuses CR and LF before they leave)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=300)
ids = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.from_regex(r"(dl-|job-)?[0-9]{1,25}", fullmatch=True),
    st.text(
        st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="/?#%"), min_size=1, max_size=30
    ),
    st.sampled_from(["1", "dl-1", "0", "retry", "review", "groups", "jobs", "dead-letter", "%00", "..", "NaN"]),
)
queues = st.one_of(st.sampled_from([WORK, "sync", "dead-letter", "teams-outbound", "nope", "JOBS"]), ids)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
    st.sampled_from(["NaN", "Infinity", "yes", "no", "true", "waiting", "\u0000", "  "]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
bodies = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(BODY_NAMES) | st.text(max_size=10), json_values, max_size=6).map(json.dumps),
    json_values.map(json.dumps),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.integers(2, 3000).map(lambda n: "[" * n + "]" * n),
)
queries = st.dictionaries(st.sampled_from(QUERY_NAMES) | st.text(max_size=8), st.text(max_size=40), max_size=5)
headers = st.fixed_dictionaries(
    {},
    optional={
        "x-admin-key": st.sampled_from([ADMIN_KEY, ADMIN_KEY, READ["x-admin-key"], "wrong"]) | header_text,
        "x-admin-actor": header_text,
        "X-Fleetbox-Operator": header_text,
        "Content-Type": st.sampled_from(["application/json", "text/plain", "application/x+json"]) | header_text,
    },
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], dict[str, str], str | None]:
    route = draw(st.sampled_from(ROUTES))
    method = draw(st.sampled_from([route.method] * 4 + ["GET", "POST", "PUT", "DELETE", "PATCH"]))
    path = route.path.replace("{queue}", "{q}")
    path = path.replace("{q}", _segment(draw(queues))).replace("{jobId}", _segment(draw(ids)))
    return method, path, draw(queries), draw(headers), draw(bodies)


def _segment(text: str) -> str:
    # One path segment whatever it holds; the server decodes it back.
    return re.sub(r"[^A-Za-z0-9._~-]", lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), text) or "x"


@pytest.fixture
def failures() -> Iterator[list[logging.LogRecord]]:
    """Every ERROR (or worse) fleetbox logs while the test runs."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("fleetbox")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_arbitrary_requests_to_every_route_get_no_5xx_and_no_traceback(
    dsn: str, make_settings: Callable[..., Settings], failures: list[logging.LogRecord]
) -> None:
    loop = asyncio.new_event_loop()
    db = Store(dsn, schema=SCHEMA, min_size=1, max_size=4)
    loop.run_until_complete(db.open())
    client = Client(db)
    app = build_app(
        service=client.service,
        monitor=monitor_for(client),
        settings=make_settings(admin=admin_section()),
        appliance_info=ApplianceInfo("test", "test:1:abc", "0.1.0"),
        key_throttle=KeyThrottle(ThrottleRule(10**6, 1)),  # the fuzzer sends wrong keys on purpose
    )
    api: Api = TestClient(TestServer(app), loop=loop)
    loop.run_until_complete(api.start_server())
    statuses: dict[int, int] = {}

    async def send(method: str, path: str, query: dict[str, str], head: dict[str, str], body: str | None) -> None:
        response = await api.request(method, path, params=query, headers=head, data=body)
        text = await response.text()
        assert response.status < 500, (method, path, query, head, (body or "")[:200], response.status, text[:500])
        assert "Traceback" not in text
        statuses[response.status] = statuses.get(response.status, 0) + 1

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(request=requests())
    def check(request: tuple[str, str, dict[str, str], dict[str, str], str | None]) -> None:
        loop.run_until_complete(send(*request))

    try:
        check()
    finally:
        loop.run_until_complete(api.close())
        loop.run_until_complete(db.close())
        loop.close()
    # it reached the handlers: answers, refusals by field, refused keys, wrong methods
    assert sum(statuses.values()) >= 300 and {200, 400, 401, 405} <= set(statuses), statuses
    assert [r.getMessage() for r in failures] == []


# -- payloads stored around the checks ---------------------------------------------------------------


def nested(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


HOSTILE = {
    "nested-150": nested(150),
    "nested-600": nested(600),
    "nested-1000": "[" * 1000 + "]" * 1000,
    "nested-3000": nested(3000),
    "one-megabyte": json.dumps({"blob": "x" * 1_000_000}),
    "twenty-thousand-keys": json.dumps({f"k{n}": n for n in range(20_000)}),
    "nan-like": json.dumps({"v": "NaN", "w": "Infinity", "x": "-Infinity", "y": 1e308, "z": -0.0}),
    "control-chars": json.dumps({"t": "".join(chr(c) for c in range(1, 32)) + "\u001b[31m\u2028\u2029\ufeff"}),
    "markup": json.dumps({"m": "[/bogus] [bold red]x[/] [link=file:///etc/passwd]y[/link] </script>"}),
    "keys": json.dumps({string.punctuation: 1, "": 2, "\u0085": 3}),
}


async def test_hostile_stored_payloads_render_on_every_list_and_detail(rig: Rig, db: Store) -> None:
    await rig.app.client.set_paused(WORK, True)  # the stored jobs stay where they are put
    jobs = [await rig.enqueue("ok") for _ in HOSTILE]
    dead = await dead_jobs(rig, *[("other", {}) for _ in HOSTILE])
    for (name, text), job_id, dead_id in zip(HOSTILE.items(), jobs, dead, strict=True):
        await db.pool.execute("UPDATE fleetbox.jobs SET data = $1::text::jsonb WHERE id = $2", text, job_id)
        await db.pool.execute(
            "UPDATE fleetbox.dead_letters SET data = $1::text::jsonb, error = $2 WHERE id = $3",
            text,
            f"{name}: {text[:300]}",
            dead_id,
        )
    dead_jobs_ids = [(await rig.app.client.dead_letters.get(d)).job_id for d in dead]

    async def ok(path: str) -> Any:
        response = await rig.api.get(path, headers=READ)
        assert response.status == 200, (path, (await response.text())[:500])
        return await response.json()

    for include in ("", "include=payload"):
        for status in ("", "status=waiting", "status=pending", "status=dead"):
            query = "&".join(p for p in (status, include, "limit=500") if p)
            await ok(f"/api/queue/{WORK}/jobs?{query}")
            await ok(f"/api/queue/other/jobs?{query}")
        await ok(f"/api/queue/other/failed?{include}")
        letters = (await ok(f"/api/queue/dead-letter?limit=500&{include}"))["deadLetters"]
        assert len(letters) == len(HOSTILE)
    rows = {j["id"]: j for j in (await ok(f"/api/queue/{WORK}/jobs?status=waiting&include=payload&limit=500"))["jobs"]}
    for name, job_id in zip(HOSTILE, jobs, strict=True):
        detail = await ok(f"/api/queue/jobs/{job_id}")
        shallow = name in ("nested-150",) or not name.startswith("nested")
        assert ("undecodable" not in (detail["data"] or {})) is shallow, name
        assert rows[job_id]["dataSize"] >= 0 and isinstance(rows[job_id]["dataPreview"], str)
    for dead_id, job_id in zip(dead, dead_jobs_ids, strict=True):
        await ok(f"/api/queue/dead-letter/dl-{dead_id}")
        await ok(f"/api/queue/dead-letter/{job_id}")
        await ok(f"/api/queue/jobs/{job_id}")
    await ok("/api/queue/dead-letter/groups")
    await ok("/api/queue/other/errors")
    assert (await rig.api.get("/api/queue/stats", headers=ADMIN)).status == 200
