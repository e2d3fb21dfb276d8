"""What the screens and the command palette need of the app.

:class:`~fleetbox.tui.app.FleetboxTUI` implements :class:`Host`; screens reach it through their
``fb`` property (the running app, seen as a Host). The app imports the screens (its modes), so
the screens must not import the app: this interface, passed down, keeps the import graph of the
TUI free of cycles.
"""

from __future__ import annotations

from typing import Protocol

from fleetbox.tui.client import DeadFilter, FleetboxClient
from fleetbox.tui.state import LiveState


class Host(Protocol):
    """The app as its screens use it."""

    #: the appliance's API and live stream
    client: FleetboxClient
    #: the latest data of the live stream
    state: LiveState
    #: the tick interval asked of the appliance
    interval_ms: int
    #: someone changed dead letters: the list reloads when the operator next comes back to it
    dead_changed: bool

    @property
    def read_only(self) -> bool:
        """Started with --read-only, or the appliance says so."""
        ...

    def now(self) -> float:
        """The injected clock."""
        ...

    def ask_pause(self, queue: str) -> None:
        """Pause a running queue or resume a paused one, after a yes."""

    def ask_clear(self, queue: str) -> None:
        """Remove a queue's jobs not yet started (waiting, scheduled, retrying), after its name is typed."""

    def open_queue(self, name: str) -> None:
        """The detail of a queue, over the queue list."""

    def open_retry_variants(self, queue: str) -> None:
        """A queue's retry-variant report."""

    async def open_dead_letters(self, flt: DeadFilter) -> None:
        """The dead-letter list with a filter."""

    def set_interval_ms(self, interval_ms: int) -> None:
        """Ask the appliance for ticks every ``interval_ms``."""

    def action_help(self) -> None:
        """The keys of the screen on top."""
