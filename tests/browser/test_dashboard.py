"""The dashboard at /ui/ in headless Chromium, against a real appliance on the test database:
what an operator does, and what the database says afterwards."""

from __future__ import annotations

import pytest
from selenium.webdriver.support.ui import Select

from tests.browser.conftest import ADMIN_KEY, MAIL, READ_KEY, REPORTS, Browser, Dashboard, until


def waiting_cell(browser: Browser, queue: str) -> str:
    """The Waiting cell of a queue's row, read in one step (the row's cells change with each tick)."""
    browser.find(f'#queue-rows tr[data-queue="{queue}"]')
    script = "return document.querySelector(`#queue-rows tr[data-queue='${arguments[0]}']`).cells[3].textContent"
    return str(browser.driver.execute_script(script, queue))


def dead_letter_of(dashboard: Dashboard, data: str) -> int:
    """Enqueue a mail job that the handler dead-letters; its job id once it is dead."""
    status, body = dashboard.api(
        "POST", f"/api/queue/{MAIL}/jobs", {"data": {"ok_file": str(dashboard.ok_file), "userId": data}}
    )
    assert status == 201, body
    job_id = int(body["id"])
    until(lambda: dashboard.sql("SELECT 1 FROM dead_letters WHERE job_id = $1", job_id), f"job {job_id} never dead", 30)
    return job_id


def test_admin_signs_in_sees_every_queue_and_a_count_change_live(dashboard: Dashboard, browser: Browser) -> None:
    status, _ = dashboard.api("POST", f"/api/queue/{REPORTS}/pause")
    assert status == 200
    browser.sign_in(dashboard.url, ADMIN_KEY)
    browser.wait_text("#status", "live")
    queues = {r["name"] for r in dashboard.sql("SELECT name FROM queues WHERE tier <> 0")}
    shown = "return [...document.querySelectorAll('#queue-rows tr')].map((tr) => tr.dataset.queue)"
    browser.wait(lambda: set(browser.driver.execute_script(shown)) == queues, f"not every queue shown: {queues}")
    assert waiting_cell(browser, REPORTS) == "0"
    assert "admin" in browser.text("#who")
    browser.screenshot("queues")

    for _ in range(3):
        status, body = dashboard.api("POST", f"/api/queue/{REPORTS}/jobs", {"data": {"n": 1}})
        assert status == 201, body
    # no reload: the stream's next tick changes the cell
    browser.wait(lambda: waiting_cell(browser, REPORTS) == "3", "the waiting count of reports never became 3")
    browser.screenshot("queues-after-enqueue")


def test_search_a_job_by_payload_and_by_error_text(dashboard: Dashboard, browser: Browser) -> None:
    assert dashboard.api("POST", f"/api/queue/{REPORTS}/pause")[0] == 200
    ids = {}
    for user in ("u1", "u2", "u10"):
        status, body = dashboard.api("POST", f"/api/queue/{REPORTS}/jobs", {"data": {"userId": user, "n": 1}})
        assert status == 201, body
        ids[user] = body["id"]
    dead = dead_letter_of(dashboard, "u3")
    browser.sign_in(dashboard.url, ADMIN_KEY)
    browser.wait_text("#status", "live")
    browser.open(dashboard.url + "/ui/#/jobs")
    browser.find("#job-search input[name=data]").send_keys('{"userId": "u1"}')
    browser.find("#job-search button[type=submit]").click()
    browser.wait(lambda: browser.find_all("#jobs tbody tr"), "no search result")
    shown = [r.get_attribute("data-id") for r in browser.find_all("#jobs tbody tr")]
    assert shown == [str(ids["u1"])]  # containment, not text: u10 does not match
    browser.screenshot("jobs-search-payload")

    search = browser.find("#job-search input[name=data]")
    search.clear()
    browser.find("#job-search input[name=error]").send_keys("REJECTED by the e2e")
    Select(browser.find("#job-search select[name=status]")).select_by_value("dead")
    browser.find("#job-search button[type=submit]").click()
    browser.wait(
        lambda: [r.get_attribute("data-id") for r in browser.find_all("#jobs tbody tr")] == [str(dead)],
        "the dead job was not found by its error text",
    )
    browser.find(f'#jobs tbody tr[data-id="{dead}"] a').click()
    browser.wait_text("#main h1", f"Job {dead}")
    assert '"userId": "u3"' in browser.text("#payload")
    browser.screenshot("job-detail")


