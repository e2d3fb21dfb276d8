"""Job detail of a dead letter: payload, every attempt's error, a timeline, the review and the
job's parents and children (enter opens one); retry, review and discard it; ``[`` and ``]`` move
through the list it was opened from."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

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
from fleetbox.tui.widgets.text import ago, clock, counted, epoch, field, ms, plain

#: how the Review tab names the audit log's dead-letter actions
ACTION_NAMES = {"dead.review": "reviewed", "dead.retry": "retried", "dead.discard": "discarded"}


def _list(value: object) -> list[Json]:
    """The objects of a list the appliance sent (anything else in it, or no list: left out)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def timeline(letter: Json, job: Json | None) -> list[tuple[str, str]]:
    """(time, what happened) oldest first, from the dead letter and, when still there, its job."""
    get = partial(field, letter)
    events: list[tuple[object, str]] = [(get("jobCreatedAt"), f"created on {plain(get('queue'))}")]
    attempts = _list(field(job, "history")) or _list(get("history"))
    for a in attempts:
        worker = f" on {plain(a.get('workerId'))}" if a.get("workerId") else ""
        attempt = plain(a.get("attempt"))
        events.append((a.get("startedAt"), f"attempt {attempt} started{worker}"))
        if a.get("finishedAt"):
            outcome = plain(a.get("outcome") or "finished")
            error_class = plain(a.get("errorClass"), "")
            # "ran 3ms, then retry": the duration is the attempt's, not a delay before the retry
            # (found by hand: "retry after 0ms" read as a retry with no wait)
            events.append(
                (a["finishedAt"], f"attempt {attempt} ran {ms(a.get('durationMs'))}, then {outcome}: {error_class}")
            )
    events.append(
        (get("failedAt"), f"dead after {counted(get('attempts'), 'attempt')}: {plain(get('errorClass'), 'None')}")
    )
    if get("reviewedAt"):
        events.append((get("reviewedAt"), f"reviewed by {plain(get('reviewedBy'), 'None')}"))
    if get("retriedAt"):
        events.append((get("retriedAt"), f"retried as job {plain(get('retriedJobId'), 'None')}"))
    if get("discardedAt"):
        events.append((get("discardedAt"), "discarded"))
    ordered = sorted(events, key=lambda e: epoch(e[0]) or 0.0)
    return [(when if isinstance(when, str) else plain(when), what) for when, what in ordered]


@dataclass(frozen=True, slots=True)
class Preview:
    """Only the list row's preview of a payload (its first characters of JSON text): the job's
    detail, which has all of it, has not loaded (the appliance is away, or it is on its way)."""

    text: str


def payload_view(payload: object) -> JSON | Text:
    """The payload as highlighted JSON; escaped to ASCII when its text holds characters a
    terminal would act on; a note when it cannot be shown at all (too deep to encode). A
    :class:`Preview` is shown as the text it is, under a note saying so."""
    if isinstance(payload, Preview):
        shown = Text("(a preview, its first characters: the full payload loads with the job; ctrl+r)\n\n", style="dim")
        shown.append(plain(payload.text, ""))
        return shown
    try:
        text = json.dumps(payload, ensure_ascii=False, default=str)
        view = JSON(text)
        if plain(view.text.plain, "") != view.text.plain:
            view = JSON(text, ensure_ascii=True)
    except (ValueError, RecursionError) as exc:
        return Text(f"(the payload cannot be shown: {type(exc).__name__})", style="dim")
    return view


@dataclass(frozen=True, slots=True)
class DetailText:
    """What each part of the job detail shows."""

    title: Text
    payload: JSON | Text
    errors: Text
    timeline: Text
    review: Text


