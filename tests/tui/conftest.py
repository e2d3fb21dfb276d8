"""Fixtures of the TUI tests: a frozen clock, no cursor blink, no animations, a FakeClient.

The TUI is driven headless with Textual's Pilot. Waiting is on conditions (the app's workers
finishing, a widget showing something) with deadlines, never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

# Before textual is imported: it reads the level once.
os.environ["TEXTUAL_ANIMATIONS"] = "none"

import pytest
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Input, TextArea

from fleetbox.tui.app import FleetboxTUI
from fleetbox.tui.fake import FakeClient

#: 2026-01-01 00:00:00 UTC: every age and "ago" on screen is computed from it
NOW = 1767225600.0


class FrozenClock:
    """A clock that moves only when told."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def no_cursor_blink(monkeypatch: pytest.MonkeyPatch) -> None:
    """A blinking cursor would make every snapshot with an input in it flaky."""
    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None)
    monkeypatch.setattr(TextArea, "_toggle_cursor_blink_visible", lambda self: None)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def fake() -> FakeClient:
    """A busy appliance: the spec's 8 queues, 40 dead letters (every fifth reviewed), 2 alerts."""
    return FakeClient.busy(NOW)


def make_app(client: FakeClient, clock: Callable[[], float] | None = None, **kwargs: object) -> FleetboxTUI:
    """The TUI on a fake appliance, reconnecting at once when the stream drops."""
    return FleetboxTUI(client, clock=clock or FrozenClock(), reconnect_delays=(0.05,), **kwargs)  # type: ignore[arg-type]


async def settle(app: FleetboxTUI, pilot: Pilot[None], deadline: float = 10.0) -> None:
    """Wait until every worker but the endless stream is done and the messages are processed."""
    async with asyncio.timeout(deadline):
        while True:
            await pilot.pause()
            running = [w for w in app.workers if w.group != "stream" and w.is_running]
            if not running:
                return
            await asyncio.gather(*(w.wait() for w in running), return_exceptions=True)


async def until(pilot: Pilot[None], predicate: Callable[[], bool], deadline: float = 10.0) -> None:
    """Wait until ``predicate()`` holds (messages processed between checks), or fail after ``deadline`` seconds."""
    async with asyncio.timeout(deadline):
        while not predicate():
            await pilot.pause(0.01)


async def connected(app: FleetboxTUI, pilot: Pilot[None], client: FakeClient) -> None:
    """Wait until the TUI has its hello and the screen is painted."""
    await client.connected()
    await until(pilot, lambda: app.state.connected)
    await settle(app, pilot)


def seen(widget: Widget) -> str:
    """What the widget shows on the terminal, as text."""
    width, height = widget.size
    return "\n".join(strip.text for strip in widget.render_lines(Region(0, 0, width, height)))
