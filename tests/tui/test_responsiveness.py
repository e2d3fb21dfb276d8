"""50 queues and 10,000 dead letters: applying a tick, a page of dead letters or a mark-all stays
under 100 ms (the time the app's message loop is busy, i.e. no frame waits longer for it)."""

from __future__ import annotations

import gc
import time

from fleetbox.tui.fake import FakeClient
from fleetbox.tui.screens.dead import PAGE, DeadLettersScreen
from fleetbox.tui.screens.queues import QueuesScreen
from tests.tui.conftest import NOW, connected, make_app, settle

FRAME = 0.100


async def test_fifty_queues_and_ten_thousand_dead_letters() -> None:
    fake = FakeClient.busy(NOW, queues=50, dead=10_000)
    # The fake appliance's 10,000 dead letters live in this process only because it is a test:
    # keep them out of the garbage collector's full scans, as they would be in another process.
    gc.freeze()
    app = make_app(fake)
    async with app.run_test(size=(160, 50)) as pilot:
        await connected(app, pilot, fake)
        queues = app.screen
        assert isinstance(queues, QueuesScreen) and queues.table.row_count == 50
        slowest = 0.0
        for step in range(20):
            for row in fake.rows:
                row["ready"] += step
                row["donePerMinute"] += step
            tick = fake.tick()
            started = time.perf_counter()
            app.take(tick)
            slowest = max(slowest, time.perf_counter() - started)
            await pilot.pause()
        assert slowest < FRAME, f"a tick took {slowest * 1000:.0f} ms"

        await pilot.press("2")
        await settle(app, pilot)
        dead = app.screen
        assert isinstance(dead, DeadLettersScreen)
        slowest = 0.0
        while dead.next_before is not None:
            page = await fake.dead_letters(dead.filter, before=dead.next_before, limit=PAGE)
            started = time.perf_counter()
            dead.apply_page(page, reset=False)
            slowest = max(slowest, time.perf_counter() - started)
            await pilot.pause()
        assert len(dead.letters) == dead.total == 8_000  # every fifth is reviewed, the list shows unreviewed
        assert slowest < FRAME, f"a page took {slowest * 1000:.0f} ms"

        for measured in ("mark_all", "reload"):
            started = time.perf_counter()
            if measured == "mark_all":
                dead.action_mark_all()
            else:
                page = await fake.dead_letters(dead.filter, before=None, limit=PAGE)
                started = time.perf_counter()
                dead.apply_page(page, reset=True)
            elapsed = time.perf_counter() - started
            assert elapsed < FRAME, f"{measured} took {elapsed * 1000:.0f} ms"
            await settle(app, pilot)
            if measured == "mark_all":
                assert len(dead.marks) == 8_000
                assert str(dead.table.get_cell("1", "mark")) == "■"
        started = time.perf_counter()
        await pilot.press("end")
        assert time.perf_counter() - started < 1.0
        gc.unfreeze()
