"""The TUI on a real appliance with 50 queues and thousands of dead letters (made in one
statement through the SQL function, as the issue did): every queue is listed, the first press of
``2`` opens the list with the right total, pages load as the cursor goes down, mark-all marks
every loaded row. How fast is the benchmark's business (``python -m tests.tui.bench``), not a
test's: tests assert what the screen shows."""

from __future__ import annotations

from pathlib import Path

from fleetbox.errors import ValidationError
from fleetbox.models import Job
from fleetbox.tui.app import FleetboxTUI
from fleetbox.tui.client import UnixSocketClient
from fleetbox.tui.screens.dead import PAGE, DeadLettersScreen
from fleetbox.tui.screens.queues import QueuesScreen
from tests.admin.conftest import admin_section
from tests.admin.test_socket import short_dir  # noqa: F401
from tests.conftest import wait_for
from tests.tui.conftest import settle, until
from tests.tui.test_live import StartAppliance

QUEUES = 50
DEAD = 3_000


async def reject(job: Job) -> None:
    raise ValidationError("rejected")


async def test_fifty_queues_and_thousands_of_dead_letters(appliance_factory: StartAppliance, short_dir: Path) -> None:  # noqa: F811
    path = short_dir / "admin.sock"
    names = [f"bulk-{i:02d}" for i in range(QUEUES)]
    appliance = await appliance_factory(
        handlers=dict.fromkeys(names, reject),
        queues={n: {"tier": "low", "max_attempts": 1} for n in names},
        pools={"low": 8},
        admin=admin_section(socket_enabled=True, socket_path=str(path)),
    )
    await appliance.store.pool.execute(
        "SELECT fleetbox.enqueue('bulk-' || lpad((i % $1)::text, 2, '0'), jsonb_build_object('n', i))"
        " FROM generate_series(1, $2) AS i",
        QUEUES,
        DEAD,
    )

    async def all_dead() -> bool:
        return await appliance.store.pool.fetchval("SELECT count(*) FROM fleetbox.dead_letters") == DEAD

    await wait_for(all_dead, timeout=120)
    app = FleetboxTUI(UnixSocketClient(path), reconnect_delays=(0.2,))
    async with app.run_test(size=(160, 50)) as pilot:
        queues = app.screen
        assert isinstance(queues, QueuesScreen)
        await until(pilot, lambda: set(names) <= {k.value for k in queues.table.rows}, deadline=30)
        await until(pilot, lambda: app.state.tick is not None and app.state.tick["deadUnreviewed"] == DEAD, deadline=30)
        assert str(queues.table.get_cell("bulk-07", "dead")) == f"{DEAD // QUEUES:,}"

        await pilot.press("2")
        dead = app.screen
        assert isinstance(dead, DeadLettersScreen)
        await until(pilot, lambda: dead.total == DEAD and len(dead.letters) == PAGE and not dead.fetching, deadline=30)
        assert dead.table.row_count == PAGE
        # Going down the list loads the next pages; nothing is loaded twice.
        for _ in range(3):
            loaded = len(dead.letters)
            await pilot.press("G")
            await until(pilot, lambda n=loaded: len(dead.letters) > n and not dead.fetching, deadline=30)
        await settle(app, pilot)
        assert len(dead.letters) == dead.table.row_count == 4 * PAGE
        assert len(set(dead.letters)) == 4 * PAGE
        ids = list(dead.letters)
        await pilot.press("a")
        await settle(app, pilot)
        assert dead.marks == set(dead.letters)
        assert {str(dead.table.get_cell(str(i), "mark")) for i in ids} == {"■"}
        assert f"{4 * PAGE:,} marked" in str(dead.query_one("#dead-summary").content)  # type: ignore[attr-defined]
