"""Alerts: the open ones first, then the recently resolved."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from fleetbox.tui.client import ClientError, Json
from fleetbox.tui.screens.base import LiveScreen
from fleetbox.tui.widgets.text import ago, field, plain

#: how many alerts the screen shows
LIMIT = 200


def alert_cells(alert: Json, now: float) -> list[Text]:
    """An alert's row (plain text, whatever the values' types)."""
    status = field(alert, "status")
    is_open = status == "open"
    return [
        Text("OPEN" if is_open else plain(status), style="bold red" if is_open else "dim"),
        Text(plain(field(alert, "kind"))),
        Text(plain(field(alert, "queue") or "(all)")),
        Text(ago(field(alert, "openedAt"), now)),
        Text(ago(field(alert, "resolvedAt"), now)),
        Text(plain(field(alert, "message"), "")),
    ]


class AlertsScreen(LiveScreen):
    """Open and recent alerts; reloaded when the number of open alerts changes."""

    CRUMBS = "alerts"
    AUTO_FOCUS = "#alerts"

    def __init__(self) -> None:
        super().__init__()
        self.alerts: list[Json] = []
        self._open_seen: int | None = None
        #: the first list arrived
        self.loaded = False

    def compose_body(self) -> ComposeResult:
        yield Static(id="alerts-summary")
        table: DataTable[Text] = DataTable(id="alerts", cursor_type="row", zebra_stripes=True, classes="live-data")
        table.add_column("STATUS", key="status", width=8)
        table.add_column("KIND", key="kind", width=15)
        table.add_column("QUEUE", key="queue", width=18)
        table.add_column("OPENED", key="opened", width=11)
        table.add_column("RESOLVED", key="resolved", width=11)
        table.add_column("MESSAGE", key="message", width=60)
        yield table

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        """Fetch the alerts again."""
        self.run_worker(self._load(), group="alerts-load", exclusive=True, exit_on_error=False)

    async def _load(self) -> None:
        try:
            alerts = await self.fb.client.alerts(status=None, limit=LIMIT)
        except ClientError as exc:
            self.notify(f"Alerts: {exc}", severity="error")
            return
        # open first (newest first within each group, as the appliance lists them)
        self.alerts = [a for a in alerts if field(a, "status") == "open"] + [
            a for a in alerts if field(a, "status") != "open"
        ]
        table = self.query_one("#alerts", DataTable)
        row = table.cursor_row
        table.clear()
        now = self.fb.now()
        for alert in self.alerts:
            table.add_row(*alert_cells(alert, now), key=plain(field(alert, "id")))
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1), animate=False)
        self.loaded = True
        self.paint()

    def paint(self) -> None:
        """The summary; a change in the number of open alerts reloads the list."""
        tick = self.fb.state.tick
        opened = None if tick is None else tick["alertsOpen"]
        if opened is not None and self._open_seen is not None and opened != self._open_seen:
            self.action_reload()
        self._open_seen = opened
        n_open = sum(1 for a in self.alerts if field(a, "status") == "open")
        self.query_one("#alerts-summary", Static).update(
            Text(f" {n_open} open · {len(self.alerts) - n_open} resolved (latest {LIMIT})", style="bold")
        )
