"""The TUI's own behaviour on scripted data (a FakeClient): the cursor stays put while ticks
reorder the queues, nothing repaints under a dialog, the help and the palette come from the
bindings, the job detail's tabs and stepping, the interval keys. Everything that acts on an
appliance is tested against a real one (test_live, test_actions_live, test_plain_text,
test_scale)."""

from __future__ import annotations

from rich.text import Text
from textual.command import CommandPalette
from textual.widgets import DataTable, Static

from fleetbox.tui.client import DeadFilter
from fleetbox.tui.fake import FakeClient
from fleetbox.tui.screens.alerts import AlertsScreen
from fleetbox.tui.screens.dead import DeadLettersScreen
from fleetbox.tui.screens.job import JobDetailScreen
from fleetbox.tui.screens.queue_detail import QueueDetailScreen
from fleetbox.tui.screens.queues import QueuesScreen
from fleetbox.tui.widgets.modals import ConfirmModal, HelpScreen
from tests.tui.conftest import connected, make_app, settle, until


def cell(table: DataTable[Text], row: str, column: str) -> str:
    return str(table.get_cell(row, column))


def calls(fake: FakeClient, name: str) -> list[object]:
    return [args for call, args in fake.calls if call == name]


async def test_queue_rows_update_in_place_and_the_cursor_stays(fake: FakeClient) -> None:
    app = make_app(fake)
    async with app.run_test(size=(140, 36)) as pilot:
        await connected(app, pilot, fake)
        screen = app.screen
        assert isinstance(screen, QueuesScreen)
        table = screen.table
        assert table.row_count == 8
        await pilot.press("down", "down", "down")
        assert screen.selected() == "outlook-inbound"
        for step in range(3):
            # the appliance lists the queues in another order each time, with new figures
            fake.rows.reverse()
            for row in fake.rows:
                row["waiting"] += 100 * (step + 1)
            fake.push_tick()
            await until(pilot, lambda s=step: app.state.tick is not None and app.state.tick["seq"] == 2 + s)
            assert screen.selected() == "outlook-inbound"
            assert table.cursor_row == 3
        ready = next(r["waiting"] for r in fake.rows if r["name"] == "outlook-inbound")
        assert cell(table, "outlook-inbound", "waiting") == f"{ready:,}"


async def test_the_appliance_can_say_read_only(fake: FakeClient) -> None:
    fake.info["readOnly"] = True
    app = make_app(fake)
    async with app.run_test(size=(140, 36)) as pilot:
        await connected(app, pilot, fake)
        assert app.read_only
        await pilot.press("p")
        assert isinstance(app.screen, QueuesScreen)


async def test_a_stopping_appliance_is_shown_as_stopping(fake: FakeClient) -> None:
    app = make_app(fake)
    async with app.run_test(size=(160, 36)) as pilot:
        await connected(app, pilot, fake)
        line = app.screen.query_one("#status-line", Static)
        assert "stopping" not in str(line.content)
        tick = fake.tick()
        tick["draining"] = True
        fake.push(tick)
        await until(pilot, lambda: "◐ stopping: finishing its jobs" in str(line.content))


async def test_discard_asks_first(fake: FakeClient) -> None:
    app = make_app(fake)
    async with app.run_test(size=(140, 36)) as pilot:
        await connected(app, pilot, fake)
        await pilot.press("2")
        await settle(app, pilot)
        await pilot.press("D", "n")
        assert calls(fake, "discard_dead") == []
        await pilot.press("D", "y")
        await settle(app, pilot)
        assert calls(fake, "discard_dead") == [39]


async def test_job_detail_tabs_navigation_and_actions(fake: FakeClient) -> None:
    app = make_app(fake)
    async with app.run_test(size=(140, 36)) as pilot:
        await connected(app, pilot, fake)
        await pilot.press("2")
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        job = app.screen
        assert isinstance(job, JobDetailScreen)
        assert job.letter["id"] == 39 and job.job is not None
        await pilot.press("right_square_bracket")
        await settle(app, pilot)
        assert job.letter["id"] == 38
        await pilot.press("l", "l")
        assert str(job.query_one("#job-timeline", Static).render()).count("attempt") >= 6
        await pilot.press("m", *"checked", "ctrl+s")
        await settle(app, pilot)
        await pilot.press("m", *"again: ", "ctrl+s")  # the notes so far are filled in; add in front
        await settle(app, pilot)
        assert calls(fake, "review_dead") == [(38, "alice", "checked"), (38, "alice", "again: checked")]
        review = str(job.query_one("#job-review", Static).render())
        assert "Reviewed by alice" in review
        # Every review stays in the history, not only the last one.
        assert "alice reviewed: checked\n" in review and "alice reviewed: again: checked" in review
        await pilot.press("r", "y")
        await settle(app, pilot)
        assert calls(fake, "retry_dead") == [38]
        assert job.check_action("discard", ()) is None  # retried: no longer open
        await pilot.press("escape")
        await settle(app, pilot)
        assert isinstance(app.screen, DeadLettersScreen)
        assert 38 not in app.screen.letters


