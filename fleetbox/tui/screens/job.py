"""Job detail of a dead letter: payload, every attempt's error, a timeline, the review and the
job's parents and children (enter opens one); retry, review and discard it; ``[`` and ``]`` move
through the list it was opened from."""

from __future__ import annotations

import json
from collections.abc import Callable

from rich.json import JSON
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from fleetbox.tui.client import ClientError, Json
from fleetbox.tui.screens.base import LiveScreen
from fleetbox.tui.screens.graph import JobGraphScreen, RelationsTable, summary
from fleetbox.tui.widgets.header import StatusBar
from fleetbox.tui.widgets.modals import ConfirmModal, Review, ReviewModal
from fleetbox.tui.widgets.text import DASH, ago, clock, epoch, ms

#: how the Review tab names the audit log's dead-letter actions
ACTION_NAMES = {"dead.review": "reviewed", "dead.retry": "retried", "dead.discard": "discarded"}


def timeline(letter: Json, job: Json | None) -> list[tuple[str, str]]:
    """(time, what happened) oldest first, from the dead letter and, when still there, its job."""
    events: list[tuple[str, str]] = [(letter["jobCreatedAt"], f"created on {letter['queue']}")]
    attempts = (job or {}).get("history") or letter.get("history") or []
    for a in attempts:
        worker = f" on {a['workerId']}" if a.get("workerId") else ""
        events.append((a["startedAt"], f"attempt {a['attempt']} started{worker}"))
        if a.get("finishedAt"):
            outcome = a.get("outcome") or "finished"
            events.append(
                (
                    a["finishedAt"],
                    f"attempt {a['attempt']} {outcome} after {ms(a.get('durationMs'))}: {a.get('errorClass') or ''}",
                )
            )
    events.append((letter["failedAt"], f"dead after {letter['attempts']} attempts: {letter.get('errorClass')}"))
    if letter.get("reviewedAt"):
        events.append((letter["reviewedAt"], f"reviewed by {letter.get('reviewedBy')}"))
    if letter.get("retriedAt"):
        events.append((letter["retriedAt"], f"retried as job {letter.get('retriedJobId')}"))
    if letter.get("discardedAt"):
        events.append((letter["discardedAt"], "discarded"))
    return sorted(events, key=lambda e: epoch(e[0]) or 0.0)


