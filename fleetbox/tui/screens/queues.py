"""Queues: one row per queue, updated in place on every tick, so the cursor never jumps."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input

from fleetbox.protocol import QueueRow
from fleetbox.tui.client import DeadFilter
from fleetbox.tui.screens.base import LiveScreen, cursor_key
from fleetbox.tui.widgets.text import (
    DASH,
    NO_CONSUMER,
    count,
    duration,
    field,
    finite,
    fixed,
    limiter_text,
    ms,
    plain,
    trend,
    unconsumed,
    whole,
)

_TIER_ORDER = {"high": 0, "medium": 1, "low": 2}
_TIER_SHORT = {"high": "high", "medium": "med", "low": "low"}
TREND_WIDTH = 9
#: (key, label, width); numbers are right-aligned
COLUMNS = [
    ("name", "QUEUE", 16),
    ("tier", "TIER", 4),
    ("state", "STATE", 6),
    ("waiting", "WAITING", 7),
    ("scheduled", "SCHED", 5),
    ("running", "RUN", 4),
    ("retrying", "RETRY", 5),
    ("dead", "DEAD", 5),
    ("done", "DONE/m", 7),
    ("fail", "FAIL%", 5),
    ("avg", "AVG", 6),
    ("p95", "P95", 6),
    ("oldest", "OLDEST", 6),
    ("workers", "WORKERS", 7),
    ("limiter", "LIMITER", 9),
    ("trend", "TREND", TREND_WIDTH),
]
#: a failure rate (percent) shown in red from here on
FAIL_WARN = 5.0


def _right(text: str, style: str = "") -> Text:
    return Text(text, style=style, justify="right")


def row_cells(row: QueueRow, trend_text: str, now: float) -> dict[str, Text]:
    """A queue's cells by column key (``trend_text``: its sparkline, see :func:`trend`). Any value
    of the row may be of another type than the protocol says: it is shown, never raised on."""
    fail = finite(field(row, "failureRate"))
    workers = field(row, "workers")
    paused = field(row, "paused") is True
    retrying, dead = field(row, "retrying"), field(row, "deadUnreviewed")
    if unconsumed(row):
        name = Text(f"{NO_CONSUMER}{plain(field(row, 'name'))}", style="bold yellow")
        state = Text("no app", style="bold yellow")
    else:
        name = Text(plain(field(row, "name")), style="bold" if not paused else "dim")
        state = Text("PAUSED", style="bold yellow") if paused else Text("run", style="green")
    tier = field(row, "tier")
    return {
        "name": name,
        "tier": Text(_TIER_SHORT[tier] if isinstance(tier, str) and tier in _TIER_SHORT else plain(tier)),
        "state": state,
        "waiting": _right(count(field(row, "waiting"))),
        "scheduled": _right(count(field(row, "scheduled"))),
        "running": _right(count(field(row, "running"))),
        "retrying": _right(count(retrying), "yellow" if whole(retrying) else ""),
        "dead": _right(count(dead), "bold red" if whole(dead) else ""),
        "done": _right(fixed(field(row, "donePerMinute"), ",.0f")),
        "fail": _right(
            DASH if fail is None else f"{fail:.1f}", "bold red" if fail is not None and fail >= FAIL_WARN else ""
        ),
        "avg": _right(ms(field(row, "avgMs"))),
        "p95": _right(ms(field(row, "p95Ms"))),
        "oldest": _right(duration(field(row, "oldestWaitingSeconds"))),
        "workers": _right(f"{count(field(workers, 'busy'))}/{count(field(workers, 'size'))}"),
        "limiter": limiter_text(field(row, "limiter"), now),
        "trend": Text(trend_text, style="cyan"),
    }


class QueuesScreen(LiveScreen):
    """Every queue with its figures; enter opens a queue, p pauses or resumes, C clears."""

    CRUMBS = "queues"
    AUTO_FOCUS = "#queues"
    BINDINGS = [
        Binding("enter", "open", "Open", id="queues.open", tooltip="Open the queue's detail"),
        Binding("p", "pause", "Pause/resume", id="queues.pause", tooltip="Pause or resume the queue (asks first)"),
        Binding(
            "C", "clear", "Clear…", id="queues.clear", tooltip="Remove the queue's jobs not yet started (type its name)"
        ),
        Binding("d", "dead", "Dead letters", id="queues.dead", tooltip="Dead letters of this queue"),
        Binding("slash", "filter", "Filter", id="queues.filter", tooltip="Show only queues whose name contains…"),
        Binding("j", "cursor('down')", "Down", show=False),
        Binding("k", "cursor('up')", "Up", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        #: the cells last written, per queue: only changed cells are written again
        self._shown: dict[str, dict[str, Text]] = {}
        #: what the cells of each queue were made from: an unchanged queue is not redone
        self._made_from: dict[str, tuple[object, ...]] = {}

    def compose_body(self) -> ComposeResult:
        yield Input(
            placeholder="queue name contains…  (enter applies, esc clears)", id="queue-filter", classes="filter"
        )
        table: DataTable[Text] = DataTable(id="queues", cursor_type="row", zebra_stripes=True, classes="live-data")
        for key, label, width in COLUMNS:
            table.add_column(
                Text(label, justify="right" if width <= 7 and key not in ("tier", "state") else "left"),
                key=key,
                width=width,
            )
        yield table

    @property
    def table(self) -> DataTable[Text]:
        """The queue table."""
        return self.query_one("#queues", DataTable)

    def selected(self) -> str | None:
        """The highlighted queue."""
        return cursor_key(self.table)

    def paint(self) -> None:
        """Reconcile the table with the latest tick: update changed cells, add and remove rows."""
        state = self.fb.state
        now = self.fb.now()
        text = self.query_one("#queue-filter", Input).value.strip().lower()
        wanted = [r for r in state.rows.values() if text in r["name"]]
        wanted.sort(key=lambda r: (_TIER_ORDER[r["tier"]], r["name"]))
        table = self.table
        keep = {r["name"] for r in wanted}
        for name in [n for n in self._shown if n not in keep]:
            table.remove_row(name)
            del self._shown[name]
            self._made_from.pop(name, None)
        added = False
        for row in wanted:
            name = row["name"]
            series = state.series.get(name)
            trend_text = trend(list(series.done_per_minute) if series else [], TREND_WIDTH)
            limiter = row["limiter"]
            # ``now`` shows only in a limiter's hold countdown (whole seconds)
            held = limiter is not None and limiter["pausedUntil"] is not None and limiter["pausedUntil"] > now
            made_from = (repr(row), trend_text, int(now) if held else None)
            shown = self._shown.get(name)
            if shown is not None and self._made_from.get(name) == made_from:
                continue  # nothing of this queue changed since the last paint
            self._made_from[name] = made_from
            cells = row_cells(row, trend_text, now)
            if shown is None:
                table.add_row(*(cells[key] for key, _, _ in COLUMNS), key=name)
                added = True
            else:
                for key, value in cells.items():
                    if shown[key] != value:
                        table.update_cell(name, key, value)
            self._shown[name] = cells
        if added and table.row_count > 1:
            # A new queue joins at the end; put it in its place and keep the cursor on its queue.
            current = self.selected()
            order = {r["name"]: i for i, r in enumerate(wanted)}
            table.sort("name", key=lambda cell: order[cell.plain.removeprefix(NO_CONSUMER)])
            if current is not None:
                table.move_cursor(row=table.get_row_index(current))

    def action_cursor(self, direction: str) -> None:
        """Vim-style movement."""
        if direction == "down":
            self.table.action_cursor_down()
        else:
            self.table.action_cursor_up()

    def action_open(self) -> None:
        """Open the highlighted queue."""
        from fleetbox.tui.screens.queue_detail import QueueDetailScreen

        name = self.selected()
        if name is not None:
            self.app.push_screen(QueueDetailScreen(name))

    @on(DataTable.RowSelected, "#queues")
    def _row_selected(self) -> None:
        self.action_open()

    def action_pause(self) -> None:
        """Pause or resume the highlighted queue."""
        name = self.selected()
        if name is not None:
            self.fb.ask_pause(name)

    def action_clear(self) -> None:
        """Clear the highlighted queue."""
        name = self.selected()
        if name is not None:
            self.fb.ask_clear(name)

    async def action_dead(self) -> None:
        """The dead letters of the highlighted queue."""
        name = self.selected()
        if name is not None:
            await self.fb.open_dead_letters(DeadFilter(queue=name, reviewed=False))

    def action_filter(self) -> None:
        """Show the filter box."""
        box = self.query_one("#queue-filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#queue-filter")
    def _filter_changed(self) -> None:
        before = self.selected()
        self.paint()
        # The highlighted queue if it still matches, else the first match (found by hand: the
        # cursor kept its row number, so enter opened the third match).
        table = self.table
        if table.row_count:
            table.move_cursor(row=table.get_row_index(before) if before is not None and before in self._shown else 0)

    @on(Input.Submitted, "#queue-filter")
    def _filter_done(self) -> None:
        self.table.focus()

    def action_back(self) -> None:
        """Esc: clear the filter first."""
        box = self.query_one("#queue-filter", Input)
        if box.display:
            box.value = ""
            box.display = False
            self.table.focus()
            self.paint()
            return
        super().action_back()
