"""The TUI application: modes for Queues, Dead letters, Alerts and Schedules, the stream worker that keeps
:class:`~fleetbox.tui.state.LiveState` current and reconnects by itself, and the queue actions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel
from textual.screen import Screen

from fleetbox.protocol import INTERVALS_MS, Event
from fleetbox.tui.client import ClientError, DeadFilter, FleetboxClient, StreamMessage
from fleetbox.tui.commands import FleetboxCommands
from fleetbox.tui.screens.alerts import AlertsScreen
from fleetbox.tui.screens.base import LiveScreen
from fleetbox.tui.screens.dead import DeadLettersScreen
from fleetbox.tui.screens.queue_detail import QueueDetailScreen
from fleetbox.tui.screens.queues import QueuesScreen
from fleetbox.tui.screens.schedules import SchedulesScreen
from fleetbox.tui.screens.variants import RetryVariantsScreen
from fleetbox.tui.state import LiveState, QueueSeries, seed_series
from fleetbox.tui.widgets.modals import ConfirmModal, HelpScreen, TypedConfirmModal
from fleetbox.tui.widgets.text import plain

#: seconds between reconnection attempts (the last one repeats)
RECONNECT_DELAYS = (1.0, 2.0, 4.0, 8.0, 10.0)
#: events that say someone acted; shown as a notice when someone else did it
_ACTED = {
    "queue_paused": "paused",
    "queue_resumed": "resumed",
    "queue_cleared": "cleared",
    "dead_reviewed": "reviewed dead letters of",
    "dead_retried": "retried dead letters of",
    "dead_discarded": "discarded dead letters of",
    "job_retried": "retried a job of",
}


def change_notice(event: Event, operator: str | None) -> str | None:
    """What to tell the operator about someone else's change (None: nothing), as plain text."""
    by = event.get("by")
    kind = event.get("kind")
    verb = _ACTED.get(kind) if isinstance(kind, str) else None
    if verb is None or by is None or by == operator:
        return None
    return f"{plain(by)} {verb} {plain(event.get('queue') or 'the appliance')}"


