"""The TUI's schedules view, a job's parents and children, and the retry-variant report, against
a real appliance over the real control socket. What the tests check is what the screen and the
database say."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Static

from fleetbox.app import Appliance
from fleetbox.errors import TransientError
from fleetbox.models import Job
from fleetbox.service.schedules import ScheduleSpec
from fleetbox.tui.screens.graph import JobGraphScreen, RelationsTable
from fleetbox.tui.screens.job import JobDetailScreen
from fleetbox.tui.screens.queue_detail import QueueDetailScreen
from fleetbox.tui.screens.schedules import SchedulesScreen
from fleetbox.tui.screens.variants import RetryVariantsScreen
from fleetbox.tui.widgets.modals import ConfirmModal
from fleetbox.tui.widgets.text import DASH
from tests.admin.conftest import WORK, Behaviour, admin_section
from tests.admin.test_socket import short_dir  # noqa: F401
from tests.conftest import wait_for
from tests.tui.conftest import seen, settle, until
from tests.tui.test_actions_live import post
from tests.tui.test_live import SIZE, StartAppliance, live, live_app

FLAKY = "flaky"
#: text that Textual would read as markup (and fail on) if it were ever parsed
BOGUS = "[/bogus] [@click=app.quit]quit[/]"
#: patient retries a transient failure at once, three times; impatient never retries it
VARIANTS = {
    "patient": {"weight": 1, "retry": {"transient": {"max_retries": 3, "base_seconds": 0}}},
    "impatient": {"weight": 1, "retry": {"transient": {"max_retries": 0}}},
}


async def fails_twice(job: Job) -> None:
    """A flaky remote: the first two attempts of every job fail, the third succeeds."""
    if job.attempt < 3:
        raise TransientError(f"flaky (attempt {job.attempt})")


async def start(appliance_factory: StartAppliance, path: Path, **extra: object) -> Appliance:
    behaviour = Behaviour()
    return await appliance_factory(
        handlers={WORK: behaviour.handle, FLAKY: fails_twice},
        queues={WORK: {"tier": "low"}, FLAKY: {"tier": "low", "retry_variants": VARIANTS}},
        pools={"low": 2},
        admin=admin_section(socket_enabled=True, socket_path=str(path)),
        **extra,
    )


def cell(table: DataTable[object], row: str, column: str) -> str:
    return str(table.get_cell(row, column))


async def test_schedules_listed_paused_resumed_and_run_now(
    appliance_factory: StartAppliance,
    short_dir: Path,  # noqa: F811
) -> None:
    path = short_dir / "admin.sock"
    appliance = await start(appliance_factory, path)
    schedules = appliance.service.schedules
    await schedules.put(
        ScheduleSpec(name="nightly", cron="30 2 * * *", queue=WORK, data={"mode": "ok"}, timezone="Europe/Berlin"),
        actor="ops",
    )
    await schedules.put(ScheduleSpec(name="digest", cron="@hourly", queue=WORK, data={}, enabled=False), actor="ops")
    app = live_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        await pilot.press("4")
        screen = app.screen
        assert isinstance(screen, SchedulesScreen)
        await until(pilot, lambda: screen.loaded and screen.detail_of == "digest", deadline=20)
        table = screen.table
        assert [cell(table, "nightly", c) for c in ("cron", "tz", "queue", "state")] == [
            "30 2 * * *",
            "Europe/Berlin",
            WORK,
            "on",
        ]
        assert cell(table, "nightly", "next").startswith("in ")
        assert (cell(table, "digest", "state"), cell(table, "digest", "next")) == ("PAUSED", DASH)
        # the highlighted schedule's detail: its policies and next runs (none while paused)
        assert "catch-up latest" in seen(screen.query_one("#schedule-detail", Static))
        await pilot.press("down")
        await until(pilot, lambda: screen.detail_of == "nightly", deadline=20)
        detail = seen(screen.query_one("#schedule-detail", Static))
        # next runs in UTC and at 02:30 Berlin time
        assert "Next runs" in detail and "T02:30:00" in detail

        # pause: asks first; No changes nothing
        await pilot.press("p")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        await settle(app, pilot)
        assert (await schedules.get("nightly")).enabled
        await pilot.press("p", "y")
        await settle(app, pilot)
        assert not (await schedules.get("nightly")).enabled
        await until(pilot, lambda: cell(table, "nightly", "state") == "PAUSED")
        await pilot.press("p", "y")
        await settle(app, pilot)
        assert (await schedules.get("nightly")).enabled

        # run now: one job enqueued on the schedule's queue, by alice
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("y")
        await settle(app, pilot)
        [run] = await schedules.runs("nightly")
        job_id = run.job_id
        assert run.outcome == "enqueued" and job_id is not None
        assert (await appliance.client.get_job(job_id)).queue == WORK
        actions = await appliance.store.pool.fetch(
            "SELECT actor, action FROM fleetbox.audit_log WHERE target = 'schedule:nightly' AND actor = 'alice'"
            " ORDER BY id"
        )
        assert [tuple(r) for r in actions] == [
            ("alice", "schedule.pause"),
            ("alice", "schedule.resume"),
            ("alice", "schedule.run"),
        ]
        await until(pilot, lambda: "Latest runs" in seen(screen.query_one("#schedule-detail", Static)))


async def test_read_only_refuses_schedule_actions_and_follows_others(
    appliance_factory: StartAppliance,
    short_dir: Path,  # noqa: F811
) -> None:
    path = short_dir / "admin.sock"
    appliance = await start(appliance_factory, path)
    await appliance.service.schedules.put(
        ScheduleSpec(name="nightly", cron="30 2 * * *", queue=WORK, data={"note": BOGUS}), actor="ops"
    )
    app = live_app(path)
    app.read_only_flag = True
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        await pilot.press("4")
        screen = app.screen
        assert isinstance(screen, SchedulesScreen)
        await until(pilot, lambda: screen.loaded, deadline=20)
        await pilot.press("p", "r")
        await settle(app, pilot)
        assert screen is app.screen  # no dialog opened
        assert screen.check_action("pause", ()) is None and screen.check_action("run", ()) is None
        assert (await appliance.service.schedules.get("nightly")).enabled
        assert await appliance.service.schedules.runs("nightly") == []
        # the payload is shown as it is, never read as markup
        await until(pilot, lambda: screen.detail_of == "nightly")
        assert BOGUS in seen(screen.query_one("#schedule-detail", Static))
        # another operator pauses it: the row follows (the live stream's event), no ctrl+r
        await post(path, "/api/schedules/nightly/pause", "bob")
        await until(pilot, lambda: cell(screen.table, "nightly", "state") == "PAUSED", deadline=20)


async def test_a_dead_letter_shows_its_held_children_and_opens_them(
    appliance_factory: StartAppliance,
    short_dir: Path,  # noqa: F811
) -> None:
    path = short_dir / "admin.sock"
    appliance = await start(appliance_factory, path)
    client = appliance.client
    upload = (await client.enqueue(WORK, {"mode": "ok"})).id
    send = (await client.enqueue(WORK, {"mode": "permanent"}, depends_on=[upload])).id
    notify = (await client.enqueue(WORK, {"mode": "ok"}, depends_on=[send], on_failure="hold")).id

    async def dead() -> bool:
        return await appliance.store.pool.fetchval("SELECT count(*) FROM fleetbox.dead_letters") == 1

    await wait_for(dead, timeout=20)
    app = live_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        await pilot.press("2")
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        detail = app.screen
        assert isinstance(detail, JobDetailScreen) and detail.letter["jobId"] == send
        for _ in range(4):  # payload -> errors -> timeline -> review -> dependencies
            await pilot.press("l")
        await settle(app, pilot)
        relations = detail.query_one("#job-deps", RelationsTable)
        assert relations.row_count == 2
        assert [cell(relations, f"parent:{upload}", c) for c in ("job", "state", "edge")] == [
            str(upload),
            "succeeded",
            "succeeded",
        ]
        assert [cell(relations, f"child:{notify}", c) for c in ("state", "edge")] == ["blocked", "open"]
        assert "1 waiting on this job" in seen(detail.query_one("#job-deps-summary", Static))

        # open the held child (the tab gave its table the keys), then its parent from there, then back
        await pilot.press("down", "enter")
        await settle(app, pilot)
        child = app.screen
        assert isinstance(child, JobGraphScreen) and child.job_id == notify
        await until(pilot, lambda: child.loaded)
        title = seen(child.query_one("#graph-title", Static))
        assert f"job {notify}" in title and "blocked" in title
        table = child.query_one(RelationsTable)
        assert cell(table, f"parent:{send}", "state") == "dead"
        assert "this job waits for them" in seen(child.query_one("#graph-summary", Static))
        await pilot.press("enter")
        await settle(app, pilot)
        parent = app.screen
        assert isinstance(parent, JobGraphScreen) and parent.job_id == send
        await until(pilot, lambda: parent.loaded)
        assert "dead" in seen(parent.query_one("#graph-title", Static))
        await pilot.press("escape")
        assert app.screen is child


async def test_retry_variant_report_of_a_queue(appliance_factory: StartAppliance, short_dir: Path) -> None:  # noqa: F811
    path = short_dir / "admin.sock"
    appliance = await start(appliance_factory, path)
    for n in range(40):
        await appliance.client.enqueue(FLAKY, {"n": n})

    async def finished() -> bool:
        done = "SELECT count(*) FROM fleetbox.jobs_done WHERE queue = $1"
        return await appliance.store.pool.fetchval(done, FLAKY) == 40

    await wait_for(finished, timeout=60)
    expected = await appliance.service.experiments.report(FLAKY, appliance.settings.queues[FLAKY])
    figures = {v.label: v for v in expected.variants}
    app = live_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        await pilot.press("slash", *FLAKY, "enter", "enter")
        await settle(app, pilot)
        assert isinstance(app.screen, QueueDetailScreen)
        await pilot.press("v")
        screen = app.screen
        assert isinstance(screen, RetryVariantsScreen)
        await until(pilot, lambda: screen.loaded, deadline=20)
        table = screen.query_one("#variants", DataTable)
        patient, impatient = figures["patient"], figures["impatient"]
        assert cell(table, "patient", "jobs") == str(patient.jobs)
        assert cell(table, "impatient", "jobs") == str(impatient.jobs)
        assert patient.jobs + impatient.jobs == 40
        # patient: every job succeeded on its third attempt; impatient: every job dead at once
        assert [cell(table, "patient", c) for c in ("success", "attempts", "dead")] == ["100.0%", "3.00", "0.0%"]
        assert [cell(table, "impatient", c) for c in ("success", "attempts", "dead")] == ["0.0%", DASH, "100.0%"]
        assert cell(table, "impatient", "p50") == DASH
        assert cell(table, "patient", "extra") == str(2 * patient.jobs)
        [comparison] = expected.comparisons
        verdicts = {cell(table, comparison.label, "verdict"), cell(table, comparison.control, "verdict")}
        assert "control" in verdicts
        summary = seen(screen.query_one("#variants-summary", Static))
        assert expected.verdict[:60] in summary
