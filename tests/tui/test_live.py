"""The TUI against a real appliance: real PostgreSQL, the real control socket, the real
UnixSocketClient. Waiting is on what the screen or the database shows, with deadlines."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable, Static, TextArea

from fleetbox.app import Appliance
from fleetbox.tui.app import FleetboxTUI
from fleetbox.tui.client import UnixSocketClient
from fleetbox.tui.screens.alerts import AlertsScreen
from fleetbox.tui.screens.dead import DeadLettersScreen
from fleetbox.tui.screens.job import JobDetailScreen
from fleetbox.tui.screens.queue_detail import QueueDetailScreen
from fleetbox.tui.screens.queues import QueuesScreen
from fleetbox.tui.widgets.modals import ReviewModal
from tests.admin.conftest import WORK, Behaviour
from tests.admin.test_socket import short_dir, start_with_socket  # noqa: F401
from tests.conftest import wait_for
from tests.tui.conftest import seen, settle, until

StartAppliance = Callable[..., Awaitable[Appliance]]
SIZE = (150, 40)


def live_app(path: Path) -> FleetboxTUI:
    """The TUI on the appliance's control socket, reconnecting quickly."""
    return FleetboxTUI(UnixSocketClient(path, operator="alice"), reconnect_delays=(0.2,))


def shown(app: FleetboxTUI, column: str) -> str:
    """The cell of queue ``work`` in the Queues table."""
    screen = app.screen_stack[0]
    assert isinstance(screen, QueuesScreen)
    table: DataTable[object] = screen.table
    return str(table.get_cell(WORK, column)) if WORK in {k.value for k in table.rows} else ""


async def live(app: FleetboxTUI, pilot: Pilot[None]) -> None:
    await until(pilot, lambda: app.state.connected and WORK in app.state.rows, deadline=20)
    await settle(app, pilot)


async def test_queues_update_as_jobs_flow(appliance_factory: StartAppliance, short_dir: Path) -> None:  # noqa: F811
    behaviour = Behaviour()
    path = short_dir / "admin.sock"
    appliance = await start_with_socket(appliance_factory, path, behaviour)
    app = live_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        for _ in range(5):
            await appliance.client.enqueue(WORK, {"mode": "block"})
        # the low pool has 2 workers: two run, three wait
        await until(pilot, lambda: shown(app, "running") == "2" and shown(app, "waiting") == "3", deadline=20)
        assert shown(app, "workers") == "2/2"
        behaviour.release.set()
        await until(pilot, lambda: shown(app, "waiting") == "0" and shown(app, "running") == "0", deadline=20)
        await until(pilot, lambda: app.state.rows[WORK]["donePerMinute"] >= 5, deadline=20)
        assert shown(app, "done") == f"{app.state.rows[WORK]['donePerMinute']:,.0f}"


async def test_a_dead_letter_reviewed_with_notes_is_in_the_database(
    appliance_factory: StartAppliance,
    short_dir: Path,  # noqa: F811
) -> None:
    behaviour = Behaviour()
    path = short_dir / "admin.sock"
    appliance = await start_with_socket(appliance_factory, path, behaviour)
    job_id = (await appliance.client.enqueue(WORK, {"mode": "permanent"})).id

    async def dead() -> bool:
        return (
            await appliance.store.pool.fetchval("SELECT count(*) FROM fleetbox.dead_letters WHERE job_id = $1", job_id)
            == 1
        )

    await wait_for(dead, timeout=20)
    app = live_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        await pilot.press("2")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, DeadLettersScreen)
        assert [d["jobId"] for d in screen.letters.values()] == [job_id]
        await pilot.press("m", *"payload fixed upstream", "ctrl+s")
        await settle(app, pilot)
    row = await appliance.store.pool.fetchrow(
        "SELECT reviewed_at IS NOT NULL AS reviewed, reviewed_by, resolution_notes FROM fleetbox.dead_letters"
        " WHERE job_id = $1",
        job_id,
    )
    assert row is not None
    assert (row["reviewed"], row["reviewed_by"], row["resolution_notes"]) == (True, "alice", "payload fixed upstream")


async def test_a_paused_queue_stops_claiming(appliance_factory: StartAppliance, short_dir: Path) -> None:  # noqa: F811
    behaviour = Behaviour()
    path = short_dir / "admin.sock"
    appliance = await start_with_socket(appliance_factory, path, behaviour)
    app = live_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        await pilot.press("slash", *WORK, "enter")
        await pilot.press("p", "y")
        await settle(app, pilot)
        await until(pilot, lambda: shown(app, "state") == "PAUSED", deadline=20)
        assert await appliance.store.pool.fetchval("SELECT paused FROM fleetbox.queues WHERE name = $1", WORK)
        for _ in range(3):
            await appliance.client.enqueue(WORK, {"mode": "ok"})
        await until(pilot, lambda: shown(app, "waiting") == "3", deadline=20)
        seq = app.state.tick["seq"] if app.state.tick else 0
        # three more samples of the appliance: nothing was claimed in between
        await until(pilot, lambda: app.state.tick is not None and app.state.tick["seq"] >= seq + 3, deadline=20)
        assert shown(app, "waiting") == "3" and shown(app, "running") == "0"
        assert behaviour.done == []
        await pilot.press("p", "y")
        await until(pilot, lambda: len(behaviour.done) == 3, deadline=20)