class FleetboxTUI(App[None]):
    """``fleetbox tui``: watch and operate an appliance from the terminal."""

    CSS_PATH = "fleetbox.tcss"
    TITLE = "fleetbox"
    MODES: ClassVar[dict[str, str | Callable[[], Screen[Any]]]] = {
        "queues": QueuesScreen,
        "dead": DeadLettersScreen,
        "alerts": AlertsScreen,
        "schedules": SchedulesScreen,
    }
    DEFAULT_MODE = "queues"
    COMMANDS = App.COMMANDS | {FleetboxCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "switch_mode('queues')", "Queues", id="app.queues", tooltip="The queue list"),
        Binding("2", "switch_mode('dead')", "Dead", id="app.dead", tooltip="The dead-letter list"),
        Binding("3", "switch_mode('alerts')", "Alerts", id="app.alerts", tooltip="Open and recent alerts"),
        Binding("4", "switch_mode('schedules')", "Schedules", id="app.schedules", tooltip="Cron schedules"),
        Binding("question_mark", "help", "Help", id="app.help", tooltip="The keys of this screen"),
        # Not a priority binding: a ':' typed into a filter or the review notes stays there.
        Binding("colon", "command_palette", "Commands", id="app.palette", tooltip="The command palette"),
        Binding("plus", "interval(-1)", "Faster", show=False, id="app.faster", tooltip="Ticks more often"),
        Binding("minus", "interval(1)", "Slower", show=False, id="app.slower", tooltip="Ticks less often"),
        Binding("q", "back_or_quit", "Quit", id="app.quit", tooltip="Back one screen; quit on a list"),
    ]

    def __init__(
        self,
        client: FleetboxClient,
        *,
        clock: Callable[[], float] = time.time,
        read_only: bool = False,
        reconnect_delays: Sequence[float] = RECONNECT_DELAYS,
        interval_ms: int = 1000,
    ) -> None:
        super().__init__()
        self.client = client
        self.clock = clock
        self.read_only_flag = read_only
        self.reconnect_delays = tuple(reconnect_delays)
        self.interval_ms = interval_ms
        self.state = LiveState()
        #: someone changed dead letters: the list reloads when the operator next comes back to it
        self.dead_changed = False
        #: a repaint is scheduled (stream messages coalesce into it)
        self._repaint_pending = False

    # -- state ------------------------------------------------------------------------------

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Show a notification, always as plain text (``markup`` is ignored).

        Notifications carry what the appliance says: actor names, error messages, notes. Read as
        Textual markup, ``[/bogus]`` would crash the TUI and ``[@click=app.quit]`` would make
        clickable text, so no notification of the TUI is ever parsed (screens call this too).
        Control characters are shown as escapes (:func:`~fleetbox.tui.widgets.text.plain`).
        """
        del markup
        super().notify(plain(message, ""), title=plain(title, ""), severity=severity, timeout=timeout, markup=False)

    def now(self) -> float:
        """The injected clock (frozen in tests)."""
        return self.clock()

    @property
    def read_only(self) -> bool:
        """Started with --read-only, or the appliance says so."""
        return self.read_only_flag or (self.state.appliance is not None and self.state.appliance["readOnly"])

    def on_mount(self) -> None:
        self.run_worker(self._stream(), name="stream", group="stream", exit_on_error=False)
        self.set_interval(1.0, self._every_second, name="clock")

    async def on_unmount(self) -> None:
        await self.client.close()

    def _every_second(self) -> None:
        # The timer can fire while the app is closing, when no screen is left on the stack.
        stack = self.screen_stack
        if stack and isinstance(stack[-1], LiveScreen):
            stack[-1].refresh_header()

    async def _stream(self) -> None:
        """Consume the live stream forever: reconnect with backoff whenever it breaks."""
        failures = 0
        while True:
            try:
                async for message in self.client.stream(self.interval_ms):
                    failures = 0
                    series = None
                    if message["type"] == "hello":
                        # 15 minutes of per-second history per queue: rebuilt off the event loop
                        series = await asyncio.to_thread(seed_series, message["history"])
                    self.take(message, series=series)
                    # Frames already received do not make the loop wait: let keys and drawing in.
                    await asyncio.sleep(0)
                reason = "the appliance closed the live stream"
            except ClientError as exc:  # Disconnected, or a refused upgrade
                reason = str(exc)
            delay = self.reconnect_delays[min(failures, len(self.reconnect_delays) - 1)]
            failures += 1
            self.state.disconnected(reason, self.now() + delay)
            self.repaint()
            await asyncio.sleep(delay)

    def take(self, message: StreamMessage, *, series: dict[str, QueueSeries] | None = None) -> None:
        """Apply one stream message, then repaint the screen on top (never one under a dialog).

        ``series``: a hello's history already turned into chart series (by :func:`seed_series`).
        """
        if message["type"] == "hello":
            was_read_only = self.read_only
            self.state.apply_hello(message, self.now(), series=series)
            if self.read_only != was_read_only:
                self.screen.refresh_bindings()
        elif message["type"] == "tick":
            self.state.apply_tick(message, self.now())
        elif message["type"] == "error":
            self.notify(message["message"], title="The appliance refused", severity="error")
            return
        else:
            self.on_stream_event(message)
            return
        self.repaint()

    def repaint(self) -> None:
        """Repaint the screen on top soon: once for however many stream messages arrive meanwhile.

        A burst of frames (new dead letters on 57 queues, a tick, a reconnect's hello) costs one
        repaint, after the messages already waiting (keys among them) are handled.
        """
        if not self._repaint_pending:
            self._repaint_pending = True
            self.call_later(self._repaint_now)

    def _repaint_now(self) -> None:
        self._repaint_pending = False
        if isinstance(self.screen, LiveScreen):
            self.screen.refresh_live()

    def on_stream_event(self, event: Event) -> None:
        """Someone changed something: say so (new dead letters wait for ctrl+r, never reorder the list)."""
        if event["kind"] == "events_missed":
            self._mark_dead_dirty()
            return
        if event["kind"] == "dead_added":
            self.state.new_dead += event.get("count", 1)
            self.repaint()
            return
        notice = change_notice(event, self.client.operator)
        if notice is not None:
            self.notify(notice, title="Changed elsewhere")
        if str(event["kind"]).startswith("dead_"):
            self._mark_dead_dirty()
            if notice is not None:
                # The list on screen still shows them as they were: say so there (found by hand:
                # after discards in the dashboard the list and its count stayed as before).
                count = event.get("count", 1)
                self.state.changed_dead += count if isinstance(count, int) and count > 0 else 1
                self.repaint()
        if event["kind"].startswith("schedule_") and isinstance(self.screen, SchedulesScreen):
            # someone paused, resumed, ran or changed a schedule: the list on screen follows
            self.screen.action_reload()

    def _mark_dead_dirty(self) -> None:
        """The dead-letter list reloads when the operator next returns to it (never under the cursor)."""
        self.dead_changed = True

    # -- navigation -------------------------------------------------------------------------

    def action_help(self) -> None:
        """The keys of the screen on top."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_back_or_quit(self) -> None:
        """Back one screen, or quit from a list."""
        if len(self.screen_stack) > 1:
            self.pop_screen()
        else:
            self.exit()

    def open_queue(self, name: str) -> None:
        """The detail of a queue, over the queue list."""
        self.switch_mode("queues")
        self.push_screen(QueueDetailScreen(name))

    def open_retry_variants(self, queue: str) -> None:
        """A queue's retry-variant report, over its detail."""
        self.switch_mode("queues")
        self.push_screen(RetryVariantsScreen(queue))

    async def open_dead_letters(self, flt: DeadFilter) -> None:
        """The dead-letter list with a filter (its own drill-down closed)."""
        await self.switch_mode("dead")
        while len(self.screen_stack) > 1:
            await self.pop_screen()
        screen = self.screen
        if isinstance(screen, DeadLettersScreen):
            screen.set_filter(flt)

    def action_interval(self, step: int) -> None:
        """Ticks more often (-1) or less often (+1)."""
        index = INTERVALS_MS.index(self.interval_ms) if self.interval_ms in INTERVALS_MS else 0
        self.set_interval_ms(INTERVALS_MS[max(0, min(len(INTERVALS_MS) - 1, index + step))])

    def set_interval_ms(self, interval_ms: int) -> None:
        """Ask the appliance for ticks every ``interval_ms``."""
        self.interval_ms = interval_ms

        async def run() -> None:
            try:
                await self.client.subscribe(interval_ms)
            except ClientError as exc:
                self.notify(str(exc), title="Interval not changed", severity="error")
                return
            self.notify(f"A tick every {interval_ms / 1000:g} s", title="Interval")

        self.run_worker(run(), group="subscribe", exclusive=True, exit_on_error=False)

    # -- queue actions ----------------------------------------------------------------------

    def ask_pause(self, queue: str) -> None:
        """Pause a running queue or resume a paused one, after a yes."""
        if self.read_only:
            self.notify("Read-only: queues cannot be paused or resumed from here.", severity="warning")
            return
        row = self.state.rows.get(queue)
        paused = row is not None and row["paused"]
        verb = "Resume" if paused else "Pause"
        question = (
            f"Resume {queue}? Appliances claim its jobs again."
            if paused
            else f"Pause {queue}? No appliance claims its jobs until resumed; running jobs finish."
        )

        async def run() -> None:
            try:
                await (self.client.resume(queue) if paused else self.client.pause(queue))
            except ClientError as exc:
                self.notify(str(exc), title=f"{queue} not {verb.lower()}d", severity="error")
                return
            self.notify(f"{queue} {verb.lower()}d", title=verb)

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(run(), group="queue-action", exit_on_error=False)

        self.push_screen(ConfirmModal(question, yes=verb), answered)

    def ask_clear(self, queue: str) -> None:
        """Remove a queue's jobs not yet started (waiting, scheduled, retrying), after its name is typed."""
        if self.read_only:
            self.notify("Read-only: queues cannot be cleared from here.", severity="warning")
            return
        row = self.state.rows.get(queue)
        how_many = "" if row is None else f" ({row['waiting'] + row['scheduled'] + row['retrying']:,} now)"

        async def run() -> None:
            try:
                cleared = await self.client.clear(queue)
            except ClientError as exc:
                self.notify(str(exc), title=f"{queue} not cleared", severity="error")
                return
            self.notify(f"{cleared:,} jobs of {queue} not yet started removed", title="Cleared")

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(run(), group="queue-action", exit_on_error=False)

        question = f"Clear {queue}? Every job not yet started{how_many} is removed; running jobs finish."
        self.push_screen(TypedConfirmModal(question, queue), answered)
