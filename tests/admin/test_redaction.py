"""Redaction against a real appliance: a secret in a redacted path of a dead job never leaves it
through the admin API (lists, search, detail, dead letters, failures), the control socket, the
logs or an alert webhook; the admin key (or the socket) can reveal it, and that is audited; the
read key cannot. Each appliance answers with its own configuration's policy."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fleetbox.app import Appliance
from fleetbox.protocol import OPERATOR_HEADER
from tests.admin.conftest import ADMIN, OTHER, READ, WORK, Behaviour, admin_section
from tests.admin.test_socket import short_dir, unix_session  # noqa: F401
from tests.conftest import wait_for
from tests.integration.test_alert_webhooks import Receiver, hook, receiver  # noqa: F401

StartAppliance = Callable[..., Awaitable[Appliance]]

SECRET = "s3cret-body-7f1c"
SECRET_ADDRESS = "hidden.person@example.com"
POLICY = ["$.body", "$.to[*]"]


def payload() -> dict[str, Any]:
    return {"mode": "permanent", "userId": "u1", "body": SECRET, "to": [SECRET_ADDRESS, "x@example.com"]}


@pytest.fixture
async def served(
    appliance_factory: StartAppliance,
    short_dir: Path,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    logs: pytest.LogCaptureFixture,
) -> AsyncIterator[tuple[Appliance, Path, int, int]]:
    """An appliance whose queue work masks body and to; one job on it died for good (its dead
    letter opened an alert, posted to the receiver)."""
    behaviour = Behaviour()
    path = short_dir / "admin.sock"
    app = await appliance_factory(
        handlers={WORK: behaviour.handle, OTHER: behaviour.handle},
        queues={WORK: {"tier": "low", "redact": POLICY}, OTHER: {"tier": "low"}},
        pools={"low": 2},
        admin=admin_section(socket_enabled=True, socket_path=str(path)),
        monitor={"max_dead_letter_jobs": 0, "schedule": False},
        alerts={"webhooks": [hook(receiver)]},
    )
    job_id = (await app.client.enqueue(WORK, payload())).id

    async def dead() -> bool:
        found = await app.store.pool.fetchval("SELECT id FROM fleetbox.dead_letters WHERE job_id = $1", job_id)
        return found is not None

    await wait_for(dead, timeout=30)
    dead_id = await app.store.pool.fetchval("SELECT id FROM fleetbox.dead_letters WHERE job_id = $1", job_id)
    await app.monitor.check_alerts()
    await wait_for(lambda: len(receiver.received) >= 1, timeout=30)
    yield app, path, job_id, dead_id
    behaviour.release.set()


def leaks(text: str) -> bool:
    return SECRET in text or SECRET_ADDRESS in text


def reads(job_id: int, dead_id: int) -> list[str]:
    """Every read that carries the job's payload, its preview or its dead letter."""
    return [
        f"/api/queue/{WORK}/jobs?status=dead",
        f"/api/queue/{WORK}/jobs?status=dead&include=payload",
        "/api/queue/jobs?include=payload",
        '/api/queue/jobs?include=payload&data={"userId":"u1"}',
        f"/api/queue/jobs/{job_id}",
        f"/api/queue/{WORK}/failed?include=payload",
        "/api/queue/dead-letter",
        "/api/queue/dead-letter?include=payload",
        f"/api/queue/dead-letter/{job_id}",
        f"/api/queue/dead-letter/dl-{dead_id}",
    ]