def test_review_a_dead_letter_with_notes_then_retry_it(dashboard: Dashboard, browser: Browser) -> None:
    job_id = dead_letter_of(dashboard, "u-dead")
    browser.sign_in(dashboard.url, ADMIN_KEY, name="alice")
    browser.wait_text("#status", "live")
    browser.open(dashboard.url + "/ui/#/dead")
    row = browser.find(f'#dead-letters tr[data-job="{job_id}"]')
    assert "rejected by the e2e test" in row.text
    browser.wait(lambda: "ValidationError" in browser.text("#dead-group-table"), "no error groups")
    browser.screenshot("dead-letters")
    row.find_element("css selector", "a").click()
    browser.wait_text("#main h1", f"Dead letter of job {job_id}")
    assert '"userId": "u-dead"' in browser.text("#payload")
    assert "ValidationError" in browser.text("#attempts")
    assert "null" not in browser.text("#main").split()  # no action yet: no section, and no stray text
    browser.screenshot("dead-letter")

    browser.find("#dl-review").click()
    browser.find("#dialog textarea[name=notes]").send_keys("address fixed upstream; retrying")
    browser.find("#dialog button.primary").click()
    browser.wait_text("#dead-letter", "yes, by alice")
    dashboard.ok_file.touch()  # the handler now succeeds
    browser.find("#dl-retry").click()
    browser.find("#dialog button.primary").click()
    browser.wait_text("#dead-letter", "Retried as")
    # The operator actions, as a list: found from outside, the page ended with
    # "[object HTMLHeadingElement],[object HTMLDivElement]" (or "null") instead.
    trail = browser.wait_text("#trail", "dead.retry")
    assert "dashboard:alice · dead.review" in trail and "dashboard:alice · dead.retry" in trail
    assert "[object" not in browser.text("#main")
    browser.screenshot("dead-letter-retried")

    (letter,) = dashboard.sql(
        "SELECT status, reviewed_by, resolution_notes, retried_job_id FROM dead_letters WHERE job_id = $1", job_id
    )
    assert (letter["status"], letter["reviewed_by"]) == ("retried", "alice")
    assert letter["resolution_notes"] == "address fixed upstream; retrying"
    new_job = letter["retried_job_id"]
    until(
        lambda: dashboard.sql("SELECT 1 FROM jobs_done WHERE id = $1 AND state = 'succeeded'", new_job),
        f"the retried job {new_job} never succeeded",
        30,
    )
    actions = {(r["actor"], r["action"]) for r in dashboard.sql("SELECT actor, action FROM audit_log")}
    assert ("dashboard:alice", "dead_letter.retry") in actions or any(
        actor == "dashboard:alice" and "retry" in action for actor, action in actions
    ), actions


@pytest.mark.parametrize(("action", "status"), [("retry", "retried"), ("discard", "discarded")])
def test_all_matching_after_a_preview_of_count_and_sample(
    dashboard: Dashboard, browser: Browser, action: str, status: str
) -> None:
    jobs = [dead_letter_of(dashboard, f"bulk-{i}") for i in range(3)]
    browser.sign_in(dashboard.url, ADMIN_KEY)
    browser.wait_text("#status", "live")
    browser.open(dashboard.url + f"/ui/#/dead?queue={MAIL}")
    browser.wait(lambda: len(browser.find_all("#dead-letters tbody tr")) == 3, "three dead letters not listed")
    browser.find(f"#{action}-matching").click()
    browser.wait_text("#bulk-count", "3 dead letters match")
    assert len(browser.find_all("#bulk-sample li")) == 3
    confirm = browser.find("#dialog button.danger")
    assert not confirm.is_enabled()  # not before the count is typed
    browser.find("#dialog input[name=confirm]").send_keys("3")
    browser.screenshot("bulk-preview")
    # the cause is fixed before the retry: the retried jobs succeed (else they would fail again and
    # come back as new open dead letters while the page is being checked)
    dashboard.ok_file.touch()
    confirm.click()
    browser.wait(lambda: not browser.find_all("#dead-letters tbody tr"), "the dead letters are still listed as open")
    rows = dashboard.sql("SELECT status FROM dead_letters WHERE job_id = ANY($1::bigint[])", jobs)
    assert [r["status"] for r in rows] == [status] * 3
    actors = {r["actor"] for r in dashboard.sql("SELECT actor FROM audit_log WHERE action LIKE $1", f"%{action}%")}
    assert actors == {"dashboard:alice"}


def test_review_all_matching_with_notes(dashboard: Dashboard, browser: Browser) -> None:
    jobs = [dead_letter_of(dashboard, f"review-{i}") for i in range(2)]
    browser.sign_in(dashboard.url, ADMIN_KEY, name="bob")
    browser.wait_text("#status", "live")
    browser.open(dashboard.url + f"/ui/#/dead?queue={MAIL}&reviewed=false")
    browser.wait(lambda: len(browser.find_all("#dead-letters tbody tr")) == 2, "two dead letters not listed")
    browser.find("#review-matching").click()
    browser.wait_text("#bulk-count", "2 dead letters match")
    browser.find("#dialog textarea[name=notes]").send_keys("known outage, nothing to do")
    browser.find("#dialog input[name=confirm]").send_keys("2")
    browser.find("#dialog button.primary").click()
    browser.wait(lambda: not browser.find_all("#dead-letters tbody tr"), "the reviewed dead letters are still listed")
    rows = dashboard.sql(
        "SELECT reviewed_by, resolution_notes FROM dead_letters WHERE job_id = ANY($1::bigint[])", jobs
    )
    assert {(r["reviewed_by"], r["resolution_notes"]) for r in rows} == {("bob", "known outage, nothing to do")}


