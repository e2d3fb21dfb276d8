"""Schemathesis against the served OpenAPI document, through a real appliance's admin port.

Checks: not_a_server_error, response_schema_conformance, status_code_conformance, over the
examples, coverage and fuzzing phases (positive and negative data), with the admin key, so every
state-changing operation runs too (on this test's throwaway database).

The health check is fuzzed first, on its own, while the appliance is healthy: the spec answers an
unhealthy appliance with 503, which not_a_server_error would count as a server error, and the other
operations make the appliance unhealthy on purpose (thresholds set to 0, jobs dead-lettered).

``FLEETBOX_SCHEMATHESIS_SEED`` and ``FLEETBOX_SCHEMATHESIS_EXAMPLES`` override the fixed seed and
the examples per operation (a fixed seed keeps CI reproducible; vary it locally to search further).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from fleetbox.app import Appliance
from fleetbox.errors import TransientError
from fleetbox.models import Job
from tests.admin.conftest import ADMIN_KEY, admin_section

SEED = os.environ.get("FLEETBOX_SCHEMATHESIS_SEED", "20261127")
EXAMPLES = os.environ.get("FLEETBOX_SCHEMATHESIS_EXAMPLES", "15")
CHECKS = "all"


#: Schema-valid requests may still name a queue, job or dead letter that does not exist (404) or
#: find one in a state that does not allow the action (409): those are accepted answers.
#: A cron expression's and a time zone's validity cannot be said in JSON Schema: a schedule that
#: does not parse is a schema-valid 400 naming the field. Likewise an enqueue whose dependsOn names
#: a job that does not exist (or whose payload is nested past the limit) is a 400 naming the field.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "404", "409"]

[[operations]]
include-operation-id = "putSchedule"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "409"]

[[operations]]
include-operation-id = "enqueueJob"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "409"]
"""


async def schemathesis_run(base: str, cwd: Path, *selection: str, config: str = CONFIG) -> str:
    (cwd / "schemathesis.toml").write_text(config)
    st = Path(sys.executable).parent / "st"
    assert st.is_file(), "schemathesis is not installed (pip install -e '.[test]')"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEETBOX_", "SCHEMATHESIS_"))}
    env["NO_COLOR"] = "1"
    process = await asyncio.create_subprocess_exec(
        str(st),
        "run",
        f"{base}/api/queue/openapi.json",
        "--url",
        base,
        "-H",
        f"x-admin-key: {ADMIN_KEY}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--mode",
        "all",
        "--max-examples",
        EXAMPLES,
        "--seed",
        SEED,
        "--workers",
        "1",
        "--request-timeout",
        "10",
        *selection,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
        env=env,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=150)
    text = out.decode(errors="replace")
    assert process.returncode == 0, text[-8000:]
    return text


@pytest.mark.timeout(240)
async def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(
    appliance_factory: Callable[..., Awaitable[Appliance]], tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    async def flaky(job: Job) -> None:
        if job.data.get("fail"):
            raise TransientError("upstream hiccup")

    app = await appliance_factory(
        handlers={"reports": flaky}, queues={"reports": {"tier": "low"}}, admin=admin_section()
    )
    assert app.admin is not None
    base = app.admin.url

    health = await schemathesis_run(base, tmp_path, "--include-operation-id", "getHealth")
    assert "1 selected" in health

    # Something to find: waiting, scheduled, retrying and finished jobs, and dead letters (the
    # spec's queues have no processor here, so their jobs are dead-lettered at once).
    c = app.client
    for n in range(3):
        await c.enqueue("reports", {"n": n})
        await c.enqueue("reports", {"n": n, "fail": True})
        await c.enqueue("reports", {"n": n}, delay=3_600_000)
        await c.enqueue("sync", {"n": n})
        await c.enqueue("teams-outbound", {"chatId": "c", "content": str(n)}, singleton_key=f"chat-{n}")

    # The stream is a WebSocket: its own tests cover it.
    rest = await schemathesis_run(
        base, tmp_path, "--exclude-operation-id", "getHealth", "--exclude-operation-id", "streamQueues"
    )
    selected = re.search(r"(\d+) selected / (\d+) total", rest)
    assert selected is not None, rest[-3000:]
    assert int(selected[1]) == int(selected[2]) - 2, "every operation but health (fuzzed above) and the stream"
    assert "passed" in rest

    failures = [r for r in logs.records if getattr(r, "event", "") in {"admin_internal_error", "admin_request_failed"}]
    assert failures == [], [r.getMessage() for r in failures]


#: The receiver's handshake echoes the token whatever the body (Graph sends none): a schema-invalid
#: body beside a valid token is answered 200, never 202, so a body it takes as notifications still
#: fails the check. A notification item may carry any field Graph adds: one whose JSON PostgreSQL
#: cannot store (NUL, nested past the payload limit) is a schema-valid 400.
WEBHOOK_CONFIG = """
[[operations]]
include-path-regex = "^/api/graph/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400"]
checks.negative_data_rejection.expected-statuses = ["200", "400", "413"]
"""


@pytest.mark.timeout(240)
async def test_schemathesis_on_the_graph_webhook_receiver(
    appliance_factory: Callable[..., Awaitable[Appliance]], tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    app = await appliance_factory(graph={"enabled": True, "client_state": "s3cret-client-state"}, admin=admin_section())
    assert app.admin is not None and app.graph.receiver is not None
    out = await schemathesis_run(
        app.admin.url,
        tmp_path,
        "--include-path-regex",
        "^/api/graph/",
        # under the receiver's flood limit (429 past 100 requests a second from one address)
        "--rate-limit",
        "80/s",
        config=CONFIG + WEBHOOK_CONFIG,
    )
    assert "2 selected" in out, out[-3000:]
    assert "passed" in out
    failures = [r for r in logs.records if getattr(r, "event", "") in {"admin_internal_error", "admin_request_failed"}]
    assert failures == [], [r.getMessage() for r in failures]