async def test_the_tui_survives_an_appliance_restart(appliance_factory: StartAppliance, short_dir: Path) -> None:  # noqa: F811
    behaviour = Behaviour()
    path = short_dir / "admin.sock"
    first = await start_with_socket(appliance_factory, path, behaviour)
    app = live_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        screen = app.screen
        assert isinstance(screen, QueuesScreen)
        await first.stop()
        await until(pilot, lambda: screen.has_class("-stale"), deadline=20)
        banner = screen.query_one("#link-banner", Static)
        assert banner.display
        await until(pilot, lambda: "retrying in" in str(banner.content), deadline=20)
        assert str(banner.content).startswith(" ✕ disconnected: ")
        status = str(screen.query_one("#status-line", Static).content)
        assert "✕ disconnected" in status and "db ?" in status  # nothing is known of now
        assert " up " not in status and "db ok" not in status, status
        assert shown(app, "name") == WORK  # the last data stays, dimmed
        await start_with_socket(appliance_factory, path, behaviour)
        await until(pilot, lambda: app.state.connected and not screen.has_class("-stale"), deadline=30)
        await settle(app, pilot)
        assert not screen.query_one("#link-banner").display


async def make_dead(appliance: Appliance, count: int, **data: object) -> list[int]:
    """``count`` jobs on queue work that fail for good; waits until all are dead letters."""
    ids = [(await appliance.client.enqueue(WORK, {"mode": "permanent", **data})).id for _ in range(count)]

    async def all_dead() -> bool:
        return (
            await appliance.store.pool.fetchval(
                "SELECT count(*) FROM fleetbox.dead_letters WHERE job_id = ANY($1::bigint[])", ids
            )
            == count
        )

    await wait_for(all_dead, timeout=30)
    return ids


async def test_the_first_press_of_2_shows_the_dead_letters(appliance_factory: StartAppliance, short_dir: Path) -> None:  # noqa: F811
    behaviour = Behaviour()
    path = short_dir / "admin.sock"
    appliance = await start_with_socket(appliance_factory, path, behaviour)
    await make_dead(appliance, 30)
    app = live_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        # The list takes its time (as 10,000 dead letters do): the table is locked until we let go.
        async with appliance.store.pool.acquire() as conn, conn.transaction():
            await conn.execute("LOCK TABLE fleetbox.dead_letters IN ACCESS EXCLUSIVE MODE")
            await pilot.press("2")
            screen = app.screen
            assert isinstance(screen, DeadLettersScreen)
            await until(pilot, lambda: screen.fetching and screen.table.region.height > 0)
            # The screen is drawn while the page is on its way: status bar, summary, empty table;
            # not covered by Textual's loading indicator (a screen shown first under it was
            # never drawn at all on a real terminal: the first press of 2 did nothing).
            assert not screen.loading
            summary = screen.query_one("#dead-summary", Static)
            assert summary.region.height == 1 and "loading…" in str(summary.content)
        await until(pilot, lambda: len(screen.letters) == 30, deadline=20)
        await settle(app, pilot)
        assert screen.table.region.height > 10 and screen.table.row_count == 30
        assert "30 matching" in str(summary.content) and "loading" not in str(summary.content)


async def test_a_queue_with_jobs_and_no_consumer_is_flagged(appliance_factory: StartAppliance, short_dir: Path) -> None:  # noqa: F811
    behaviour = Behaviour()
    path = short_dir / "admin.sock"
    appliance = await start_with_socket(appliance_factory, path, behaviour)
    # Graph delivery is off in tests: no live appliance can run teams-outbound.
    await appliance.client.enqueue("teams-outbound", {"chatId": "c1", "content": "hi"})
    app = live_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        screen = app.screen
        assert isinstance(screen, QueuesScreen)

        def cell(queue: str, column: str) -> str:
            return str(screen.table.get_cell(queue, column)) if queue in {k.value for k in screen.table.rows} else ""

        await until(pilot, lambda: cell("teams-outbound", "state") == "no app", deadline=20)
        assert cell("teams-outbound", "name") == "⚠ teams-outbound"
        assert (cell(WORK, "name"), cell(WORK, "state")) == (WORK, "run")  # runs here
        assert cell("teams-inbound", "state") == "run"  # no consumer either, but nothing waits
        # From the last row: the filter puts the cursor on its first match, not on the row number
        # it had (found by hand: enter opened the third match).
        screen.table.move_cursor(row=screen.table.row_count - 1)
        assert "teams" not in (screen.selected() or "teams")
        await pilot.press("slash", *"teams", "enter")
        await settle(app, pilot)
        assert screen.table.row_count > 1 and screen.table.cursor_row == 0
        await pilot.press("escape", "slash", *"teams-out", "enter", "enter")
        detail = app.screen
        assert isinstance(detail, QueueDetailScreen)
        await settle(app, pilot)
        status = str(detail.query_one("#queue-state", Static).content)
        assert "0 appliances can run it" in status
        assert (
            "no live appliance can run teams-outbound: 1 job not yet started, for an appliance that has its handler"
            in status
        )


