"""The dashboard's schedules page, a job's dependency graph and the retry-variant report, in
headless Chromium against a real appliance on the test database: what an operator does, and what
the database says afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from selenium.webdriver.support.ui import Select

from tests.browser.conftest import ADMIN_KEY, MAIL, READ_KEY, REPORTS, Browser, Dashboard, until
from tests.e2e.conftest import E2E_APPLIANCE, FleetboxProcess, toml_text


def percent(rate: float | None) -> str:
    return "\u2013" if rate is None else f"{rate * 100:.1f}%"


def schedule(dashboard: Dashboard, name: str, **extra: object) -> None:
    body = {"name": name, "cron": "30 2 * * *", "timezone": "Europe/Berlin", "queue": REPORTS, "data": {"n": 1}}
    status, answer = dashboard.api("POST", "/api/schedules", {**body, **extra})
    assert status == 200, answer


def enabled(dashboard: Dashboard, name: str) -> bool:
    return bool(dashboard.sql("SELECT enabled FROM scheduled_jobs WHERE name = $1", name)[0]["enabled"])


def test_schedules_listed_paused_resumed_and_run_now(dashboard: Dashboard, browser: Browser) -> None:
    assert dashboard.api("POST", f"/api/queue/{REPORTS}/pause")[0] == 200  # what runs now stays to be seen
    schedule(dashboard, "nightly-sync")
    schedule(dashboard, "hourly-digest", cron="@hourly", timezone="UTC", enabled=False)
    browser.sign_in(dashboard.url, ADMIN_KEY)
    browser.wait_text("#status", "live")
    browser.find('nav a[href="#/schedules"]').click()
    row = browser.find('#schedule-rows tr[data-schedule="nightly-sync"]')
    cells = [c.text for c in row.find_elements("css selector", "td")]
    assert cells[:5] == ["nightly-sync", "30 2 * * *", "Europe/Berlin", REPORTS, "enabled"]
    assert cells[6].startswith("in ")
    paused = browser.find('#schedule-rows tr[data-schedule="hourly-digest"]').text
    assert "paused" in paused and "Resume" in paused
    row.click()
    browser.wait_text("#schedule-detail", "Schedule nightly-sync")
    assert "local" in browser.text("#schedule-next")
    assert '"n": 1' in browser.text("#schedule-payload")
    browser.screenshot("schedules")

    # pause: asks first; No changes nothing
    browser.find('#schedule-rows tr[data-schedule="nightly-sync"] button').click()
    browser.wait_text("#dialog", "Pause schedule nightly-sync?")
    browser.find("#dialog button:not(.primary)").click()
    assert enabled(dashboard, "nightly-sync")
    browser.find('#schedule-rows tr[data-schedule="nightly-sync"] button').click()
    browser.wait_text("#dialog", "Pause schedule nightly-sync?")
    browser.screenshot("pause-confirm")
    browser.find("#dialog button.primary").click()
    until(lambda: not enabled(dashboard, "nightly-sync"), "nightly-sync was never paused")
    browser.wait_text('#schedule-rows tr[data-schedule="nightly-sync"]', "Resume")
    browser.find('#schedule-rows tr[data-schedule="nightly-sync"] button').click()
    browser.find("#dialog button.primary").click()
    until(lambda: enabled(dashboard, "nightly-sync"), "nightly-sync was never resumed")

    # run now: one job on the schedule's queue (reports is paused, so it stays there to be seen)
    browser.wait_text('#schedule-rows tr[data-schedule="nightly-sync"]', "Pause")
    browser.find('#schedule-rows tr[data-schedule="nightly-sync"] button.primary').click()
    browser.wait_text("#dialog", "Run schedule nightly-sync now?")
    browser.find("#dialog button.primary").click()
    runs = until(
        lambda: dashboard.sql(
            "SELECT job_id FROM schedule_runs WHERE schedule = 'nightly-sync' AND job_id IS NOT NULL"
        ),
        "no run of nightly-sync was recorded",
    )
    job_id = runs[0]["job_id"]
    assert dashboard.sql("SELECT queue FROM jobs WHERE id = $1", job_id)[0]["queue"] == REPORTS
    browser.wait_text("#schedule-runs", f"job {job_id}")
    actions = dashboard.sql("SELECT actor, action FROM audit_log WHERE target = 'schedule:nightly-sync' ORDER BY id")
    assert [(r["actor"], r["action"]) for r in actions][-3:] == [
        ("dashboard:alice", "schedule.pause"),
        ("dashboard:alice", "schedule.resume"),
        ("dashboard:alice", "schedule.run"),
    ]
    browser.screenshot("schedule-run")


def test_a_read_key_session_sees_schedules_but_cannot_act(dashboard: Dashboard, browser: Browser) -> None:
    schedule(dashboard, "nightly-sync")
    browser.sign_in(dashboard.url, READ_KEY)
    browser.wait_text("#status", "live")
    browser.open(dashboard.url + "/ui/#/schedules")
    row = browser.find('#schedule-rows tr[data-schedule="nightly-sync"]')
    buttons = row.find_elements("css selector", "button")
    assert [b.is_enabled() for b in buttons] == [False, False]
    # nor by hand from the page: the server refuses a read session's action
    refused = browser.fetch("POST", "../api/schedules/nightly-sync/pause", {"x-csrf-token": "whatever"})
    assert refused["status"] in (401, 403)
    assert enabled(dashboard, "nightly-sync")


def test_the_job_detail_draws_its_dependency_graph(dashboard: Dashboard, browser: Browser) -> None:
    """upload -> (send, archive) -> report: the reports queue is paused, so every job waits."""
    assert dashboard.api("POST", f"/api/queue/{REPORTS}/pause")[0] == 200

    def enqueue(after: list[int] | None = None) -> int:
        body: dict[str, object] = {"data": {"n": 1}}
        if after:
            body["dependsOn"] = after
        status, answer = dashboard.api("POST", f"/api/queue/{REPORTS}/jobs", body)
        assert status == 201, answer
        return int(answer["id"])

    upload = enqueue()
    send = enqueue([upload])
    archive = enqueue([upload])
    report = enqueue([send, archive])
    browser.sign_in(dashboard.url, ADMIN_KEY)
    browser.wait_text("#status", "live")
    browser.open(dashboard.url + f"/ui/#/job/{send}")
    browser.wait_text("#main h1", f"Job {send}")
    browser.find("#dag-svg")
    # the whole graph is drawn, each job a box that links to it, the job shown without a link
    drawn = {int(n.get_attribute("data-job")) for n in browser.find_all("#dag-svg [data-job]")}
    assert drawn == {upload, send, archive, report}
    linked = {int(a.get_attribute("data-job")) for a in browser.find_all("#dag-svg a[data-job]")}
    assert linked == {upload, archive, report}
    edges = {
        (int(e.get_attribute("data-from")), int(e.get_attribute("data-to"))) for e in browser.find_all(".dag-edge")
    }
    assert edges == {(upload, send), (upload, archive), (send, report), (archive, report)}
    assert "blocked" in browser.text(f'#dag-svg [data-job="{send}"]')
    assert f"job {upload}" in browser.text("#dag-parents") and f"job {report}" in browser.text("#dag-children")
    browser.screenshot("job-dag")

    # open the parent from the drawing; the children list opens the other way
    browser.find(f'#dag-svg a[data-job="{upload}"]').click()
    browser.wait_text("#main h1", f"Job {upload}")
    browser.wait_text("#dag-children", f"job {send}")
    assert "none" in browser.text("#dag-parents")
    browser.find(f'#dag-children li[data-job="{archive}"] a').click()
    browser.wait_text("#main h1", f"Job {archive}")
    browser.screenshot("job-dag-parent")

    # a job outside any graph says so
    alone = enqueue()
    browser.open(dashboard.url + f"/ui/#/job/{alone}")
    browser.wait_text("#dag", "not part of a dependency graph")

    # a dead letter's page draws it too: a mail job dead-lettered, a report held on it
    status, answer = dashboard.api("POST", f"/api/queue/{MAIL}/jobs", {"data": {"ok_file": str(dashboard.ok_file)}})
    assert status == 201, answer
    dead = int(answer["id"])
    status, answer = dashboard.api(
        "POST", f"/api/queue/{REPORTS}/jobs", {"data": {"n": 2}, "dependsOn": [dead], "onFailure": "hold"}
    )
    assert status == 201, answer
    held = int(answer["id"])
    until(lambda: dashboard.sql("SELECT 1 FROM dead_letters WHERE job_id = $1", dead), f"job {dead} never dead", 30)
    browser.open(dashboard.url + f"/ui/#/dead/{dead}")
    browser.wait_text("#dag-children", f"job {held}")
    assert "blocked" in browser.text(f'#dag-children li[data-job="{held}"]')
    assert "dead" in browser.text(f'#dag-svg [data-job="{dead}"]')
    browser.screenshot("dead-letter-dag")


@pytest.fixture
async def experiment(
    start_appliance: Callable[..., FleetboxProcess], dsn: str, tmp_path: Path
) -> AsyncIterator[Dashboard]:
    """``fleetbox run`` with a mail queue whose jobs are split between two retry variants."""
    config = tmp_path / "fleetbox.toml"
    sections = {
        "appliance": {**E2E_APPLIANCE, "data_dir": str(tmp_path / "data")},
        "admin": {"port": 0, "socket_enabled": False, "key": ADMIN_KEY, "read_key": READ_KEY},
        "graph": {"enabled": False},
        f'queues."{MAIL}"': {"tier": "medium", "handler": "tests.e2e.handlers:reject_unless"},
        f'queues."{MAIL}".retry_variants.patient': {"weight": 1},
        f'queues."{MAIL}".retry_variants.impatient': {"weight": 1},
    }
    config.write_text(toml_text(sections), encoding="utf-8")
    process = start_appliance("dash", config)
    await process.wait_ready(timeout=60)
    port = (await process.wait_event("admin_listening"))["port"]
    yield Dashboard(f"http://127.0.0.1:{port}", dsn, process, tmp_path / "ok")


def test_the_retry_variant_report_of_a_queue(experiment: Dashboard, browser: Browser) -> None:
    """Six jobs dead-lettered, then ten that succeed (the handler's file exists): the page shows
    each variant's share of them with the report's own figures and verdict."""
    dashboard = experiment

    def enqueue(n: int) -> None:
        for _ in range(n):
            status, body = dashboard.api(
                "POST", f"/api/queue/{MAIL}/jobs", {"data": {"ok_file": str(dashboard.ok_file)}}
            )
            assert status == 201, body

    def finished(count: int) -> None:
        until(
            lambda: dashboard.sql("SELECT count(*) AS n FROM jobs_done WHERE queue = $1", MAIL)[0]["n"] == count,
            f"{count} mail jobs never finished",
            60,
        )

    enqueue(6)
    finished(6)
    dashboard.ok_file.write_text("ok", encoding="utf-8")
    enqueue(10)
    finished(16)
    status, report = dashboard.api("GET", f"/api/queue/{MAIL}/retry-variants")
    assert status == 200, report
    assert sum(v["jobs"] for v in report["variants"]) == 16

    browser.sign_in(dashboard.url, ADMIN_KEY)
    browser.wait_text("#status", "live")
    browser.find('nav a[href="#/variants"]').click()
    Select(browser.find("#main select[name=queue]")).select_by_value(MAIL)
    browser.wait_text("#variant-verdict", report["verdict"][:40])
    shown = {
        tr.get_attribute("data-variant"): [td.text for td in tr.find_elements("css selector", "td")]
        for tr in browser.find_all("#variant-rows tr")
    }
    assert set(shown) == {"patient", "impatient"}
    for v in report["variants"]:
        cells = shown[v["label"]]
        assert cells[2] == str(v["jobs"])
        assert cells[3] == percent(v["successRate"])
        assert cells[8] == percent(v["deadLetterRate"])
    verdicts = {cells[9] for cells in shown.values()}
    assert "control" in verdicts
    browser.screenshot("retry-variants")
