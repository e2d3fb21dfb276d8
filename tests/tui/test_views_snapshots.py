"""SVG snapshots of the schedules view, a job's dependencies (the dead-letter detail's tab and the
job graph screen) and the retry-variant report, drawn from the FakeClient like every other
snapshot (tests/tui/test_snapshots.py)."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from fleetbox.tui.fake import FakeClient
from tests.tui.conftest import until
from tests.tui.test_snapshots import SnapCompare, shoot


def test_schedules(snap_compare: SnapCompare) -> None:
    assert shoot(snap_compare, keys=["4", "down"], size=(140, 40))


def test_schedule_run_now_confirmation(snap_compare: SnapCompare) -> None:
    async def ask(app: Any, pilot: Pilot[None], fake: FakeClient) -> None:
        screen = app.screen
        await until(pilot, lambda: screen.detail_of == "hourly-digest")
        await pilot.press("r")

    assert shoot(snap_compare, keys=["4"], then=ask)


def test_job_detail_dependencies(snap_compare: SnapCompare) -> None:
    async def show(app: Any, pilot: Pilot[None], fake: FakeClient) -> None:
        app.screen.query_one("TabbedContent").active = "deps"

    assert shoot(snap_compare, keys=["2", "enter"], then=show)


def test_job_graph(snap_compare: SnapCompare) -> None:
    async def open_child(app: Any, pilot: Pilot[None], fake: FakeClient) -> None:
        app.screen.query_one("TabbedContent").active = "deps"
        await pilot.pause()
        app.screen.query_one("#job-deps").focus()
        await pilot.press("down", "enter")

    assert shoot(snap_compare, keys=["2", "enter"], then=open_child)


def test_retry_variants(snap_compare: SnapCompare) -> None:
    assert shoot(snap_compare, keys=["enter", "v"])