async def test_the_secret_never_leaves_through_any_read_and_reveal_is_admin_only_and_audited(
    served: tuple[Appliance, Path, int, int],
    receiver: Receiver,  # noqa: F811
    logs: pytest.LogCaptureFixture,
) -> None:
    app, path, job_id, dead_id = served
    assert app.admin is not None
    base = f"http://127.0.0.1:{app.admin.port}"
    async with aiohttp.ClientSession() as tcp, unix_session(path) as sock:
        for url in reads(job_id, dead_id):
            for session, prefix, headers in ((tcp, base, ADMIN), (tcp, base, READ), (sock, "http://fleetbox", {})):
                async with session.get(prefix + url, headers=headers) as response:
                    text = await response.text()
                    assert response.status == 200, (url, text)
                    assert not leaks(text), url
        # a schedule's payload is its queue's: masked the same way when it is read back
        schedule = {"name": "nightly", "cron": "0 3 * * *", "queue": WORK, "data": payload(), "enabled": False}
        async with tcp.post(f"{base}/api/schedules", json=schedule, headers=ADMIN) as response:
            assert response.status == 200 and not leaks(await response.text())
        for url in ("/api/schedules", "/api/schedules/nightly"):
            async with tcp.get(base + url, headers=READ) as response:
                text = await response.text()
                assert response.status == 200 and not leaks(text) and '"body": "***"' in text.replace('":"', '": "')

                # what an operator sees: the structure, with the masked values as ***
        async with tcp.get(f"{base}/api/queue/jobs/{job_id}", headers=ADMIN) as response:
            shown = await response.json()
        expected = {**payload(), "body": "***", "to": ["***", "***"]}
        assert shown["data"] == expected and shown["deadLetter"]["data"] == expected
        assert '"body":"***"' in shown["dataPreview"]

        # a payload search on a masked key would confirm guesses: refused, naming the key
        async with tcp.get(
            f"{base}/api/queue/jobs", params={"queue": WORK, "data": json.dumps({"body": SECRET})}, headers=ADMIN
        ) as r:
            refused = await r.json()
            assert r.status == 400 and refused["error"]["field"] == "data"
            assert "'body' is masked by the redaction policy of queue 'work'" in refused["error"]["message"]

        # the read key cannot reveal, and nothing is audited
        for url in (f"/api/queue/jobs/{job_id}?reveal=true", f"/api/queue/dead-letter/{job_id}?reveal=true"):
            async with tcp.get(base + url, headers=READ) as response:
                body = await response.text()
                assert response.status == 403 and "read_only_key" in body and not leaks(body)
        assert await reveals(app) == []

        # the admin key reveals, audited with who and which job
        async with tcp.get(
            f"{base}/api/queue/jobs/{job_id}?reveal=true", headers={**ADMIN, "x-admin-actor": "ana"}
        ) as response:
            full = await response.json()
        assert full["data"] == payload() and full["deadLetter"]["data"] == payload()
        # the control socket reveals too (its file permissions are its access control)
        async with sock.get(
            f"http://fleetbox/api/queue/dead-letter/{job_id}?reveal=yes", headers={OPERATOR_HEADER: "bob"}
        ) as response:
            letter = await response.json()
        assert letter["data"] == payload()
        assert await reveals(app) == [("ana", "job.reveal", f"job:{job_id}"), ("bob", "dead.reveal", f"dead:{dead_id}")]
        assert [a["action"] for a in letter["operatorActions"]] == ["dead.reveal"]

    # nothing of it in a log line (messages and their fields), nor in the alert webhook's body
    for record in logs.records:
        assert not leaks(logging.Formatter().format(record) + repr(vars(record))), record.getMessage()
    assert any(r.getMessage() == "operator action job.reveal" for r in logs.records)
    assert receiver.received and not any(leaks(r.body.decode()) for r in receiver.received)


async def reveals(app: Appliance) -> list[tuple[str, str, str]]:
    rows = await app.store.pool.fetch(
        "SELECT actor, action, target FROM fleetbox.audit_log WHERE action LIKE '%.reveal' ORDER BY id"
    )
    return [(r["actor"], r["action"], r["target"]) for r in rows]


async def test_each_appliance_answers_with_its_own_policy_and_a_reload_changes_it(
    appliance_factory: StartAppliance, make_settings: Callable[..., Any]
) -> None:
    behaviour = Behaviour()
    masking = await appliance_factory(
        handlers={WORK: behaviour.handle},
        queues={WORK: {"tier": "low", "redact": POLICY}},
        admin=admin_section(),
    )
    plain = await appliance_factory(
        handlers={WORK: behaviour.handle}, queues={WORK: {"tier": "low"}}, admin=admin_section()
    )
    await masking.service.queues.set_paused(WORK, True, actor="test")  # the job stays in the list
    job_id = (await masking.client.enqueue(WORK, payload())).id
    url = f"/api/queue/{WORK}/jobs?include=payload"
    async with aiohttp.ClientSession() as session:

        async def data_from(app: Appliance) -> object:
            assert app.admin is not None
            async with session.get(f"http://127.0.0.1:{app.admin.port}{url}", headers=ADMIN) as response:
                [row] = (await response.json())["jobs"]
                assert row["id"] == job_id
                return row["data"]

        assert await data_from(masking) == {**payload(), "body": "***", "to": ["***", "***"]}
        assert await data_from(plain) == payload()
        await plain.reload(make_settings(queues={WORK: {"tier": "low", "redact": ["$.userId"]}}, admin=admin_section()))
        assert await data_from(plain) == {**payload(), "userId": "***"}