async def test_the_operators_way_through_the_screens(appliance_factory: StartAppliance, short_dir: Path) -> None:  # noqa: F811
    """queues → queue detail → its dead letters → inspect → review with notes → retry → discard → alerts."""
    behaviour = Behaviour()
    path = short_dir / "admin.sock"
    appliance = await start_with_socket(appliance_factory, path, behaviour, monitor={"max_dead_letter_jobs": 2})
    job_ids = await make_dead(appliance, 3)
    await appliance.monitor.check_alerts()  # three open dead letters exceed maxDeadLetterJobs 2

    async def dead_letter(job_id: int) -> Any:
        return await appliance.store.pool.fetchrow(
            "SELECT status, reviewed_by, resolution_notes, retried_job_id FROM fleetbox.dead_letters WHERE job_id = $1",
            job_id,
        )

    app = live_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        # queues → the queue's detail, with its recent errors by class
        await pilot.press("slash", *WORK, "enter", "enter")
        detail = app.screen
        assert isinstance(detail, QueueDetailScreen) and detail.queue == WORK
        await until(pilot, lambda: detail.loaded, deadline=20)
        errors = detail.query_one("#queue-errors", DataTable)
        assert [k.value for k in errors.rows] == ["permanent"]
        assert str(errors.get_cell("permanent", "count")) == "3"

        # → its dead letters
        await pilot.press("d")
        dead = app.screen
        assert isinstance(dead, DeadLettersScreen) and dead.filter.queue == WORK
        await until(pilot, lambda: len(dead.letters) == 3 and not dead.fetching, deadline=20)
        assert sorted(d["jobId"] for d in dead.letters.values()) == sorted(job_ids)

        # → inspect the first: payload and the job's attempts
        await pilot.press("g", "enter")
        job = app.screen
        assert isinstance(job, JobDetailScreen)
        first = job.letter["jobId"]
        await until(pilot, lambda: job.job is not None, deadline=20)
        payload = job.query_one("#job-payload", Static)
        await until(pilot, lambda: '"mode": "permanent"' in seen(payload))  # in full, from the job's detail
        assert "the payload is wrong" in str(job.query_one("#job-errors", Static).content)

        # reviewed elsewhere while it is open: ctrl+r shows it (found by hand: ctrl+r did nothing here)
        await appliance.client.dead_letters.review(job.letter["id"], reviewed_by="bob", resolution_notes="seen")
        await pilot.press("ctrl+r")
        await until(pilot, lambda: "Reviewed by bob" in str(job.query_one("#job-review", Static).content))
        assert "reviewed by bob" in str(job.query_one("#job-title", Static).content)

        # → review with notes
        await pilot.press("m")
        modal = app.screen
        assert isinstance(modal, ReviewModal)
        modal.query_one("#notes", TextArea).text = "bad payload from the importer"
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        row = await dead_letter(first)
        assert (row["reviewed_by"], row["resolution_notes"]) == ("alice", "bad payload from the importer")
        await until(pilot, lambda: "bad payload from the importer" in str(job.query_one("#job-review", Static).content))

        # → retry it: a new job on the queue, the dead letter says which
        await pilot.press("r", "y")
        await settle(app, pilot)
        row = await dead_letter(first)
        assert row["status"] == "retried" and row["retried_job_id"] is not None
        retried_as = row["retried_job_id"]

        async def ran_again() -> bool:  # and failed the same way: a dead letter of its own
            return bool(
                await appliance.store.pool.fetchval(
                    "SELECT count(*) FROM fleetbox.dead_letters WHERE job_id = $1", retried_as
                )
            )

        await wait_for(ran_again, timeout=20)

        # ← back to the list: the retried one is gone from the open dead letters; discard the next
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is dead and first not in {d["jobId"] for d in dead.letters.values()})
        await until(pilot, lambda: not dead.fetching)
        second = dead.letters[dead.highlighted() or 0]["jobId"]
        await pilot.press("D", "y")
        await settle(app, pilot)
        assert (await dead_letter(second))["status"] == "discarded"
        await until(pilot, lambda: second not in {d["jobId"] for d in dead.letters.values()}, deadline=20)

        # → alerts: the dead letters' threshold alert is open
        await pilot.press("3")
        alerts = app.screen
        assert isinstance(alerts, AlertsScreen)
        await until(pilot, lambda: alerts.loaded, deadline=20)
        [alert] = [a for a in alerts.alerts if a["kind"] == "dead_letters"]
        assert alert["status"] == "open" and "exceed maxDeadLetterJobs 2" in alert["message"]
        table = alerts.query_one("#alerts", DataTable)
        assert str(table.get_cell(str(alert["id"]), "status")) == "OPEN"
