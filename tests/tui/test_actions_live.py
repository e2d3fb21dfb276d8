"""The TUI's guarded actions against a real appliance over the real socket: a typed name before
a clear, a typed count before a retry of everything matching (the appliance refusing a count that
drifted), marked rows retried, the dead-letter filter, read-only, and notices of what others do.
What the tests check is what the database and the screen say."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from textual.widgets import Input, Label

from fleetbox.app import Appliance
from fleetbox.protocol import OPERATOR_HEADER
from fleetbox.tui.client import DeadFilter
from fleetbox.tui.screens.dead import DeadLettersScreen
from fleetbox.tui.screens.queues import QueuesScreen
from fleetbox.tui.widgets.modals import ConfirmModal, TypedConfirmModal
from tests.admin.conftest import OTHER, WORK, Behaviour, admin_section
from tests.admin.test_socket import short_dir  # noqa: F401
from tests.tui.conftest import settle, until
from tests.tui.test_live import SIZE, StartAppliance, live, live_app, make_dead


@pytest.fixture
async def served(appliance_factory: StartAppliance, short_dir: Path) -> tuple[Appliance, Path]:  # noqa: F811
    behaviour = Behaviour()
    path = short_dir / "admin.sock"
    appliance = await appliance_factory(
        handlers={WORK: behaviour.handle, OTHER: behaviour.handle},
        queues={WORK: {"tier": "low"}, OTHER: {"tier": "low"}},
        pools={"low": 2},
        admin=admin_section(socket_enabled=True, socket_path=str(path)),
    )
    return appliance, path


async def statuses(appliance: Appliance) -> dict[int, str]:
    rows = await appliance.store.pool.fetch("SELECT job_id, status FROM fleetbox.dead_letters")
    return {r["job_id"]: r["status"] for r in rows}


async def post(path: Path, url: str, operator: str) -> None:
    """A POST to the control socket, as another operator would send it."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as session,
        session.post(f"http://fleetbox{url}", headers={OPERATOR_HEADER: operator}) as response,
    ):
        assert response.status == 200


async def test_clear_needs_the_queue_name_typed(served: tuple[Appliance, Path]) -> None:
    appliance, path = served
    await post(path, f"/api/queue/{WORK}/pause", "bob")  # the jobs stay waiting
    for _ in range(4):
        await appliance.client.enqueue(WORK, {"mode": "ok"})
    app = live_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        await pilot.press("slash", *WORK, "enter", "C")
        modal = app.screen
        assert isinstance(modal, TypedConfirmModal)
        await pilot.press(*"wor", "enter")
        assert app.screen is modal
        assert "not 'work'" in str(modal.query_one("#typed-error", Label).render())
        assert await appliance.store.pool.fetchval("SELECT count(*) FROM fleetbox.jobs WHERE queue = $1", WORK) == 4
        await pilot.press("k", "enter")
        await settle(app, pilot)
        assert await appliance.store.pool.fetchval("SELECT count(*) FROM fleetbox.jobs WHERE queue = $1", WORK) == 0


async def test_read_only_dims_and_refuses_every_action(served: tuple[Appliance, Path]) -> None:
    appliance, path = served
    await make_dead(appliance, 2)
    app = live_app(path)
    app.read_only_flag = True
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        screen = app.screen
        assert screen.check_action("pause", ()) is None and screen.check_action("clear", ()) is None
        await pilot.press("p", "C")
        assert isinstance(app.screen, QueuesScreen)
        await pilot.press("2")
        dead = app.screen
        assert isinstance(dead, DeadLettersScreen)
        await until(pilot, lambda: len(dead.letters) == 2 and not dead.fetching, deadline=20)
        await pilot.press("space", "r", "R", "m", "D")
        await settle(app, pilot)
        assert app.screen is dead  # no dialog opened
    assert set((await statuses(appliance)).values()) == {"open"}
    assert not await appliance.store.pool.fetchval("SELECT paused FROM fleetbox.queues WHERE name = $1", WORK)
    assert not await appliance.store.pool.fetchval(
        "SELECT count(*) FROM fleetbox.dead_letters WHERE reviewed_by IS NOT NULL"
    )


async def test_retry_marked_dead_letters(served: tuple[Appliance, Path]) -> None:
    appliance, path = served
    await make_dead(appliance, 3)
    app = live_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        await pilot.press("2")
        dead = app.screen
        assert isinstance(dead, DeadLettersScreen)
        await until(pilot, lambda: len(dead.letters) == 3 and not dead.fetching, deadline=20)
        marked = [d["jobId"] for d in list(dead.letters.values())[:2]]
        await pilot.press("space", "space")
        marks = set(dead.marks)
        # marks survive a reload (new dead letters loaded with ctrl+r, or back from a job)
        await pilot.press("ctrl+r")
        await until(pilot, lambda: not dead.fetching, deadline=20)
        await settle(app, pilot)
        assert dead.marks == marks and len(marks) == 2
        assert {str(dead.table.get_cell(str(i), "mark")) for i in marks} == {"■"}
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("y")
        await settle(app, pilot)
        assert {j: s for j, s in (await statuses(appliance)).items() if j in marked} == dict.fromkeys(marked, "retried")
        await until(pilot, lambda: not dead.marks and not {d["jobId"] for d in dead.letters.values()} & set(marked))