def test_a_read_key_session_sees_but_cannot_act(dashboard: Dashboard, browser: Browser) -> None:
    job_id = dead_letter_of(dashboard, "u-read")
    browser.sign_in(dashboard.url, READ_KEY, name="rita")
    browser.wait_text("#who", "read-only")
    browser.wait_text("#status", "live")
    browser.wait(lambda: browser.find_all("#queue-rows tr button"), "no queue rows")
    assert all(not b.is_enabled() for b in browser.find_all("#queue-rows tr button"))
    browser.screenshot("queues-read-only")
    browser.open(dashboard.url + f"/ui/#/job/{job_id}")
    browser.find("#dead-letter")
    assert not browser.find("#dl-retry").is_enabled()
    browser.screenshot("dead-letter-read-only")
    # Even with the page's CSRF token, the server refuses an action of a read session.
    token = browser.fetch("GET", "session", {})["body"]["csrfToken"]
    answer = browser.fetch("POST", f"../api/queue/dead-letter/{job_id}/retry", {"x-csrf-token": token}, {})
    assert answer["status"] == 403 and answer["body"]["error"]["code"] == "read_only_key", answer
    answer = browser.fetch("POST", f"../api/queue/{MAIL}/pause", {"x-csrf-token": token}, {})
    assert answer["status"] == 403, answer
    assert dashboard.sql("SELECT status FROM dead_letters WHERE job_id = $1", job_id)[0]["status"] == "open"
    assert dashboard.sql("SELECT paused FROM queues WHERE name = $1", MAIL)[0]["paused"] is False


def test_a_wrong_key_is_refused_and_opens_no_session(dashboard: Dashboard, browser: Browser) -> None:
    browser.sign_in(dashboard.url, "not-the-key")
    browser.wait_text("#signin", "neither the admin key nor the read key")
    browser.screenshot("sign-in-refused")
    assert browser.driver.get_cookies() == []
    assert browser.fetch("GET", "session", {})["status"] == 401
    assert browser.fetch("GET", "../api/queue/stats", {})["status"] == 401


def test_an_action_without_the_csrf_token_is_refused(dashboard: Dashboard, browser: Browser) -> None:
    browser.sign_in(dashboard.url, ADMIN_KEY)
    browser.wait_text("#status", "live")
    (cookie,) = browser.driver.get_cookies()
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert browser.driver.execute_script("return document.cookie") == ""  # the page's script cannot read it
    refused = browser.fetch("POST", f"../api/queue/{REPORTS}/pause", {})
    assert refused["status"] == 403 and refused["body"]["error"]["code"] == "csrf_refused", refused
    forged = browser.fetch("POST", f"../api/queue/{REPORTS}/pause", {"x-csrf-token": "forged"})
    assert forged["status"] == 403, forged
    assert dashboard.sql("SELECT paused FROM queues WHERE name = $1", REPORTS)[0]["paused"] is False
    # the same request with the page's token goes through: the token is what made the difference
    token = browser.fetch("GET", "session", {})["body"]["csrfToken"]
    assert browser.fetch("POST", f"../api/queue/{REPORTS}/pause", {"x-csrf-token": token})["status"] == 200
    assert dashboard.sql("SELECT paused FROM queues WHERE name = $1", REPORTS)[0]["paused"] is True


