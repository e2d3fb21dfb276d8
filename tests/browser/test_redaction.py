"""Redaction in the dashboard, in headless Chromium against a ``fleetbox run`` appliance whose
queue masks ``$.body``: the job page shows ``***`` where the secret was; an admin session can
reveal it (audited with the session's name); a read session is offered no reveal and is refused
one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.browser.conftest import ADMIN_KEY, MAIL, READ_KEY, Browser, Dashboard, until
from tests.e2e.conftest import E2E_APPLIANCE, FleetboxProcess, toml_text

SECRET = "browser-s3cret-body"


@pytest.fixture
async def masking(
    start_appliance: Callable[..., FleetboxProcess], dsn: str, tmp_path: Path
) -> AsyncIterator[Dashboard]:
    """``fleetbox run`` with both keys and queue mail (its handler dead-letters the job), whose
    payloads have ``$.body`` masked."""
    config = tmp_path / "fleetbox.toml"
    sections = {
        "appliance": {**E2E_APPLIANCE, "data_dir": str(tmp_path / "data")},
        "admin": {"port": 0, "socket_enabled": False, "key": ADMIN_KEY, "read_key": READ_KEY},
        "graph": {"enabled": False},
        f'queues."{MAIL}"': {"tier": "medium", "handler": "tests.e2e.handlers:reject_unless"},
    }
    config.write_text(toml_text(sections) + 'redact = ["$.body"]\n', encoding="utf-8")
    process = start_appliance("dash", config)
    await process.wait_ready(timeout=60)
    port = (await process.wait_event("admin_listening"))["port"]
    yield Dashboard(f"http://127.0.0.1:{port}", dsn, process, tmp_path / "ok")


def dead_job(dashboard: Dashboard) -> int:
    data = {"ok_file": str(dashboard.ok_file), "userId": "u-masked", "body": SECRET}
    status, body = dashboard.api("POST", f"/api/queue/{MAIL}/jobs", {"data": data})
    assert status == 201, body
    job_id = int(body["id"])
    until(lambda: dashboard.sql("SELECT 1 FROM dead_letters WHERE job_id = $1", job_id), f"job {job_id} never dead", 30)
    return job_id


def test_the_job_page_shows_the_masked_value_and_an_admin_reveals_it(masking: Dashboard, browser: Browser) -> None:
    job_id = dead_job(masking)
    browser.sign_in(masking.url, ADMIN_KEY, name="alice")
    browser.wait_text("#status", "live")
    browser.open(masking.url + f"/ui/#/job/{job_id}")
    browser.wait_text("#payload", '"body": "***"')
    assert '"userId": "u-masked"' in browser.text("#payload")
    assert SECRET not in browser.text("body")
    browser.screenshot("job-masked")
    browser.open(masking.url + f"/ui/#/dead/{job_id}")
    browser.wait_text("#main h1", f"Dead letter of job {job_id}")
    browser.wait_text("#payload", '"body": "***"')
    assert SECRET not in browser.text("body")
    assert not masking.sql("SELECT 1 FROM audit_log WHERE action LIKE '%.reveal'")

    browser.find("#reveal").click()
    browser.find("#dialog button.primary").click()
    browser.wait_text("#payload", SECRET)
    browser.screenshot("dead-letter-revealed")
    [row] = masking.sql("SELECT actor, action, target FROM audit_log WHERE action LIKE '%.reveal'")
    assert (row["actor"], row["action"]) == ("dashboard:alice", "dead.reveal")


def test_a_read_session_sees_the_mask_and_cannot_reveal(masking: Dashboard, browser: Browser) -> None:
    job_id = dead_job(masking)
    browser.sign_in(masking.url, READ_KEY, name="rita")
    browser.wait_text("#status", "live")
    browser.open(masking.url + f"/ui/#/job/{job_id}")
    browser.wait_text("#payload", '"body": "***"')
    assert not browser.find_all("#reveal") and SECRET not in browser.text("body")
    refused = browser.fetch("GET", f"../api/queue/jobs/{job_id}?reveal=true", {})
    assert refused["status"] == 403 and refused["body"]["error"]["code"] == "read_only_key"
    assert SECRET not in str(refused)
    assert not masking.sql("SELECT 1 FROM audit_log WHERE action LIKE '%.reveal'")