async def test_retry_all_matching_types_the_count_and_the_appliance_checks_it(
    served: tuple[Appliance, Path],
) -> None:
    appliance, path = served
    jobs = await make_dead(appliance, 3)
    app = live_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        await app.open_dead_letters(DeadFilter(queue=WORK))
        await settle(app, pilot)
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, TypedConfirmModal))
        modal = app.screen
        assert isinstance(modal, TypedConfirmModal) and modal.expected == "3"
        await pilot.press("9", "enter")
        assert app.screen is modal  # a wrong count does nothing
        # A dead letter arrives while the operator types: the appliance refuses the stale count.
        jobs += await make_dead(appliance, 1)
        await pilot.press("backspace", "3", "enter")
        await settle(app, pilot)
        assert set((await statuses(appliance)).values()) == {"open"}  # nothing retried
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, TypedConfirmModal))
        await pilot.press("4", "enter")
        await settle(app, pilot)
        # (the new jobs fail again, as dead letters of their own)
        assert {j: s for j, s in (await statuses(appliance)).items() if j in jobs} == dict.fromkeys(jobs, "retried")


async def test_filter_by_queue_error_and_text_then_esc_clears_it(served: tuple[Appliance, Path]) -> None:
    appliance, path = served
    work = await make_dead(appliance, 2)
    await appliance.client.enqueue(OTHER, {"mode": "permanent"})
    await until_dead(appliance, 3)
    app = live_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await live(app, pilot)
        await pilot.press("2")
        dead = app.screen
        assert isinstance(dead, DeadLettersScreen)
        await until(pilot, lambda: len(dead.letters) == 3 and not dead.fetching, deadline=20)
        await pilot.press("slash")
        box = dead.query_one("#dead-filter", Input)
        assert box.has_focus
        box.value = ""
        await pilot.press(*f"queue:{WORK} error:permanent reviewed:all payload is wrong", "enter")
        await settle(app, pilot)
        assert dead.filter == DeadFilter(WORK, "permanent", "payload is wrong", None)
        await until(pilot, lambda: sorted(d["jobId"] for d in dead.letters.values()) == sorted(work), deadline=20)
        await pilot.press("slash")
        box.value = ""
        await pilot.press(*f"queue:{OTHER} no such message", "enter")
        await until(pilot, lambda: not dead.letters and not dead.fetching, deadline=20)
        await pilot.press("escape")
        await until(pilot, lambda: len(dead.letters) == 3 and not dead.fetching, deadline=20)
        assert dead.filter == DeadFilter(reviewed=None)
        await pilot.press("slash", *" reviewed:maybe", "enter")
        assert dead.filter.reviewed is None  # refused, with a notice naming the qualifier


async def until_dead(appliance: Appliance, count: int) -> None:
    from tests.conftest import wait_for

    async def enough() -> bool:
        return await appliance.store.pool.fetchval("SELECT count(*) FROM fleetbox.dead_letters") >= count

    await wait_for(enough, timeout=30)


async def test_what_others_do_is_announced_and_new_dead_letters_are_not_slipped_in(
    served: tuple[Appliance, Path],
) -> None:
    appliance, path = served
    await make_dead(appliance, 1)
    app = live_app(path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await live(app, pilot)
        await pilot.press("2")
        dead = app.screen
        assert isinstance(dead, DeadLettersScreen)
        await until(pilot, lambda: len(dead.letters) == 1 and not dead.fetching, deadline=20)
        await make_dead(appliance, 2)
        summary = dead.query_one("#dead-summary")
        await until(pilot, lambda: "2 new dead letters: ctrl+r loads" in str(summary.render()), deadline=20)
        assert len(dead.letters) == 1  # not under the cursor
        await pilot.press("ctrl+r")
        await until(pilot, lambda: len(dead.letters) == 3 and not dead.fetching, deadline=20)
        # discarded by someone else: the list says its rows are out of date (found by hand: after
        # discards in the dashboard it showed them, and its count, as before)
        first = next(iter(dead.letters.values()))
        await post(path, f"/api/queue/dead-letter/dl-{first['id']}/discard", "carol")
        await until(pilot, lambda: "1 changed elsewhere: ctrl+r loads" in str(summary.render()), deadline=20)
        await pilot.press("ctrl+r")
        await until(pilot, lambda: len(dead.letters) == 2 and not dead.fetching, deadline=20)
        assert "changed elsewhere" not in str(summary.render())
        await post(path, f"/api/queue/{OTHER}/pause", "bob")
        await until(
            pilot, lambda: any("bob paused other" in str(t.render()) for t in app.screen.query("Toast")), deadline=20
        )