def test_create_a_job_pause_and_clear_a_queue_and_edit_a_threshold(dashboard: Dashboard, browser: Browser) -> None:
    browser.sign_in(dashboard.url, ADMIN_KEY)
    browser.wait_text("#status", "live")
    browser.open(dashboard.url + "/ui/#/jobs")
    form = browser.find("#create-job")
    form.find_element("css selector", f'select[name=queue] option[value="{REPORTS}"]').click()
    payload = form.find_element("css selector", "textarea[name=payload]")
    payload.clear()
    payload.send_keys('["not", "an object"]')
    form.find_element("css selector", "input[name=delay]").send_keys("3600")
    form.find_element("css selector", "button[type=submit]").click()
    browser.wait_text("#create-job", "data: ")  # the API's own check, naming the field
    assert not dashboard.sql("SELECT 1 FROM jobs WHERE queue = $1", REPORTS)
    payload.clear()
    payload.send_keys('{"report": "weekly"}')
    form.find_element("css selector", "button[type=submit]").click()
    browser.wait_text("#main h1", "Job ")
    job_id = int(browser.text("#main h1").split()[-1])
    (row,) = dashboard.sql(
        "SELECT queue, data, run_at > now() + interval '50 minutes' AS later FROM jobs WHERE id = $1", job_id
    )
    assert (row["queue"], row["later"]) == (REPORTS, True) and '"weekly"' in row["data"]
    browser.screenshot("job-created")

    browser.open(dashboard.url + "/ui/#/queues")
    browser.find(f'#queue-rows tr[data-queue="{REPORTS}"]')
    browser.find(f'#queue-rows tr[data-queue="{REPORTS}"] button').click()  # Pause
    until(lambda: dashboard.sql("SELECT paused FROM queues WHERE name = $1", REPORTS)[0]["paused"], "not paused")
    browser.wait_text(f'#queue-rows tr[data-queue="{REPORTS}"]', "Resume")
    browser.find(f'#queue-rows tr[data-queue="{REPORTS}"] button.danger').click()  # Clear…
    confirm = browser.find("#dialog button.danger")
    assert not confirm.is_enabled()  # until the queue's name is typed
    browser.find("#dialog input[name=confirm]").send_keys(REPORTS)
    browser.screenshot("clear-confirm")
    confirm.click()
    until(lambda: not dashboard.sql("SELECT 1 FROM jobs WHERE id = $1", job_id), "the job was not cleared")

    browser.open(dashboard.url + "/ui/#/alerts")
    backlog = browser.find("#thresholds input[name=maxBacklog]")
    backlog.clear()
    backlog.send_keys("4321")
    browser.find("#thresholds button[type=submit]").click()
    until(lambda: dashboard.api("GET", "/api/queue/thresholds")[1]["maxBacklog"] == 4321, "the threshold not saved")
    browser.screenshot("alerts")


def test_on_a_phone_in_the_dark_theme_with_the_keyboard(dashboard: Dashboard, browser: Browser) -> None:
    browser.driver.set_window_size(390, 844)
    browser.sign_in(dashboard.url, ADMIN_KEY)
    browser.wait_text("#status", "live")
    browser.find("#queue-rows tr")
    body = browser.driver.find_element("css selector", "body")
    body.send_keys("t")  # dark theme
    assert browser.driver.execute_script("return document.documentElement.dataset.theme") in ("dark", "light")
    width = browser.driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 400, f"the page is {width}px wide on a 390px phone: only tables may scroll sideways"
    browser.screenshot("phone-queues")
    body.send_keys("3")  # dead letters
    browser.wait_text("#main h1", "Dead letters")
    body.send_keys("?")
    browser.wait_text("#dialog", "Keyboard")
    browser.screenshot("phone-help")


HIDE = """
    Object.defineProperty(document, "hidden", {configurable: true, get: () => arguments[0]});
    document.dispatchEvent(new Event("visibilitychange"));
"""


def test_the_live_table_pauses_while_the_tab_is_hidden(dashboard: Dashboard, browser: Browser) -> None:
    assert dashboard.api("POST", f"/api/queue/{REPORTS}/pause")[0] == 200
    browser.sign_in(dashboard.url, ADMIN_KEY)
    browser.wait_text("#status", "live")
    browser.wait(lambda: waiting_cell(browser, REPORTS) == "0", "reports not shown")
    browser.driver.execute_script(HIDE, True)
    browser.wait_text("#status", "paused")
    assert dashboard.api("POST", f"/api/queue/{REPORTS}/jobs", {"data": {"n": 1}})[0] == 201
    # the page closed its stream ("paused"): no tick reaches it, so the table stays as it was
    assert "live" not in browser.text("#status")
    assert waiting_cell(browser, REPORTS) == "0"
    browser.driver.execute_script(HIDE, False)
    browser.wait_text("#status", "live")
    browser.wait(lambda: waiting_cell(browser, REPORTS) == "1", "the table did not catch up on return")


def test_a_large_payload_is_cut_with_a_download_link(dashboard: Dashboard, browser: Browser) -> None:
    assert dashboard.api("POST", f"/api/queue/{REPORTS}/pause")[0] == 200
    big = {"rows": ["x" * 1000 for _ in range(200)]}
    status, body = dashboard.api("POST", f"/api/queue/{REPORTS}/jobs", {"data": big})
    assert status == 201, body
    browser.sign_in(dashboard.url, ADMIN_KEY)
    browser.wait_text("#status", "live")
    browser.open(dashboard.url + f"/ui/#/job/{body['id']}")
    browser.wait_text("#main", "large payload")
    assert len(browser.text("#payload")) < 70_000
    link = browser.find("#main a[download]")
    assert link.get_attribute("href").startswith("blob:")
    browser.screenshot("large-payload")
