"""A queue's retry experiment: per variant the jobs, the eventual success rate, attempts per
success, extra requests, time to success (p50/p95), the dead-letter rate and its verdict against
the control; the overall verdict and the weights' history below. Opened from the queue detail
(``v``) or the command palette (``variants QUEUE``)."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Label, Static

from fleetbox.tui.client import ClientError, Json
from fleetbox.tui.screens.base import LiveScreen
from fleetbox.tui.widgets.text import DASH, clock, count, duration

#: (key, label, width); figures are right-aligned
COLUMNS = [
    ("label", "VARIANT", 16),
    ("weight", "WEIGHT", 6),
    ("jobs", "JOBS", 8),
    ("success", "SUCCESS", 8),
    ("attempts", "ATT/OK", 6),
    ("extra", "EXTRA REQ", 9),
    ("p50", "P50 OK", 7),
    ("p95", "P95 OK", 7),
    ("dead", "DEAD%", 6),
    ("verdict", "VERDICT", 44),
]


def _pct(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:.1f}%"


def _right(text: str, style: str = "") -> Text:
    return Text(text, style=style, justify="right")


def variant_cells(v: Json, verdict: str) -> dict[str, Text]:
    """A variant's cells by column key."""
    attempts = v.get("attemptsPerSuccess")
    return {
        "label": Text(str(v["label"]), style="bold"),
        "weight": _right(f"{float(v.get('weight') or 0):.2f}"),
        "jobs": _right(count(int(v.get("jobs") or 0))),
        "success": _right(_pct(v.get("successRate"))),
        "attempts": _right(DASH if attempts is None else f"{attempts:.2f}"),
        "extra": _right(count(int(v.get("extraRequests") or 0))),
        "p50": _right(duration(v.get("timeToSuccessP50Seconds"))),
        "p95": _right(duration(v.get("timeToSuccessP95Seconds"))),
        "dead": _right(_pct(v.get("deadLetterRate")), "bold red" if (v.get("deadLetterRate") or 0) > 0 else ""),
        "verdict": Text(verdict, style="green" if "better" in verdict else ""),
    }


def verdicts(report: Json) -> dict[str, str]:
    """Each variant's verdict: the comparison against the control, or ``control`` for it."""
    out: dict[str, str] = {}
    for c in report.get("comparisons") or []:
        p = c.get("pValue")
        out[str(c["label"])] = f"{c.get('verdict')}" + ("" if p is None else f" (p={p:.3g})")
        out.setdefault(str(c.get("control")), "control")
    return out


class RetryVariantsScreen(LiveScreen):
    """One queue's retry-variant report (see the module docstring)."""

    AUTO_FOCUS = "#variants"

    def __init__(self, queue: str) -> None:
        super().__init__()
        self.queue = queue
        self.report: Json | None = None
        #: the report arrived
        self.loaded = False

    def crumbs(self) -> str:
        """``queues ▸ email ▸ retry variants``."""
        return f"queues ▸ {self.queue} ▸ retry variants"

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="live-data"):
            yield Static(id="variants-summary")
            table: DataTable[Text] = DataTable(id="variants", cursor_type="row", zebra_stripes=True)
            for key, label, width in COLUMNS:
                table.add_column(
                    Text(label, justify="right") if key not in ("label", "verdict") else label, key=key, width=width
                )
            yield table
            yield Label("Weights over time", classes="section-title")
            with VerticalScroll(id="variants-history-box"):
                yield Static(id="variants-history")

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        """Fetch the report again (ctrl+r)."""
        self._load()

    # The decorator's worker starts the coroutine only when it runs: a reload that cancels one
    # not yet started leaves no coroutine unawaited.
    @work(group="variants-load", exclusive=True, exit_on_error=False)
    async def _load(self) -> None:
        try:
            report = await self.fb.client.retry_variants(self.queue)
        except ClientError as exc:
            self.notify(f"Retry variants of {self.queue}: {exc}", severity="error")
            return
        self.report = report
        table = self.query_one("#variants", DataTable)
        table.clear()
        words = verdicts(report)
        single = len(report.get("variants") or []) <= 1
        for v in report.get("variants") or []:
            label = str(v["label"])
            verdict = words.get(label, "no experiment: one variant" if single else DASH)
            cells = variant_cells(v, verdict)
            table.add_row(*(cells[key] for key, _, _ in COLUMNS), key=label)
        summary = Text()
        summary.append(f" {self.queue} ", style="bold reverse")
        summary.append(f"  mode {report.get('mode')} · since {clock(report.get('since'))}\n ")
        summary.append(str(report.get("verdict") or ""), style="bold")
        self.query_one("#variants-summary", Static).update(summary)
        history = Text()
        for epoch_ in report.get("history") or []:
            weights = ", ".join(f"{k} {float(w):.2f}" for k, w in (epoch_.get("weights") or {}).items())
            history.append(f"{clock(epoch_.get('startedAt'))}  {epoch_.get('source')}: {weights}")
            if epoch_.get("reason"):
                history.append(f" — {epoch_['reason']}")
            if epoch_.get("actor"):
                history.append(f" (by {epoch_['actor']})")
            history.append("\n")
        if not history:
            history.append("the weights never changed", style="dim")
        self.query_one("#variants-history", Static).update(history)
        self.loaded = True
