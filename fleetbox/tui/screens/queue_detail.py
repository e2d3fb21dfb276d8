"""Queue detail: larger throughput, failure and latency charts, limiter and pool state, and the
recent errors grouped by class (enter on one opens its dead letters)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label, Sparkline, Static

from fleetbox.protocol import QueueRow
from fleetbox.tui.client import ClientError, DeadFilter, Json
from fleetbox.tui.screens.base import LiveScreen
from fleetbox.tui.widgets.text import (
    ago,
    backlog,
    count,
    duration,
    field,
    finite,
    fixed,
    held_for,
    limit_text,
    ms,
    plain,
    unconsumed,
)

#: the window of "recent errors"
ERROR_MINUTES = 60


#: the charts of the queue detail: id suffix, label, extra CSS classes
CHARTS = (
    ("done", "done/min ", ""),
    ("fail", "failure %", "chart-fail"),
    ("avg", "avg ms   ", ""),
    ("p95", "p95 ms   ", ""),
)


def error_cells(error: Json, now: float) -> list[Text]:
    """A row of the recent errors (plain text, whatever the values' types)."""
    return [
        Text(plain(field(error, "errorClass")), style="bold red"),
        Text(count(field(error, "count")), justify="right"),
        Text(ago(field(error, "lastAt"), now)),
        Text(plain(field(error, "lastMessage"), "")),
    ]


def state_line(queue: str, row: QueueRow, now: float) -> Text:
    """The queue detail's state lines from its latest figures (plain text, whatever the types)."""
    get = partial(field, row)
    paused = get("paused") is True
    line = Text()
    line.append(f" {plain(queue)} ", style="bold reverse")
    line.append(f"  tier {plain(get('tier'))} · ")
    line.append("PAUSED" if paused else "running", style="bold yellow" if paused else "green")
    workers = get("workers")
    line.append(f" · workers {count(field(workers, 'busy'))}/{count(field(workers, 'size'))} busy")
    consumers = get("consumers")
    if consumers is not None:
        line.append(f" · {count(consumers)} appliance{'s' if consumers != 1 else ''} can run it")
    if unconsumed(row):
        line.append(
            f"\n ⚠ no live appliance can run {plain(queue)}: {count(backlog(row))} "
            f"job{'s' if backlog(row) != 1 else ''} not yet started, for an appliance that has its handler",
            style="bold yellow",
        )
    line.append(
        f"\n waiting {count(get('waiting'))} · scheduled {count(get('scheduled'))} · running "
        f"{count(get('running'))} · retrying {count(get('retrying'))} · dead unreviewed "
        f"{count(get('deadUnreviewed'))} · oldest waiting {duration(get('oldestWaitingSeconds'))}"
    )
    limiter = get("limiter")
    if not isinstance(limiter, Mapping):
        line.append("\n rate limiter: none")
    else:
        line.append(
            f"\n rate limiter {plain(field(limiter, 'resource'))}: {limit_text(limiter)}, "
            f"{count(field(limiter, 'waits'))} waits, {count(field(limiter, 'throttled'))} throttled (429)"
        )
        upload = finite(field(limiter, "uploadBytes"))
        if upload is not None:
            period = duration(field(limiter, "uploadPeriodSeconds"))
            line.append(f" · uploads {upload / 1024**2:.3g} MiB per {period} per mailbox")
        held = held_for(limiter, now)
        if held is not None:
            line.append(f" · held for {duration(held)} (Retry-After)", style="bold yellow")
    return line


class QueueDetailScreen(LiveScreen):
    """One queue in depth."""

    AUTO_FOCUS = "#queue-errors"

    BINDINGS = [
        Binding("p", "pause", "Pause/resume", id="queue.pause", tooltip="Pause or resume this queue (asks first)"),
        Binding(
            "C", "clear", "Clear…", id="queue.clear", tooltip="Remove this queue's jobs not yet started (type its name)"
        ),
        Binding("d", "dead", "Dead letters", id="queue.dead", tooltip="Dead letters of this queue"),
        Binding("v", "variants", "Retry variants", id="queue.variants", tooltip="This queue's retry-variant report"),
    ]

    def __init__(self, queue: str) -> None:
        super().__init__()
        self.queue = queue
        self.errors: list[Json] = []
        #: the recent errors arrived
        self.loaded = False

    def crumbs(self) -> str:
        """``queues ▸ email``."""
        return f"queues ▸ {self.queue}"

    def compose_body(self) -> ComposeResult:
        with Vertical(id="queue-detail", classes="live-data"):
            yield Static(id="queue-state")
            for key, label, classes in CHARTS:
                with Horizontal(classes="chart-row"):
                    yield Label(label, classes="chart-label")
                    yield Sparkline([], id=f"chart-{key}", classes=f"chart {classes}".strip())
                    yield Label("", id=f"chart-{key}-value", classes="chart-value")
            yield Label(
                f"Recent errors by class (last {ERROR_MINUTES} min) — enter: its dead letters", classes="section-title"
            )
            table: DataTable[Text] = DataTable(id="queue-errors", cursor_type="row", zebra_stripes=True)
            table.add_column("ERROR CLASS", key="class", width=22)
            table.add_column(Text("COUNT", justify="right"), key="count", width=7)
            table.add_column("LAST", key="last", width=10)
            table.add_column("LAST MESSAGE", key="message", width=70)
            yield table

    def on_mount(self) -> None:
        self.load_errors()

    def action_reload(self) -> None:
        """Load the errors again."""
        self.load_errors()
        self.refresh_live()

    def load_errors(self) -> None:
        """Fetch the recent errors in the background."""
        self.run_worker(self._load_errors(), group="queue-errors", exclusive=True, exit_on_error=False)

    async def _load_errors(self) -> None:
        try:
            self.errors = await self.fb.client.queue_errors(self.queue, ERROR_MINUTES)
        except ClientError as exc:
            self.notify(f"Recent errors of {self.queue}: {exc}", severity="error")
            return
        table = self.query_one("#queue-errors", DataTable)
        table.clear()
        now = self.fb.now()
        for error in self.errors:
            error_class = field(error, "errorClass")
            table.add_row(
                *error_cells(error, now), key=error_class if isinstance(error_class, str) else plain(error_class)
            )
        self.loaded = True

    def paint(self) -> None:
        """The state line and the charts from the latest tick and series."""
        state = self.fb.state
        row = state.rows.get(self.queue)
        now = self.fb.now()
        status = self.query_one("#queue-state", Static)
        if row is None:
            status.update(Text(f"{self.queue}: not in the latest figures (removed from the configuration?)"))
            return
        status.update(state_line(self.queue, row, now))
        series = state.series.get(self.queue)
        if series is None:
            return
        charts = (
            ("done", series.done_per_minute, f"{fixed(field(row, 'donePerMinute'), ',.0f')}/min"),
            ("fail", series.failure_rate, f"{fixed(field(row, 'failureRate'), '.1f')}%"),
            ("avg", series.avg_ms, ms(field(row, "avgMs"))),
            ("p95", series.p95_ms, ms(field(row, "p95Ms"))),
        )
        for name, data, value in charts:
            self.query_one(f"#chart-{name}", Sparkline).data = list(data) or [0.0]
            self.query_one(f"#chart-{name}-value", Label).update(value)

    def action_pause(self) -> None:
        """Pause or resume this queue."""
        self.fb.ask_pause(self.queue)

    def action_clear(self) -> None:
        """Clear this queue."""
        self.fb.ask_clear(self.queue)

    async def action_dead(self) -> None:
        """Dead letters of this queue."""
        await self.fb.open_dead_letters(DeadFilter(queue=self.queue, reviewed=False))

    def action_variants(self) -> None:
        """This queue's retry-variant report."""
        self.fb.open_retry_variants(self.queue)

    @on(DataTable.RowSelected, "#queue-errors")
    async def _error_selected(self, event: DataTable.RowSelected) -> None:
        await self.fb.open_dead_letters(DeadFilter(queue=self.queue, error_class=event.row_key.value, reviewed=None))
