"""The command palette (``:`` or ctrl+p): go to a screen or a queue, act on a queue, change the
tick interval. Queue names come from the latest tick, so ``:pa not`` finds "pause notifications"."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from fleetbox.protocol import INTERVALS_MS
from fleetbox.tui.client import DeadFilter
from fleetbox.tui.host import Host

Command = tuple[str, Callable[[], object], str]


class FleetboxCommands(Provider):
    """Every command the palette offers."""

    @property
    def fb(self) -> Host:
        """The app, as the palette uses it (see :mod:`fleetbox.tui.host`)."""
        return cast(Host, self.app)

    def commands(self) -> list[Command]:
        """(text, what it does, help) for the current state."""
        fb, app = self.fb, self.app
        run = app.call_later
        out: list[Command] = [
            ("queues", partial(app.switch_mode, "queues"), "The queue list"),
            ("dead letters", partial(app.switch_mode, "dead"), "The dead-letter list"),
            ("alerts", partial(app.switch_mode, "alerts"), "Open and recent alerts"),
            ("schedules", partial(app.switch_mode, "schedules"), "Cron schedules"),
            ("help", fb.action_help, "The keys of this screen"),
            ("quit", app.exit, "Leave the TUI (the appliance keeps running)"),
        ]
        out += [
            (f"interval {ms // 1000}s", partial(fb.set_interval_ms, ms), "Ticks every so often") for ms in INTERVALS_MS
        ]
        for name, row in fb.state.rows.items():
            out.append((f"queue {name}", partial(fb.open_queue, name), f"Detail of {name}"))
            out.append((f"variants {name}", partial(fb.open_retry_variants, name), f"Retry-variant report of {name}"))
            out.append(
                (
                    f"dead {name}",
                    partial(run, fb.open_dead_letters, DeadFilter(queue=name)),
                    f"Unreviewed dead letters of {name}",
                )
            )
            if not fb.read_only:
                verb = "resume" if row["paused"] else "pause"
                out.append((f"{verb} {name}", partial(fb.ask_pause, name), f"{verb.capitalize()} {name} (asks first)"))
                out.append(
                    (
                        f"clear {name}",
                        partial(fb.ask_clear, name),
                        f"Remove {name}'s jobs not yet started (type its name)",
                    )
                )
        return out

    async def discover(self) -> Hits:
        """What the palette shows before anything is typed."""
        for text, callback, help_text in self.commands():
            if not text.startswith(("pause ", "resume ", "clear ", "dead ", "variants ")):
                yield DiscoveryHit(text, callback, help=help_text)

    async def search(self, query: str) -> AsyncIterator[Hit]:
        """Fuzzy matches of the query."""
        matcher = self.matcher(query)
        for text, callback, help_text in self.commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback, help=help_text)