class JobDetailScreen(LiveScreen):
    """One dead letter in full (see the module docstring)."""

    BINDINGS = [
        Binding("r", "retry", "Retry", id="job.retry", tooltip="Retry this dead letter (asks first)"),
        Binding("m", "review", "Review", id="job.review", tooltip="Mark reviewed, with reviewer and notes"),
        Binding("D", "discard", "Discard…", id="job.discard", tooltip="Discard this dead letter (asks first)"),
        Binding("left_square_bracket", "step(-1)", "Previous", id="job.previous", tooltip="The previous dead letter"),
        Binding("right_square_bracket", "step(1)", "Next", id="job.next", tooltip="The next dead letter"),
        Binding("h", "tab(-1)", "Tab left", show=False, id="job.tab_left"),
        Binding("l", "tab(1)", "Tab right", show=False, id="job.tab_right"),
    ]
    TABS = ("payload", "errors", "timeline", "review", "deps")

    def __init__(self, letters: list[Json], index: int, *, on_change: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.letters = letters
        self.index = index
        self.job: Json | None = None
        self.on_change = on_change

    @property
    def letter(self) -> Json:
        """The dead letter shown."""
        return self.letters[self.index]

    def crumbs(self) -> str:
        """``dead letters ▸ 17``."""
        return f"dead letters ▸ {self.letter['id']}"

    def compose_body(self) -> ComposeResult:
        yield Static(id="job-title")
        with TabbedContent(id="job-tabs", initial="payload"):
            with TabPane("Payload", id="payload"), VerticalScroll():
                yield Static(id="job-payload")
            with TabPane("Errors", id="errors"), VerticalScroll():
                yield Static(id="job-errors")
            with TabPane("Timeline", id="timeline"), VerticalScroll():
                yield Static(id="job-timeline")
            with TabPane("Review", id="review"), VerticalScroll():
                yield Static(id="job-review")
            with TabPane("Dependencies", id="deps"):
                yield Static(id="job-deps-summary", classes="graph-summary")
                yield RelationsTable(id="job-deps")

    def on_mount(self) -> None:
        self.show_letter()

    def show_letter(self) -> None:
        """Fill every tab from the dead letter, then fetch its job for the timeline."""
        self.job = None
        self.query_one(StatusBar).crumbs = self.crumbs()
        self._fill()
        self.run_worker(self._load_job(self.letter["jobId"]), group="job-load", exclusive=True, exit_on_error=False)
        self._load_deps(self.letter["jobId"])

    # Started by the decorator only when it runs: stepping fast through the list cancels workers
    # that never started, and no coroutine is left unawaited.
    @work(group="job-deps", exclusive=True, exit_on_error=False)
    async def _load_deps(self, job_id: int) -> None:
        """The job's parents and children, for the Dependencies tab."""
        try:
            deps = await self.fb.client.job_dependencies(job_id)
        except ClientError as exc:
            self.notify(f"Dependencies of job {job_id}: {exc}", severity="warning")
            return
        if self.letter["jobId"] == job_id:
            self.query_one("#job-deps-summary", Static).update(summary(deps))
            self.query_one("#job-deps", RelationsTable).show(deps)

    @on(DataTable.RowSelected, "#job-deps")
    def _relation_selected(self) -> None:
        other = self.query_one("#job-deps", RelationsTable).job_at_cursor()
        if other is not None:
            self.app.push_screen(JobGraphScreen(other))

    async def _load_job(self, job_id: int) -> None:
        try:
            self.job = await self.fb.client.job(job_id)
        except ClientError as exc:
            self.notify(f"Job {job_id}: {exc}", severity="warning")
            return
        if self.letter["jobId"] == job_id:
            self._fill()

    def _payload(self) -> object:
        """The payload in full: list rows carry only a preview; the job's detail has all of it."""
        if self.letter.get("data") is not None:
            return self.letter["data"]
        if self.job is not None:
            return (self.job.get("deadLetter") or self.job).get("data")
        return self.letter.get("dataPreview")

    def _fill(self) -> None:
        letter = self.letter
        now = self.fb.now()
        title = Text()
        title.append(f" dead letter {letter['id']} ", style="bold reverse")
        title.append(
            f"  job {letter['jobId']} · {letter['queue']} · {letter['attempts']} attempts · "
            f"dead {ago(letter.get('failedAt'), now)} · {letter['status']} · "
        )
        title.append(
            f"reviewed by {letter['reviewedBy']}" if letter.get("reviewed") else "not reviewed",
            style="green" if letter.get("reviewed") else "bold yellow",
        )
        title.append(f"   ({self.index + 1} of {len(self.letters)})", style="dim")
        self.query_one("#job-title", Static).update(title)
        self.query_one("#job-payload", Static).update(JSON(json.dumps(self._payload(), ensure_ascii=False)))

        errors = Text()
        attempts = letter.get("history") or []
        for a in reversed(attempts):
            errors.append(f"attempt {a.get('attempt')}", style="bold")
            errors.append(f"  {clock(a.get('startedAt'))} · {ms(a.get('durationMs'))} · {a.get('outcome')}\n")
            errors.append(f"  {a.get('errorClass') or DASH}: ", style="bold red")
            errors.append(f"{a.get('error') or ''}\n\n")
        if not attempts:
            errors.append(f"{letter.get('errorClass')}: {letter.get('error')}\n")
        self.query_one("#job-errors", Static).update(errors)

        lines = Text()
        for when, what in timeline(letter, self.job):
            lines.append(f"{clock(when)}  ", style="bold")
            lines.append(f"{what}\n")
        if self.job is None:
            lines.append(
                "\n(the job's own record is archived or still loading: times from the dead letter)", style="dim"
            )
        self.query_one("#job-timeline", Static).update(lines)

        review = Text()
        if letter.get("reviewed"):
            review.append(
                f"Reviewed by {letter.get('reviewedBy')} at {clock(letter.get('reviewedAt'))}\n\n", style="bold"
            )
            review.append(letter.get("resolutionNotes") or "(no notes)")
        else:
            review.append("Not reviewed yet. Press m to review, with notes.", style="bold yellow")
        if letter.get("retriedAt"):
            review.append(f"\n\nRetried at {clock(letter['retriedAt'])} as job {letter.get('retriedJobId')}")
        if letter.get("discardedAt"):
            review.append(f"\n\nDiscarded at {clock(letter['discardedAt'])}")
        actions = (self.job or {}).get("operatorActions") or []
        if actions:
            review.append("\n\nHistory (the audit log)\n", style="bold")
            for action in actions:
                verb = ACTION_NAMES.get(action.get("action", ""), action.get("action", ""))
                review.append(f"{clock(action.get('at'))}  {action.get('actor')} {verb}")
                notes = (action.get("details") or {}).get("notes")
                review.append(f": {notes}\n" if notes else "\n")
        self.query_one("#job-review", Static).update(review)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Retry, review and discard only an open dead letter."""
        allowed = super().check_action(action, parameters)
        if allowed and action in ("retry", "review", "discard") and self.letter["status"] != "open":
            return None
        return allowed

    def action_step(self, step: int) -> None:
        """The previous or next dead letter of the list."""
        target = self.index + step
        if 0 <= target < len(self.letters):
            self.index = target
            self.show_letter()
            self.refresh_header()
            self.refresh_bindings()

    def action_tab(self, step: int) -> None:
        """The tab to the left or right."""
        tabs = self.query_one(TabbedContent)
        current = self.TABS.index(tabs.active) if tabs.active in self.TABS else 0
        tabs.active = self.TABS[(current + step) % len(self.TABS)]

    def _replace(self, letter: Json) -> None:
        self.letters[self.index] = letter
        if self.on_change is not None:
            self.on_change()
        self._fill()
        self.refresh_bindings()
        # The job detail carries the audit log's history of this dead letter: fetch it again.
        self.run_worker(self._load_job(letter["jobId"]), group="job-load", exit_on_error=False)

    def action_retry(self) -> None:
        """Retry this dead letter."""
        dead_id = self.letter["id"]

        async def run() -> None:
            try:
                job_id = await self.fb.client.retry_dead(dead_id)
            except ClientError as exc:
                self.notify(str(exc), title=f"Dead letter {dead_id} not retried", severity="error")
                return
            self.notify(f"Dead letter {dead_id} retried as job {job_id}", title="Retried")
            self._replace({**self.letter, "status": "retried", "retriedJobId": job_id})

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(run(), group="job-action", exit_on_error=False)

        self.app.push_screen(
            ConfirmModal(f"Retry dead letter {dead_id} (job {self.letter['jobId']})?", yes="Retry"), answered
        )

    def action_discard(self) -> None:
        """Discard this dead letter."""
        dead_id = self.letter["id"]

        async def run() -> None:
            try:
                letter = await self.fb.client.discard_dead(dead_id)
            except ClientError as exc:
                self.notify(str(exc), title=f"Dead letter {dead_id} not discarded", severity="error")
                return
            self.notify(f"Dead letter {dead_id} discarded", title="Discarded")
            self._replace(letter)

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(run(), group="job-action", exit_on_error=False)

        self.app.push_screen(
            ConfirmModal(f"Discard dead letter {dead_id}? It stays on record.", yes="Discard"), answered
        )

    def action_review(self) -> None:
        """Mark this dead letter reviewed, with notes."""
        dead_id = self.letter["id"]

        async def run(review: Review) -> None:
            try:
                letter = await self.fb.client.review_dead(dead_id, reviewed_by=review.reviewed_by, notes=review.notes)
            except ClientError as exc:
                self.notify(str(exc), title=f"Dead letter {dead_id} not reviewed", severity="error")
                return
            self.notify(f"Dead letter {dead_id} reviewed by {review.reviewed_by}", title="Reviewed")
            self._replace(letter)

        def answered(review: Review | None) -> None:
            if review is not None:
                self.run_worker(run(review), group="job-action", exit_on_error=False)

        modal = ReviewModal(f"dead letter {dead_id}", self.fb.client.operator, self.letter.get("resolutionNotes"))
        self.app.push_screen(modal, answered)
