"""SVG snapshots of every screen and dialog (pytest-textual-snapshot), drawn from a FakeClient
with a frozen clock, no cursor blink and no animations at fixed terminal sizes. A difference
fails; `pytest --snapshot-update` accepts new drawings after a human has looked at the report."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest
from textual.pilot import Pilot

from fleetbox.tui.client import DeadFilter
from fleetbox.tui.fake import FakeClient
from fleetbox.tui.widgets.modals import GroupsModal, TypedConfirmModal
from tests.tui.conftest import NOW, FrozenClock, connected, make_app, settle, until

SnapCompare = Callable[..., bool]
WIDE = (140, 36)


def shoot(
    snap_compare: SnapCompare,
    *,
    keys: Iterable[str] = (),
    size: tuple[int, int] = WIDE,
    then: Callable[[Any, Pilot[None], FakeClient], Awaitable[None]] | None = None,
    settle_after: bool = True,
    **app_kwargs: Any,
) -> bool:
    """Connect a TUI to a busy fake appliance, press ``keys``, run ``then``, and compare."""
    fake = FakeClient.busy(NOW)
    app = make_app(fake, **app_kwargs)

    async def before(pilot: Pilot[None]) -> None:
        await connected(app, pilot, fake)
        for key in keys:
            await pilot.press(key)
            await settle(app, pilot)
        if then is not None:
            await then(app, pilot, fake)
        if settle_after:
            await settle(app, pilot)

    return snap_compare(app, terminal_size=size, run_before=before)


def test_queues(snap_compare: SnapCompare) -> None:
    assert shoot(snap_compare)


def test_queues_with_a_paused_queue_and_a_filter(snap_compare: SnapCompare) -> None:
    async def pause(app: Any, pilot: Pilot[None], fake: FakeClient) -> None:
        await fake.pause("teams-inbound")
        fake.push_tick()
        await pilot.press("slash", *"in")

    assert shoot(snap_compare, then=pause)


def test_queues_narrow(snap_compare: SnapCompare) -> None:
    assert shoot(snap_compare, size=(80, 24))


def test_queues_read_only(snap_compare: SnapCompare) -> None:
    assert shoot(snap_compare, read_only=True)


def test_queues_disconnected(snap_compare: SnapCompare) -> None:
    clock = FrozenClock()

    async def drop(app: Any, pilot: Pilot[None], fake: FakeClient) -> None:
        fake.reachable = False
        app.reconnect_delays = (3600.0,)
        fake.drop()
        while app.state.connected:
            await pilot.pause()
        clock.advance(42)
        app.screen.refresh_header()

    assert shoot(snap_compare, then=drop, clock=clock)


def test_queue_detail(snap_compare: SnapCompare) -> None:
    assert shoot(snap_compare, keys=["down", "enter"], size=(140, 40))


def test_pause_confirmation(snap_compare: SnapCompare) -> None:
    assert shoot(snap_compare, keys=["p"])


def test_clear_typed_confirmation(snap_compare: SnapCompare) -> None:
    assert shoot(snap_compare, keys=["C", "n", "o"])


def test_help(snap_compare: SnapCompare) -> None:
    assert shoot(snap_compare, keys=["question_mark"], size=(140, 44))


def test_command_palette(snap_compare: SnapCompare) -> None:
    assert shoot(snap_compare, keys=["colon", "p", "a", "u", "s", "e", " ", "s", "y"])


def test_dead_letters_with_marks(snap_compare: SnapCompare) -> None:
    assert shoot(snap_compare, keys=["2", "space", "down", "space"])


def test_dead_letters_filtered(snap_compare: SnapCompare) -> None:
    async def filtered(app: Any, pilot: Pilot[None], fake: FakeClient) -> None:
        await app.open_dead_letters(DeadFilter(queue="notifications", error_class="NetworkError", reviewed=None))

    assert shoot(snap_compare, then=filtered)


def test_dead_letters_filter_box(snap_compare: SnapCompare) -> None:
    assert shoot(snap_compare, keys=["2", "slash"])


def test_retry_all_typed_count(snap_compare: SnapCompare) -> None:
    async def ask(app: Any, pilot: Pilot[None], fake: FakeClient) -> None:
        await pilot.press("R")  # its worker waits for the answer: wait for the dialog instead
        await until(pilot, lambda: isinstance(app.screen, TypedConfirmModal))
        await pilot.press("3")

    assert shoot(snap_compare, keys=["2"], then=ask, settle_after=False)


def test_error_groups(snap_compare: SnapCompare) -> None:
    async def groups(app: Any, pilot: Pilot[None], fake: FakeClient) -> None:
        await pilot.press("e")  # its worker waits for the choice: wait for the dialog instead
        await until(pilot, lambda: isinstance(app.screen, GroupsModal))
        await pilot.press("down")

    assert shoot(snap_compare, keys=["2"], then=groups, settle_after=False)


def test_retry_marked_confirmation(snap_compare: SnapCompare) -> None:
    assert shoot(snap_compare, keys=["2", "space", "space", "r"])


def test_review_dialog(snap_compare: SnapCompare) -> None:
    assert shoot(snap_compare, keys=["2", "m", "C", "h", "e", "c", "k", "e", "d"])


@pytest.mark.parametrize("tab", ["payload", "errors", "timeline", "review"])
def test_job_detail(snap_compare: SnapCompare, tab: str) -> None:
    async def show(app: Any, pilot: Pilot[None], fake: FakeClient) -> None:
        app.screen.query_one("TabbedContent").active = tab

    assert shoot(snap_compare, keys=["2", "down", "down", "down", "down", "down", "enter"], then=show)


def test_alerts(snap_compare: SnapCompare) -> None:
    assert shoot(snap_compare, keys=["3"])