async def test_help_is_generated_from_the_bindings(fake: FakeClient) -> None:
    app = make_app(fake)
    async with app.run_test(size=(140, 36)) as pilot:
        await connected(app, pilot, fake)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = str(app.screen.query_one("#help-keys", Static).render())
        assert "Pause or resume the queue (asks first)" in keys
        assert "The dead-letter list" in keys
        await pilot.press("escape")
        assert isinstance(app.screen, QueuesScreen)


async def test_command_palette_pauses_a_queue_by_name(fake: FakeClient) -> None:
    app = make_app(fake)
    async with app.run_test(size=(140, 36)) as pilot:
        await connected(app, pilot, fake)
        await pilot.press("colon")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"pause sync")
        await until(
            pilot, lambda: "pause sync" in str(app.screen.query_one("CommandList").get_option_at_index(0).prompt)
        )
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        await settle(app, pilot)
        assert calls(fake, "pause") == ["sync"]


async def test_queue_detail_and_its_errors_lead_to_dead_letters(fake: FakeClient) -> None:
    app = make_app(fake)
    async with app.run_test(size=(140, 40)) as pilot:
        await connected(app, pilot, fake)
        await pilot.press("enter")
        await settle(app, pilot)
        detail = app.screen
        assert isinstance(detail, QueueDetailScreen) and detail.queue == "notifications"
        assert [e["errorClass"] for e in detail.errors]
        first = detail.errors[0]["errorClass"]
        await pilot.press("enter")
        await settle(app, pilot)
        dead = app.screen
        assert isinstance(dead, DeadLettersScreen)
        assert dead.filter == DeadFilter(queue="notifications", error_class=first, reviewed=None)
        await pilot.press("1")
        assert isinstance(app.screen, QueueDetailScreen)  # the queues mode kept its drill-down


async def test_alerts_open_first(fake: FakeClient) -> None:
    app = make_app(fake)
    async with app.run_test(size=(140, 36)) as pilot:
        await connected(app, pilot, fake)
        await pilot.press("3")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, AlertsScreen)
        assert [a["status"] for a in screen.alerts] == ["open", "resolved"]


async def test_no_repaint_under_a_dialog(fake: FakeClient) -> None:
    app = make_app(fake)
    async with app.run_test(size=(140, 36)) as pilot:
        await connected(app, pilot, fake)
        screen = app.screen
        assert isinstance(screen, QueuesScreen)
        before = cell(screen.table, "notifications", "waiting")
        await pilot.press("p")
        fake.rows[2]["waiting"] = 1
        fake.push_tick()
        await until(pilot, lambda: app.state.rows["notifications"]["waiting"] == 1)
        assert cell(screen.table, "notifications", "waiting") == before
        await pilot.press("n")
        await until(pilot, lambda: cell(screen.table, "notifications", "waiting") == "1")


async def test_interval_keys_subscribe(fake: FakeClient) -> None:
    app = make_app(fake)
    async with app.run_test(size=(140, 36)) as pilot:
        await connected(app, pilot, fake)
        await pilot.press("minus")
        await settle(app, pilot)
        await pilot.press("minus", "plus")
        await settle(app, pilot)
        assert calls(fake, "subscribe")[-1] == 2000
        assert app.interval_ms == 2000


def test_limiter_cells_say_what_the_limit_is() -> None:
    from fleetbox.tui.widgets.text import DASH, limit_text

    base = {"resource": "r", "available": None, "pausedUntil": None, "waits": 0, "throttled": 0}
    assert limit_text({**base, "ratePerSecond": 50.0, "available": 1.0}) == "50/s 1"
    outlook = {**base, "ratePerSecond": 10_000 / 600, "concurrency": 4, "per": "mailbox"}
    assert limit_text(outlook) == "16.7/s 4 per mailbox"
    # Outlook's four at once across all mailboxes, and the requests holding slots now
    assert limit_text({**outlook, "appConcurrency": 4, "inUse": 3}) == "16.7/s 4 per mailbox 4 at once 3 busy"
    assert limit_text({**base, "ratePerSecond": None, "concurrency": 5, "per": "appliance"}) == "5 at once"
    assert limit_text({**base, "ratePerSecond": None}) == DASH
