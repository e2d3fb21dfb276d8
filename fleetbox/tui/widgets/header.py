"""The status bar at the top of every screen: where you are, which appliance, and how fresh it is."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from fleetbox.tui.state import Link, LiveState
from fleetbox.tui.widgets.text import duration, plain

SIMULATED = Text(" SIMULATED GRAPH: Microsoft Graph is simulated; no message leaves this appliance ")


class StatusBar(Vertical):
    """Breadcrumb, appliance, uptime, database, live/stale, dead letters; banners below."""

    def __init__(self, crumbs: str) -> None:
        super().__init__(id="status-bar")
        self.crumbs = crumbs

    def compose(self) -> ComposeResult:
        yield Static(id="status-line")
        yield Static(id="simulator-banner", classes="banner")
        yield Static(id="link-banner", classes="banner")

    def show(self, state: LiveState, *, now: float, interval_s: float, read_only: bool) -> None:
        """Render from the state (called on every tick and every second for the ages)."""
        if len(self.query(Static)) < 3:
            return  # being composed, or its screen is being closed: nothing to draw on
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(" fleetbox ", style="bold")
        line.append(f"▸ {self.crumbs}   ")
        info = state.appliance
        link = state.link(now, interval_s)
        age = state.age(now)
        # Disconnected, nothing is known of now: no uptime counting on, no "db ok" from before
        # (found by hand: "up 4m52s · db ok · ✕ disconnected" after the appliance had stopped).
        away = link is Link.DISCONNECTED
        if info is not None:
            line.append(f"{info['name']} · v{info['version']} · ")
            if not away:
                line.append(f"up {duration(now - info['startedAt'])} · ")
        tick = state.tick
        if tick is not None:
            db = tick["database"]
            if away:
                line.append("db ?", style="dim")
            else:
                line.append("db ok" if db["ok"] else "db DOWN", style="" if db["ok"] else "bold red")
            line.append(" · ")
        if link is Link.LIVE:
            line.append("● live", style="bold green")
            if tick is not None:
                line.append(f" (stats {tick['statsAgeMs'] / 1000:.1f}s)")
        elif link is Link.STALE:
            line.append(f"◌ stale {duration(age)}", style="bold yellow")
        elif link is Link.DISCONNECTED:
            line.append("✕ disconnected", style="bold red")
        else:
            line.append("… connecting", style="yellow")
        if tick is not None and tick.get("draining") and not away:
            line.append(" · ◐ stopping: finishing its jobs", style="bold yellow")
        if read_only:
            line.append(" · READ-ONLY", style="bold")
        if tick is not None:
            line.append("   ")
            dead = tick["deadUnreviewed"]
            line.append(f"{dead:,} dead unreviewed", style="bold red" if dead else "")
            if tick["alertsOpen"]:
                line.append(
                    f" · {tick['alertsOpen']} alert{'s' if tick['alertsOpen'] != 1 else ''} open", style="bold yellow"
                )
        # one line of fixed height: a new text needs no layout of the screen (every second)
        self.query_one("#status-line", Static).update(line, layout=False)

        simulated = info is not None and info["graphMode"] == "simulated"
        sim = self.query_one("#simulator-banner", Static)
        sim.display = simulated
        if simulated:
            sim.update(SIMULATED, layout=False)

        banner = self.query_one("#link-banner", Static)
        banner.display = link is Link.DISCONNECTED or (link is Link.CONNECTING and state.down_reason is not None)
        if banner.display:
            retry = "" if state.retry_at is None else f"; retrying in {duration(max(0.0, state.retry_at - now))}"
            shown = "no data yet" if age is None else f"data shown is {duration(age)} old"
            # the reason is an exception's text (the appliance's words): plain text, never markup
            banner.update(Text(f" ✕ disconnected: {plain(state.down_reason)} · {shown}{retry} "), layout=False)