def detail_text(letter: Json, job: Json | None, payload: object, *, now: float, index: int, total: int) -> DetailText:
    """The job detail's title and tabs for a dead letter (and its job, once loaded): plain text,
    whatever the values' types."""
    get = partial(field, letter)
    reviewed = bool(get("reviewed"))
    title = Text()
    title.append(f" dead letter {plain(get('id'))} ", style="bold reverse")
    title.append(
        f"  job {plain(get('jobId'))} · {plain(get('queue'))} · {counted(get('attempts'), 'attempt')} · "
        f"dead {ago(get('failedAt'), now)} · {plain(get('status'))} · "
    )
    title.append(
        f"reviewed by {plain(get('reviewedBy'))}" if reviewed else "not reviewed",
        style="green" if reviewed else "bold yellow",
    )
    title.append(f"   ({index + 1} of {total})", style="dim")

    errors = Text()
    attempts = _list(get("history"))
    for a in reversed(attempts):
        errors.append(f"attempt {plain(a.get('attempt'))}", style="bold")
        errors.append(
            f"  {clock(a.get('startedAt'))} · {ms(a.get('durationMs'))} · {plain(a.get('outcome'), 'None')}\n"
        )
        errors.append(f"  {plain(a.get('errorClass') or None)}: ", style="bold red")
        errors.append(f"{plain(a.get('error'), '')}\n\n")
    if not attempts:
        errors.append(f"{plain(get('errorClass'), 'None')}: {plain(get('error'), 'None')}\n")

    lines = Text()
    for when, what in timeline(letter, job):
        lines.append(f"{clock(when)}  ", style="bold")
        lines.append(f"{what}\n")
    if job is None:
        lines.append("\n(the job's own record is archived or still loading: times from the dead letter)", style="dim")

    review = Text()
    if reviewed:
        review.append(f"Reviewed by {plain(get('reviewedBy'), 'None')} at {clock(get('reviewedAt'))}\n\n", style="bold")
        review.append(plain(get("resolutionNotes") or "(no notes)"))
    else:
        review.append("Not reviewed yet. Press m to review, with notes.", style="bold yellow")
    if get("retriedAt"):
        review.append(f"\n\nRetried at {clock(get('retriedAt'))} as job {plain(get('retriedJobId'), 'None')}")
    if get("discardedAt"):
        review.append(f"\n\nDiscarded at {clock(get('discardedAt'))}")
    actions = _list(field(job, "operatorActions"))
    if actions:
        review.append("\n\nHistory (the audit log)\n", style="bold")
        for action in actions:
            name = action.get("action", "")
            verb = ACTION_NAMES.get(name, plain(name, "")) if isinstance(name, str) else plain(name)
            review.append(f"{clock(action.get('at'))}  {plain(action.get('actor'), 'None')} {verb}")
            notes = field(action.get("details"), "notes")
            review.append(f": {plain(notes)}\n" if notes else "\n")
    return DetailText(title, payload_view(payload), errors, lines, review)


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
            # The job's detail carries its dead letter as it is now (reviewed, retried or
            # discarded elsewhere since the list was read): show that.
            now = field(self.job, "deadLetter")
            if isinstance(now, dict) and now.get("id") == self.letter.get("id"):
                self.letters[self.index] = {**self.letter, **{k: v for k, v in now.items() if k != "data"}}
            self._fill()

    def _payload(self) -> object:
        """The payload in full: list rows carry only a preview; the job's detail has all of it."""
        if self.letter.get("data") is not None:
            return self.letter["data"]
        if self.job is not None:
            return (self.job.get("deadLetter") or self.job).get("data")
        return Preview(plain(self.letter.get("dataPreview"), ""))

    def action_reload(self) -> None:
        """ctrl+r: the dead letter and its job again (changed elsewhere, or not loaded while the
        appliance was away)."""
        self.show_letter()

    def _fill(self) -> None:
        shown = detail_text(
            self.letter, self.job, self._payload(), now=self.fb.now(), index=self.index, total=len(self.letters)
        )
        self.query_one("#job-title", Static).update(shown.title)
        self.query_one("#job-payload", Static).update(shown.payload)
        self.query_one("#job-errors", Static).update(shown.errors)
        self.query_one("#job-timeline", Static).update(shown.timeline)
        self.query_one("#job-review", Static).update(shown.review)

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
        # On the dependencies tab the keys go to its table, so enter opens the job of a row as
        # the tab says; elsewhere back to the tabs (a hidden table must not keep the focus).
        relations = self.query_one("#job-deps", RelationsTable)
        if tabs.active == "deps":
            relations.focus()
        elif relations.has_focus:
            tabs.focus()

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
