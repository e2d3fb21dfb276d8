"""Cron schedules: one row per schedule (cron, time zone, queue, enabled, last and next run), the
highlighted one's policies, next runs (DST changes flagged) and latest runs below; ``p`` pauses or
resumes it and ``r`` runs it now, each after a yes."""

from __future__ import annotations

import json

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from fleetbox.tui.client import ClientError, Json
from fleetbox.tui.screens.base import LiveScreen, cursor_key
from fleetbox.tui.widgets.modals import ConfirmModal
from fleetbox.tui.widgets.text import DASH, ago, clock, duration, epoch

#: how many next runs the detail lists
NEXT_RUNS = 5
#: the longest payload shown in the detail (the API has all of it)
MAX_DATA_CHARS = 400
#: (key, label, width)
COLUMNS = [
    ("name", "SCHEDULE", 22),
    ("cron", "CRON", 16),
    ("tz", "TIME ZONE", 18),
    ("queue", "QUEUE", 16),
    ("state", "STATE", 7),
    ("last", "LAST RUN", 11),
    ("next", "NEXT RUN", 12),
    ("source", "FROM", 6),
]
#: how the detail names a next run's daylight-saving flag
DST_WORDS = {
    "skipped-forward": "the clocks skip this local time: runs at the next valid minute",
    "repeated-first": "the clocks repeat this local time: first pass",
    "repeated-second": "the clocks repeat this local time: second pass",
}


def until(iso: str | None, now: float) -> str:
    """``in 4m12s`` for a time to come, ``due`` for one passed, a dash without one."""
    t = epoch(iso)
    if t is None:
        return DASH
    return "due" if t <= now else f"in {duration(t - now)}"


def schedule_cells(s: Json, now: float) -> dict[str, Text]:
    """A schedule's cells by column key (every server text as plain Text)."""
    enabled = bool(s.get("enabled"))
    return {
        "name": Text(str(s["name"]), style="bold" if enabled else "dim"),
        "cron": Text(str(s.get("cron") or DASH)),
        "tz": Text(str(s.get("timezone") or DASH)),
        "queue": Text(str(s.get("queue") or DASH)),
        "state": Text("on", style="green") if enabled else Text("PAUSED", style="bold yellow"),
        "last": Text(ago(s.get("lastRunAt"), now)),
        "next": Text(until(s.get("nextRunAt"), now) if enabled else DASH),
        "source": Text(str(s.get("source") or DASH), style="dim"),
    }


def detail_text(s: Json) -> Text:
    """The policies, payload, next runs and latest runs of ``GET /api/schedules/{name}``."""
    out = Text()
    out.append(f" {s['name']} ", style="bold reverse")
    out.append(f"  {s.get('cron')} in {s.get('timezone')} → {s.get('queue')} (priority {s.get('priority')})\n")
    alert = s.get("alertAfterSeconds")
    out.append(
        f" dst {s.get('dst')} · catch-up {s.get('catchUp')} (at most {s.get('catchUpMax')}) · overlap "
        f"{s.get('overlap')} · dead-man alert {'after ' + duration(alert) if alert else 'off'} · from {s.get('source')}"
    )
    if s.get("updatedBy"):
        out.append(f" · changed by {s['updatedBy']} {clock(s.get('updatedAt'))}")
    data = json.dumps(s.get("data"), ensure_ascii=False)
    if len(data) > MAX_DATA_CHARS:
        data = data[:MAX_DATA_CHARS] + f"… ({len(data):,} characters)"
    out.append("\n payload ", style="bold")
    out.append(data)
    out.append("\n\n Next runs (UTC, then local)\n", style="bold")
    upcoming = s.get("next") or []
    if not upcoming:
        out.append("  none: " + ("paused" if not s.get("enabled") else "no tick to come"), style="dim")
        out.append("\n")
    for tick in upcoming:
        out.append(f"  {clock(tick.get('at'))}  {tick.get('local')}")
        flag = tick.get("dst")
        if flag:
            out.append(f"  ⚠ {DST_WORDS.get(flag, flag)}", style="bold yellow")
        out.append("\n")
    out.append("\n Latest runs\n", style="bold")
    runs = s.get("runs") or []
    if not runs:
        out.append("  none yet\n", style="dim")
    for run in runs:
        outcome = str(run.get("outcome"))
        out.append(f"  tick {clock(run.get('tick'))}  ")
        out.append(f"{outcome:<9}", style={"enqueued": "green", "skipped": "yellow", "missed": "red"}.get(outcome, ""))
        if run.get("jobId") is not None:
            out.append(f" job {run['jobId']}")
        if run.get("workerId"):
            out.append(f" by {run['workerId']}", style="dim")
        out.append("\n")
    return out


