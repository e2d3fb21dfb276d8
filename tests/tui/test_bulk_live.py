"""Bulk work on dead letters at scale, against a real appliance: review, retry or discard every
dead letter matching the filter (not only the loaded rows), behind the count typed and checked by
the appliance; the dead letters grouped by error class and message, and acting on a group."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, TextArea

from fleetbox.app import Appliance
from fleetbox.errors import ValidationError
from fleetbox.models import Job
from fleetbox.tui.client import DeadFilter
from fleetbox.tui.screens.dead import PAGE, DeadLettersScreen
from fleetbox.tui.widgets.modals import GroupsModal, ReviewModal, TypedConfirmModal
from tests.admin.conftest import OTHER, WORK, admin_section
from tests.admin.test_socket import short_dir  # noqa: F401
from tests.conftest import wait_for
from tests.tui.conftest import settle, until
from tests.tui.test_live import SIZE, StartAppliance, live, live_app


async def reject(job: Job) -> None:
    raise ValidationError(str(job.data["why"]))


@pytest.fixture
async def served(appliance_factory: StartAppliance, short_dir: Path) -> tuple[Appliance, Path]:  # noqa: F811
    path = short_dir / "admin.sock"
    appliance = await appliance_factory(
        handlers={WORK: reject, OTHER: reject},
        queues={WORK: {"tier": "low"}, OTHER: {"tier": "low"}},
        pools={"low": 4},
        admin=admin_section(socket_enabled=True, socket_path=str(path)),
    )
    return appliance, path


async def make_dead(appliance: Appliance, queue: str, why: str, count: int) -> None:
    """``count`` dead letters on ``queue`` failing with ``why``, made in one SQL statement."""
    before = await appliance.store.pool.fetchval("SELECT count(*) FROM fleetbox.dead_letters")
    await appliance.store.pool.execute(
        "SELECT fleetbox.enqueue($1, jsonb_build_object('why', $2::text, 'n', i)) FROM generate_series(1, $3) AS i",
        queue,
        why,
        count,
    )

    async def all_dead() -> bool:
        return await appliance.store.pool.fetchval("SELECT count(*) FROM fleetbox.dead_letters") == before + count

    await wait_for(all_dead, timeout=60)


async def count(appliance: Appliance, where: str, *args: object) -> int:
    return int(await appliance.store.pool.fetchval(f"SELECT count(*) FROM fleetbox.dead_letters WHERE {where}", *args))


async def test_review_and_discard_everything_matching_not_only_the_loaded_rows(
    served: tuple[Appliance, Path],
) -> None:
    appliance, path = served
    await make_dead(appliance, WORK, "bad row", PAGE + 50)
    await make_dead(appliance, OTHER, "bad row", 2)
    app = live_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        await app.open_dead_letters(DeadFilter(queue=WORK))
        dead = app.screen
        assert isinstance(dead, DeadLettersScreen)
        await until(pilot, lambda: dead.total == PAGE + 50 and not dead.fetching, deadline=20)
        assert len(dead.letters) == PAGE  # one page loaded

        # review all matching: notes first, then the count typed
        await pilot.press("M")
        await until(pilot, lambda: isinstance(app.screen, ReviewModal))
        app.screen.query_one("#notes", TextArea).text = "importer sent empty rows"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, TypedConfirmModal))
        assert app.screen.expected == str(PAGE + 50)  # type: ignore[attr-defined]
        await pilot.press(*str(PAGE + 50), "enter")
        await settle(app, pilot)
        reviewed = "queue = $1 AND reviewed_by = 'alice' AND resolution_notes = 'importer sent empty rows'"
        assert await count(appliance, reviewed, WORK) == PAGE + 50
        assert await count(appliance, "queue = $1 AND reviewed_at IS NULL", OTHER) == 2

        # the reviewed ones are listed with v; discard all of them
        await pilot.press("v")
        await until(pilot, lambda: dead.filter.reviewed is True and dead.total == PAGE + 50, deadline=20)
        await until(pilot, lambda: not dead.fetching, deadline=20)
        await pilot.press("X")
        await until(pilot, lambda: isinstance(app.screen, TypedConfirmModal))
        await pilot.press(*str(PAGE + 50), "enter")
        await settle(app, pilot)
        assert await count(appliance, "queue = $1 AND status = 'discarded'", WORK) == PAGE + 50
        assert await count(appliance, "status = 'open'") == 2  # the other queue's
        await until(pilot, lambda: dead.total == 0 and not dead.letters, deadline=20)


async def test_dead_letters_grouped_by_error_and_a_group_acted_on(served: tuple[Appliance, Path]) -> None:
    appliance, path = served
    await make_dead(appliance, WORK, "token expired", 5)
    await make_dead(appliance, OTHER, "token expired", 1)
    await make_dead(appliance, WORK, "mailbox not found", 3)
    app = live_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        await pilot.press("2")
        dead = app.screen
        assert isinstance(dead, DeadLettersScreen)
        await until(pilot, lambda: dead.total == 9 and not dead.fetching, deadline=20)
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, GroupsModal))
        modal = app.screen
        assert isinstance(modal, GroupsModal)
        table = modal.query_one("#groups", DataTable)
        shown = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert [(row[0], row[2], row[3]) for row in shown] == [
            ("6", "ValidationError: token expired (permanent error: not retried)", f"{OTHER}, {WORK}"),
            ("3", "ValidationError: mailbox not found (permanent error: not retried)", WORK),
        ]
        # enter lists a group
        await pilot.press("down", "enter")
        await until(pilot, lambda: app.screen is dead and dead.total == 3 and not dead.fetching, deadline=20)
        assert {d["error"] for d in dead.letters.values()} == {shown[1][2]}
        # a group discarded from the groups: every one of it, after its count is typed
        await pilot.press("escape")  # back to every dead letter
        await until(pilot, lambda: dead.total == 9 and not dead.fetching, deadline=20)
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, GroupsModal))
        await pilot.press("D")
        await until(pilot, lambda: isinstance(app.screen, TypedConfirmModal))
        assert app.screen.expected == "6"  # type: ignore[attr-defined]
        await pilot.press("6", "enter")
        await settle(app, pilot)
        assert await count(appliance, "status = 'discarded' AND error LIKE '%token expired%'") == 6
        assert await count(appliance, "status = 'open' AND error LIKE '%mailbox not found%'") == 3
