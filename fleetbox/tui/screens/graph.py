"""A job's place in its dependency graph: its parents and children, where each is now, its result
and why it was cancelled. :class:`RelationsTable` lists the parents and children (the dead-letter
detail's Dependencies tab has one too); enter on a row opens that job's :class:`JobGraphScreen`,
so the operator walks the graph up and down, esc coming back."""

from __future__ import annotations

import asyncio
import json

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Label, Static

from fleetbox.tui.client import ClientError, Json
from fleetbox.tui.screens.base import LiveScreen
from fleetbox.tui.widgets.text import DASH, ago, clock, plain

#: how a state or an edge is coloured (anything else plain)
_STYLES = {
    "succeeded": "green",
    "skipped": "green",
    "ignored": "yellow",
    "blocked": "yellow",
    "retrying": "yellow",
    "running": "cyan",
    "dead": "bold red",
    "failed": "bold red",
    "cancelled": "red",
    "cleared": "red",
}
#: the longest result shown in full before it is cut (the API has all of it)
MAX_RESULT_CHARS = 2000


def _styled(word: object, missing: str = DASH) -> Text:
    shown = plain(word, missing)
    return Text(shown, style=_STYLES.get(shown, "dim" if word is None else ""))


class RelationsTable(DataTable[Text]):
    """A job's parents, then its children: one row each, keyed by the other job's id."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.add_column("", key="relation", width=7)
        self.add_column(Text("JOB", justify="right"), key="job", width=10)
        self.add_column("STEP", key="step", width=22)
        self.add_column("NOW", key="state", width=10)
        self.add_column("EDGE", key="edge", width=10)

    def show(self, deps: Json | None) -> None:
        """Fill from ``GET /api/queue/jobs/{id}/dependencies`` (None: nothing to show)."""
        self.clear()
        if deps is None:
            return
        for relation, links in (("parent", deps.get("parents") or []), ("child", deps.get("children") or [])):
            for link in links:
                key = f"{relation}:{link['jobId']}"
                if key in self.rows:
                    continue
                self.add_row(
                    Text(relation, style="bold" if relation == "parent" else ""),
                    Text(str(link["jobId"]), justify="right"),
                    Text(link.get("step") or DASH),
                    _styled(link.get("state"), "deleted"),
                    # an unresolved edge: the child still waits on this parent
                    _styled(link.get("edge"), "open"),
                    key=key,
                )

    def job_at_cursor(self) -> int | None:
        """The job id of the highlighted row."""
        if self.row_count == 0:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return None if key is None else int(key.partition(":")[2])


def summary(deps: Json | None) -> Text:
    """One paragraph: how many parents and children, the result, why it was cancelled."""
    if deps is None:
        return Text("No dependency record: the job is not there (archived, or never existed).", style="dim")
    parents, children = deps.get("parents") or [], deps.get("children") or []
    out = Text()
    if not parents and not children:
        out.append("No parents and no children: this job is not part of a dependency graph.", style="dim")
    else:
        waiting = sum(1 for p in parents if p.get("edge") is None)
        out.append(f"{len(parents)} parent{'s' if len(parents) != 1 else ''}", style="bold")
        if waiting:
            out.append(f" ({waiting} not finished: this job waits for them)", style="yellow")
        out.append(" · ")
        out.append(f"{len(children)} child{'ren' if len(children) != 1 else ''}", style="bold")
        held = sum(1 for c in children if c.get("state") == "blocked" and c.get("edge") is None)
        if held:
            out.append(f" ({held} waiting on this job)", style="yellow")
        out.append("  — enter opens the job of a row")
    cancellation = deps.get("cancellation")
    if cancellation:
        out.append(f"\nCancelled {clock(cancellation.get('at'))}: ", style="bold red")
        out.append(str(cancellation.get("reason") or ""))
        if cancellation.get("actor"):
            out.append(f" (by {cancellation['actor']})")
    if deps.get("hasResult"):
        text = json.dumps(deps.get("result"), ensure_ascii=False)
        if len(text) > MAX_RESULT_CHARS:
            text = text[:MAX_RESULT_CHARS] + f"… ({len(text):,} characters)"
        out.append("\nResult: ", style="bold")
        out.append(text)
    return out


class JobGraphScreen(LiveScreen):
    """Any job (not only a dead letter's): its state and its parents and children."""

    AUTO_FOCUS = "#graph-relations"

    def __init__(self, job_id: int) -> None:
        super().__init__()
        self.job_id = job_id
        self.job: Json | None = None
        self.deps: Json | None = None
        #: both answers arrived (or failed)
        self.loaded = False

    def crumbs(self) -> str:
        """``job 17 ▸ dependencies``."""
        return f"job {self.job_id} ▸ dependencies"

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="live-data graph-body"):
            yield Static(id="graph-title")
            yield Static(id="graph-summary", classes="graph-summary")
            yield Label("Parents and children", classes="section-title")
            yield RelationsTable(id="graph-relations")

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        """Fetch the job and its relations again."""
        self._load()

    # The decorator's worker starts the coroutine only when it runs: a reload that cancels one
    # not yet started leaves no coroutine unawaited.
    @work(group="graph-load", exclusive=True, exit_on_error=False)
    async def _load(self) -> None:
        client = self.fb.client
        try:
            self.job, self.deps = await asyncio.gather(client.job(self.job_id), client.job_dependencies(self.job_id))
        except ClientError as exc:
            self.notify(f"Job {self.job_id}: {exc}", severity="error")
            return
        self.query_one("#graph-title", Static).update(self._title())
        self.query_one("#graph-summary", Static).update(summary(self.deps))
        self.query_one(RelationsTable).show(self.deps)
        self.loaded = True

    def _title(self) -> Text:
        title = Text()
        title.append(f" job {self.job_id} ", style="bold reverse")
        job = self.job
        if job is None:
            title.append("  not found: archived by retention, or never existed", style="dim")
            return title
        title.append(f"  {plain(job.get('queue'))} · ")
        title.append_text(_styled(job.get("state")))
        created = ago(job.get("createdAt"), self.fb.now())
        cap = job.get("maxAttempts")
        attempts = plain(job.get("attempts")) + ("" if cap is None else f"/{plain(cap)}")
        title.append(f" · {attempts} attempts · created {created}")
        if job.get("finishedAt"):
            title.append(f" · finished {clock(job['finishedAt'])}")
        if job.get("lastErrorClass"):
            title.append(f"\n last error {plain(job['lastErrorClass'])}: ", style="bold red")
            title.append(plain(job.get("lastError"), ""))
        if job.get("deadLetterId"):
            title.append(
                f"\n dead letter {plain(job['deadLetterId'])} (its review is on the Dead letters screen)", style="dim"
            )
        return title

    @on(DataTable.RowSelected, "#graph-relations")
    def _selected(self) -> None:
        other = self.query_one(RelationsTable).job_at_cursor()
        if other is not None:
            self.app.push_screen(JobGraphScreen(other))