class SchedulesScreen(LiveScreen):
    """Every cron schedule (see the module docstring)."""

    CRUMBS = "schedules"
    AUTO_FOCUS = "#schedules"

    BINDINGS = [
        Binding(
            "p", "pause", "Pause/resume", id="schedules.pause", tooltip="Pause or resume this schedule (asks first)"
        ),
        Binding("r", "run", "Run now", id="schedules.run", tooltip="Enqueue this schedule's job now (asks first)"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.schedules: dict[str, Json] = {}
        #: the list arrived
        self.loaded = False
        #: the highlighted schedule's detail arrived (its name)
        self.detail_of: str | None = None
        #: a schedule's next run passed: the list is reloaded (once) to show the one after
        self._stale_reload = False

    def compose_body(self) -> ComposeResult:
        yield Static(id="schedules-summary")
        table: DataTable[Text] = DataTable(id="schedules", cursor_type="row", zebra_stripes=True, classes="live-data")
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        yield table
        with VerticalScroll(id="schedule-detail-box", classes="live-data"):
            yield Static(id="schedule-detail")

    @property
    def table(self) -> DataTable[Text]:
        """The schedule list."""
        return self.query_one("#schedules", DataTable)

    @property
    def selected(self) -> Json | None:
        """The highlighted schedule."""
        key = cursor_key(self.table)
        return None if key is None else self.schedules.get(key)

    def on_mount(self) -> None:
        self.action_reload()

    def on_screen_resume(self) -> None:
        """Back on top: the schedules may have changed meanwhile."""
        super().on_screen_resume()
        if self.loaded:
            self.action_reload()

    def action_reload(self) -> None:
        """Fetch the schedules again."""
        self._reload()

    @work(group="schedules-load", exclusive=True, exit_on_error=False)
    async def _reload(self) -> None:
        await self._load()

    async def _load(self) -> None:
        try:
            listed = await self.fb.client.schedules()
        except ClientError as exc:
            self.notify(f"Schedules: {exc}", severity="error")
            return
        self.schedules = {str(s["name"]): s for s in listed}
        table = self.table
        chosen = cursor_key(table)
        table.clear()
        now = self.fb.now()
        for name, s in self.schedules.items():
            cells = schedule_cells(s, now)
            table.add_row(*(cells[key] for key, _, _ in COLUMNS), key=name)
        if chosen in self.schedules:
            table.move_cursor(row=table.get_row_index(chosen), animate=False)
        self.loaded = True
        self._stale_reload = False
        self.paint()
        self.load_detail()

    def load_detail(self) -> None:
        """Fetch the highlighted schedule's detail in the background."""
        chosen = self.selected
        if chosen is None:
            self.detail_of = None
            self.query_one("#schedule-detail", Static).update(
                Text("No schedules. Add one with `fleetbox schedule add` or [[schedules]] in the config file.")
            )
            return
        self._load_detail(str(chosen["name"]))

    # A worker made by the decorator starts the coroutine only when it runs: the highlight moving
    # fast cancels workers that never started, and no coroutine is left unawaited.
    @work(group="schedule-detail", exclusive=True, exit_on_error=False)
    async def _load_detail(self, name: str) -> None:
        try:
            detail = await self.fb.client.schedule(name, next_runs=NEXT_RUNS)
        except ClientError as exc:
            self.notify(f"Schedule {name}: {exc}", severity="warning")
            return
        selected = self.selected
        if selected is not None and selected["name"] == name:
            self.query_one("#schedule-detail", Static).update(detail_text(detail))
            self.detail_of = name

    @on(DataTable.RowHighlighted, "#schedules")
    def _highlighted(self) -> None:
        if self.loaded:
            self.load_detail()

    def paint(self) -> None:
        """The summary, and the ages and countdowns (they move with the clock)."""
        if not self.loaded:
            return
        now = self.fb.now()
        table = self.table
        for name, s in self.schedules.items():
            cells = schedule_cells(s, now)
            table.update_cell(name, "last", cells["last"])
            table.update_cell(name, "next", cells["next"])
        paused = sum(1 for s in self.schedules.values() if not s.get("enabled"))
        n = len(self.schedules)
        self.query_one("#schedules-summary", Static).update(
            Text(
                f" {n} schedule{'' if n == 1 else 's'} · {paused} paused — p pause/resume · r run now · ctrl+r reload",
                style="bold",
            )
        )
        due = any(
            s.get("enabled") and (epoch(s.get("nextRunAt")) or float("inf")) <= now for s in self.schedules.values()
        )
        if due and not self._stale_reload:
            # a tick passed: an appliance has fired it by now (or soon); show the run after
            self._stale_reload = True
            self.set_timer(2.0, self.action_reload)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Pause and run need a schedule under the cursor, and are refused when read-only."""
        allowed = super().check_action(action, parameters)
        if action in ("pause", "run"):
            if self.fb.read_only:
                return None
            if self.is_mounted and self.selected is None:
                return None
        return allowed

    def action_pause(self) -> None:
        """Pause or resume the highlighted schedule, after a yes."""
        chosen = self.selected
        if chosen is None:
            return
        name, enabled = str(chosen["name"]), bool(chosen.get("enabled"))
        verb = "Pause" if enabled else "Resume"
        question = (
            f"Pause schedule {name}? It fires no job until resumed; a job already enqueued still runs."
            if enabled
            else f"Resume schedule {name}? It fires from its next tick (the ticks missed while paused are not run)."
        )

        async def run() -> None:
            try:
                await self.fb.client.set_schedule_enabled(name, not enabled)
            except ClientError as exc:
                self.notify(str(exc), title=f"Schedule {name} not {verb.lower()}d", severity="error")
                return
            self.notify(f"Schedule {name} {verb.lower()}d", title=verb)
            await self._load()

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(run(), group="schedule-action", exit_on_error=False)

        self.app.push_screen(ConfirmModal(question, yes=verb), answered)

    def action_run(self) -> None:
        """Enqueue the highlighted schedule's job now, after a yes."""
        chosen = self.selected
        if chosen is None:
            return
        name = str(chosen["name"])

        async def run() -> None:
            try:
                job_id = await self.fb.client.run_schedule(name)
            except ClientError as exc:
                self.notify(str(exc), title=f"Schedule {name} not run", severity="error")
                return
            self.notify(f"Schedule {name} enqueued job {job_id}", title="Run now")
            await self._load()

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(run(), group="schedule-action", exit_on_error=False)

        question = f"Run schedule {name} now? One job is enqueued on {chosen.get('queue')}, outside its ticks."
        self.app.push_screen(ConfirmModal(question, yes="Run"), answered)
