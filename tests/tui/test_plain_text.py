"""Text the appliance sends (actors, reviewers, notes, error messages, payloads) is shown as plain
text, never read as Textual markup: ``[/bogus]`` does not crash the TUI and ``[@click=app.quit]``
is not a link. Against a real appliance, with such values stored in its database."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
from textual.pilot import Pilot
from textual.widgets import DataTable, Static, TextArea

from fleetbox.errors import ValidationError
from fleetbox.models import Job
from fleetbox.protocol import OPERATOR_HEADER
from fleetbox.tui.app import FleetboxTUI
from fleetbox.tui.client import UnixSocketClient
from fleetbox.tui.screens.dead import DeadLettersScreen
from fleetbox.tui.screens.job import JobDetailScreen
from fleetbox.tui.screens.queue_detail import QueueDetailScreen
from fleetbox.tui.widgets.modals import ReviewModal
from tests.admin.conftest import WORK, admin_section
from tests.admin.test_socket import short_dir  # noqa: F401
from tests.conftest import wait_for
from tests.tui.conftest import seen, settle, until
from tests.tui.test_live import SIZE, StartAppliance, live

BOGUS = "[/bogus]"
CLICK = "[@click=app.quit]quit[/]"
#: what the handler raises, and so every dead letter's error message
ERROR = f"upstream said {BOGUS} {CLICK}"
#: the TUI's operator (and so the default reviewer of its reviews)
OPERATOR = "[@click=app.quit]"
NOTES = f"{BOGUS} fixed {CLICK}"


async def hostile(job: Job) -> None:
    raise ValidationError(ERROR)


def toasts(app: FleetboxTUI) -> str:
    """The text of the notifications on screen (title and message), as rendered."""
    return "\n".join(str(toast.render()) for toast in app.screen.query("Toast"))


async def shown_in_a_toast(app: FleetboxTUI, pilot: Pilot[None], text: str) -> None:
    await until(pilot, lambda: text in toasts(app), deadline=20)


async def test_server_text_is_plain_everywhere(appliance_factory: StartAppliance, short_dir: Path) -> None:  # noqa: F811
    path = short_dir / "admin.sock"
    appliance = await appliance_factory(
        handlers={WORK: hostile},
        queues={WORK: {"tier": "low"}},
        pools={"low": 2},
        admin=admin_section(socket_enabled=True, socket_path=str(path)),
    )
    for _ in range(2):
        await appliance.client.enqueue(WORK, {"note": BOGUS, CLICK: [BOGUS]})

    async def both_dead() -> bool:
        return await appliance.store.pool.fetchval("SELECT count(*) FROM fleetbox.dead_letters") == 2

    await wait_for(both_dead, timeout=30)
    first, second = await appliance.store.pool.fetchval("SELECT array_agg(id ORDER BY id) FROM fleetbox.dead_letters")
    # Someone else reviewed the first one, under a name that is markup.
    other = UnixSocketClient(path, operator=BOGUS)
    await other.review_dead(first, reviewed_by=BOGUS, notes=CLICK)
    await other.close()

    app = FleetboxTUI(UnixSocketClient(path, operator=OPERATOR), reconnect_delays=(0.2,))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await live(app, pilot)

        # The dead-letter list: error messages and reviewers as they are.
        await pilot.press("2", "v", "v")  # reviewed or not
        dead = app.screen
        assert isinstance(dead, DeadLettersScreen) and dead.filter.reviewed is None
        await until(pilot, lambda: len(dead.letters) == 2, deadline=20)
        await settle(app, pilot)
        table = dead.table
        assert str(table.get_cell(str(first), "review")) == f"✎ {BOGUS}"
        assert ERROR in str(table.get_cell(str(second), "error"))
        assert f"✎ {BOGUS}" in seen(table) and "upstream said [/bogus] [@c" in seen(table)

        # The job detail: payload, errors, review with its history.
        await pilot.press("end", "enter")
        job = app.screen
        assert isinstance(job, JobDetailScreen) and job.letter["id"] == first
        await until(pilot, lambda: job.job is not None, deadline=20)
        await settle(app, pilot)
        assert BOGUS in seen(job.query_one("#job-payload")) and "[@click=app.quit]quit[/]" in seen(
            job.query_one("#job-payload")
        )
        await pilot.press("l")
        assert ERROR in seen(job.query_one("#job-errors"))
        await pilot.press("l", "l")
        review = job.query_one("#job-review", Static)
        assert f"Reviewed by {BOGUS}" in seen(review) and CLICK in seen(review)
        assert f"{BOGUS} reviewed: {CLICK}" in seen(review)  # the audit log's history
        await pilot.click(review)  # text that would be a link if it were markup
        assert app.is_running

        # Reviewing as an operator whose name is markup, with notes that are markup.
        await pilot.press("left_square_bracket")
        assert job.letter["id"] == second
        await pilot.press("m")
        modal = app.screen
        assert isinstance(modal, ReviewModal)
        modal.query_one("#notes", TextArea).text = NOTES
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        await shown_in_a_toast(app, pilot, f"Dead letter {second} reviewed by {OPERATOR}")
        row = await appliance.store.pool.fetchrow(
            "SELECT reviewed_by, resolution_notes FROM fleetbox.dead_letters WHERE id = $1", second
        )
        assert row is not None and (row["reviewed_by"], row["resolution_notes"]) == (OPERATOR, NOTES)
        await until(pilot, lambda: NOTES in seen(job.query_one("#job-review")), deadline=20)

        # Another operator, named in markup, pauses the queue: the notice names them as they are.
        async with (
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as session,
            session.post(f"http://fleetbox/api/queue/{WORK}/pause", headers={OPERATOR_HEADER: BOGUS}) as response,
        ):
            assert response.status == 200
        await shown_in_a_toast(app, pilot, f"{BOGUS} paused {WORK}")

        # The queue detail's recent errors show the message as it is.
        await pilot.press("1", "slash", *WORK, "enter", "enter")
        detail = app.screen
        assert isinstance(detail, QueueDetailScreen)
        await until(pilot, lambda: detail.loaded, deadline=20)
        await settle(app, pilot)
        errors = detail.query_one("#queue-errors", DataTable)
        assert "upstream said [/bogus] [@click" in seen(errors)
        assert app.is_running


#: what a handler's error may say: a terminal's clear-screen and colour sequences, a C1 control
#: introducer, a bell, and markup
CONTROL_ERROR = "boom \x1b[2J\x1b[31mred \x9b31m bell\x07 [/bogus]"
CONTROL_PAYLOAD = {
    "esc": "\x1b]0;owned\x07",
    "c1": "\x9b2J",
    "nan": "NaN",
    "big": 10**40,
    "markup": "[@click=app.quit]quit[/]",
    "deep": {"a": json.loads("[" * 60 + "1" + "]" * 60)},  # within the 64-level limit
}


async def controlled(job: Job) -> None:
    raise ValidationError(CONTROL_ERROR)


async def test_control_characters_are_shown_as_escapes_never_sent_to_the_terminal(
    appliance_factory: StartAppliance,
    short_dir: Path,  # noqa: F811
) -> None:
    path = short_dir / "admin.sock"
    appliance = await appliance_factory(
        handlers={WORK: controlled},
        queues={WORK: {"tier": "low"}},
        pools={"low": 2},
        admin=admin_section(socket_enabled=True, socket_path=str(path)),
    )
    await appliance.client.enqueue(WORK, CONTROL_PAYLOAD)

    async def dead() -> bool:
        return await appliance.store.pool.fetchval("SELECT count(*) FROM fleetbox.dead_letters") == 1

    await wait_for(dead, timeout=30)
    app = FleetboxTUI(UnixSocketClient(path, operator="alice"), reconnect_delays=(0.2,))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await live(app, pilot)
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, DeadLettersScreen)
        await until(pilot, lambda: len(screen.letters) == 1, deadline=20)
        await settle(app, pilot)
        on_screen = seen(screen.table)
        assert "boom \\x1b[2J\\x1b[31mred" in on_screen and "\x1b" not in on_screen

        await pilot.press("enter")
        job = app.screen
        assert isinstance(job, JobDetailScreen)
        await until(pilot, lambda: job.job is not None, deadline=20)
        await settle(app, pilot)
        payload = seen(job.query_one("#job-payload"))
        # JSON's own escapes for the controls; the markup and the number as they are
        assert "\\u001b]0;owned\\u0007" in payload and "\\u009b2J" in payload
        assert "[@click=app.quit]quit[/]" in payload and str(10**40) in payload
        await pilot.press("l")
        errors = seen(job.query_one("#job-errors"))
        assert "boom \\x1b[2J\\x1b[31mred \\x9b31m bell\\x07 [/bogus]" in errors
        for widget in ("#job-title", "#job-timeline", "#job-review"):
            assert not any(c in seen(job.query_one(widget)) for c in "\x1b\x9b\x07")
        assert app.is_running
