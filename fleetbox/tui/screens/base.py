"""What every live screen shares: the status bar, the footer, repainting only when on top, and
dimming the data while the appliance is away."""

from __future__ import annotations

from typing import cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer
from textual.widgets.data_table import RowDoesNotExist

from fleetbox.tui.host import Host
from fleetbox.tui.state import Link
from fleetbox.tui.widgets.header import StatusBar

#: actions that change something on the appliance: refused (shown dimmed) when read-only
MUTATING = frozenset({"pause", "clear", "retry", "retry_all", "review", "review_all", "discard", "discard_all"})


def cursor_key(table: DataTable[Text]) -> str | None:
    """The key of the row under the table's cursor (None on an empty table)."""
    if table.row_count == 0:
        return None
    try:
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    except RowDoesNotExist:
        return None


class LiveScreen(Screen[None]):
    """A screen fed by the live stream. Subclasses compose their body and paint it in :meth:`paint`."""

    #: where the screen is, for the status bar ("queues", "dead letters ▸ job 17", ...)
    CRUMBS = "fleetbox"

    BINDINGS = [
        Binding("escape", "back", "Back", id="screen.back", tooltip="Clear the filter, or go back"),
        Binding("ctrl+r", "reload", "Reload", id="screen.reload", show=False, tooltip="Load this screen's data again"),
    ]

    @property
    def fb(self) -> Host:
        """The app, as its screens use it (see :mod:`fleetbox.tui.host`)."""
        return cast(Host, self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(self.crumbs())
        yield from self.compose_body()
        yield Footer()

    def crumbs(self) -> str:
        """The breadcrumb in the status bar."""
        return self.CRUMBS

    def compose_body(self) -> ComposeResult:
        """The screen's own widgets."""
        yield from ()

    def on_screen_resume(self) -> None:
        """Back on top (a dialog closed, a screen popped): repaint from the latest data."""
        self.refresh_live()

    @property
    def drawable(self) -> bool:
        """Composed and still part of a running app: timers, the stream and workers can call
        back while a screen is being composed or while the app is closing (its widgets going)."""
        return self.is_mounted and self.is_attached

    def refresh_header(self) -> None:
        """Repaint the status bar only (the ages move every second)."""
        bars = self.query(StatusBar)
        if not self.drawable or not bars or not bars.first().is_mounted:
            return  # the clock's tick came while this screen is still being composed, or closing
        fb = self.fb
        now = fb.now()
        bars.first().show(fb.state, now=now, interval_s=fb.interval_ms / 1000, read_only=fb.read_only)
        self.set_class(fb.state.link(now, fb.interval_ms / 1000) is Link.DISCONNECTED, "-stale")

    def refresh_live(self) -> None:
        """Repaint everything from the latest data."""
        if not self.drawable:
            return
        self.refresh_header()
        self.paint()

    def paint(self) -> None:
        """Repaint the body from ``self.fb.state``."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Dim the keys that change things when the TUI or the appliance is read-only."""
        if action in MUTATING and self.fb.read_only:
            return None
        return True

    def action_back(self) -> None:
        """Go back one screen (a root screen stays)."""
        if len(self.app.screen_stack) > 1:
            self.dismiss()

    def action_reload(self) -> None:
        """Load the screen's data again (screens with loaded data override this)."""
        self.refresh_live()
