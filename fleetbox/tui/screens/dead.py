"""Dead letters: filter by queue, error class, text and review state; mark rows; retry, review,
discard; retry everything matching the filter behind a typed count that the server checks again."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Iterable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from fleetbox.tui.client import ClientError, DeadFilter, DeadPage, Disconnected, Json
from fleetbox.tui.screens.base import LiveScreen, cursor_key
from fleetbox.tui.widgets.modals import ConfirmModal, GroupsModal, Review, ReviewModal, TypedConfirmModal
from fleetbox.tui.widgets.text import DASH, ago, field, plain

#: dead letters per request
PAGE = 200
#: load the next page when the cursor is this close to the last loaded row
PREFETCH = 10
#: rows added to the table between two frames while a page is shown
ROW_SLICE = 50
#: mark cells rewritten per slice (one slice takes well under a frame's 100 ms)
MARK_SLICE = 1000
MARK = Text("■", style="bold magenta")
NO_MARK = Text(" ")
#: (key, label, width)
COLUMNS = [
    ("mark", " ", 1),
    ("id", "ID", 7),
    ("failed", "FAILED", 10),
    ("queue", "QUEUE", 16),
    ("job", "JOB", 8),
    ("att", "ATT", 3),
    ("class", "ERROR CLASS", 19),
    ("error", "MESSAGE", 44),
    ("review", "REVIEWED", 12),
]
_REVIEWED_LABEL = {False: "unreviewed", True: "reviewed", None: "reviewed or not"}


def cells(letter: Json, now: float, marked: bool) -> list[Text]:
    """A dead letter's row (plain text, whatever the values' types)."""
    return [
        MARK if marked else NO_MARK,
        Text(plain(field(letter, "id")), justify="right"),
        Text(ago(field(letter, "failedAt"), now)),
        Text(plain(field(letter, "queue"))),
        Text(plain(field(letter, "jobId")), justify="right"),
        Text(plain(field(letter, "attempts")), justify="right"),
        Text(plain(field(letter, "errorClass") or None), style="red"),
        Text(plain(field(letter, "error"), ""), no_wrap=True, overflow="ellipsis"),
        Text(f"✎ {plain(field(letter, 'reviewedBy'))}", style="green")
        if field(letter, "reviewed")
        else Text(DASH, style="dim"),
    ]


class DeadLettersScreen(LiveScreen):
    """The dead-letter list (see the module docstring)."""

    CRUMBS = "dead letters"
    AUTO_FOCUS = "#dead"
    BINDINGS = [
        Binding("enter", "inspect", "Inspect", id="dead.inspect", tooltip="Payload, attempts, timeline, review"),
        Binding("space", "mark", "Mark", id="dead.mark", tooltip="Mark or unmark the row for a bulk action"),
        Binding("a", "mark_all", "Mark all", id="dead.mark_all", tooltip="Mark every loaded row (again: unmark all)"),
        Binding("r", "retry", "Retry", id="dead.retry", tooltip="Retry the marked dead letters (or the highlighted)"),
        Binding(
            "R",
            "retry_all",
            "Retry all…",
            id="dead.retry_all",
            tooltip="Retry every dead letter matching the filter (type the count)",
        ),
        Binding("m", "review", "Review", id="dead.review", tooltip="Mark reviewed, with reviewer and notes"),
        Binding(
            "M",
            "review_all",
            "Review all…",
            id="dead.review_all",
            show=False,
            tooltip="Mark every dead letter matching the filter reviewed (notes, then type the count)",
        ),
        Binding("D", "discard", "Discard…", id="dead.discard", tooltip="Discard the marked (or the highlighted)"),
        Binding(
            "X",
            "discard_all",
            "Discard all…",
            id="dead.discard_all",
            show=False,
            tooltip="Discard every dead letter matching the filter (type the count)",
        ),
        Binding(
            "e",
            "groups",
            "Errors",
            id="dead.groups",
            tooltip="Group by error class and message: show, retry, review or discard a group",
        ),
        Binding(
            "slash",
            "filter",
            "Filter",
            id="dead.filter",
            tooltip="Filter: queue:NAME error:CLASS reviewed:yes|no|all and text in the message",
        ),
        Binding("v", "cycle_reviewed", "Reviewed?", id="dead.reviewed", tooltip="Show unreviewed, reviewed, or both"),
        Binding("j", "cursor('down')", "Down", show=False),
        Binding("k", "cursor('up')", "Up", show=False),
        Binding("g", "cursor('first')", "First", show=False, tooltip="The first row"),
        Binding("G", "cursor('last')", "Last", show=False, tooltip="The last loaded row (loads the next page)"),
    ]

    def __init__(self, flt: DeadFilter | None = None) -> None:
        super().__init__()
        self.filter = flt or DeadFilter()
        #: loaded dead letters by id, newest first
        self.letters: dict[int, Json] = {}
        self.marks: set[int] = set()
        self.next_before: int | None = None
        self.total: int | None = None
        self.total_capped = False
        #: a page is being fetched. Not ``loading``: that is Textual's own reactive, which puts a
        #: loading indicator in place of the whole screen; set on a screen shown for the first time,
        #: the screen was never drawn (the first press of ``2`` showed nothing: issue 12)
        self.fetching = False
        #: something changed them (an action here or in the job detail): reload on return
        self.dirty = False
        #: bumped by every full reload, so a late "next page" of an older list is dropped
        self._generation = 0

    def compose_body(self) -> ComposeResult:
        yield Input(
            placeholder="queue:NAME error:CLASS reviewed:yes|no|all text…  (enter applies, esc cancels)",
            id="dead-filter",
            classes="filter",
        )
        yield Static(id="dead-summary")
        table: DataTable[Text] = DataTable(id="dead", cursor_type="row", zebra_stripes=True, classes="live-data")
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        yield table

    def on_mount(self) -> None:
        self.reload()

    def on_screen_resume(self) -> None:
        """Back from a job or a dialog: reload when something changed."""
        super().on_screen_resume()
        if self.dirty or self.fb.dead_changed:
            self.reload()

    @property
    def table(self) -> DataTable[Text]:
        """The dead-letter table."""
        return self.query_one("#dead", DataTable)

    def highlighted(self) -> int | None:
        """The id of the highlighted dead letter."""
        key = cursor_key(self.table)
        return None if key is None else int(key)

    def targets(self) -> list[int]:
        """The marked dead letters, or the highlighted one."""
        if self.marks:
            return [i for i in self.letters if i in self.marks]
        current = self.highlighted()
        return [] if current is None else [current]

    # -- loading ----------------------------------------------------------------------------

    def set_filter(self, flt: DeadFilter) -> None:
        """Show another selection (from the queue screens or the palette)."""
        self.filter = flt
        self.marks.clear()
        self.reload()

    def reload(self) -> None:
        """Load the first page again, keeping the cursor on the same dead letter when it is still there."""
        self.dirty = self.fb.dead_changed = False
        self._generation += 1
        self.run_worker(self._load(None, self._generation), group="dead-load", exclusive=True, exit_on_error=False)

    def action_reload(self) -> None:
        """ctrl+r."""
        self.reload()

    async def _load(self, before: int | None, generation: int) -> None:
        self.fetching = True
        self.paint()
        try:
            page = await self.fb.client.dead_letters(self.filter, before=before, limit=PAGE)
            if generation == self._generation:
                await self.apply_page(page, reset=before is None, generation=generation)
        except ClientError as exc:
            self.notify(f"Dead letters: {exc}", severity="error")
        finally:
            if generation == self._generation:  # (a reload that replaced this one is fetching now)
                self.fetching = False
            self.paint()

    async def apply_page(self, page: DeadPage, *, reset: bool, generation: int) -> None:
        """Show a page: the first one replaces the list, a next one extends it. Rows are added
        ``ROW_SLICE`` at a time with a frame in between, so a page never holds up the keys."""
        table = self.table
        now = self.fb.now()
        current, row = self.highlighted(), table.cursor_row
        if reset:
            table.clear()
            self.letters.clear()
            self.total, self.total_capped = page.total, page.total_capped
            self.fb.state.new_dead = self.fb.state.changed_dead = 0
        for start in range(0, len(page.letters), ROW_SLICE):
            if start:
                await asyncio.sleep(0)  # let the app draw and take keys between slices
                if generation != self._generation:
                    return  # a reload replaced the list meanwhile
            for letter in page.letters[start : start + ROW_SLICE]:
                self.letters[letter["id"]] = letter
                table.add_row(*cells(letter, now, letter["id"] in self.marks), key=str(letter["id"]))
        self.marks &= self.letters.keys()
        self.next_before = page.next_before
        if reset and table.row_count:
            target = table.get_row_index(str(current)) if current in self.letters else min(row, table.row_count - 1)
            table.move_cursor(row=target, animate=False)
        # Thousands of loaded rows make every full garbage collection scan them: a pause of
        # hundreds of milliseconds every few pages. What is loaded now lives as long as the list,
        # so move it out of the collector's sight (objects made later are collected as usual).
        gc.freeze()

    @on(DataTable.RowHighlighted, "#dead")
    def _near_end(self, event: DataTable.RowHighlighted) -> None:
        if self.next_before is not None and not self.fetching and event.cursor_row >= self.table.row_count - PREFETCH:
            self.fetching = True
            self.run_worker(self._load(self.next_before, self._generation), group="dead-more", exit_on_error=False)

    def paint(self) -> None:
        """The summary line: filter, counts, marks and new arrivals."""
        if not self.drawable:
            return
        line = Text()
        line.append(f" {_REVIEWED_LABEL[self.filter.reviewed]} ", style="bold reverse")
        described = self.filter.as_text()
        line.append(f"  filter: {described}" if described else "  no filter")
        total = "?" if self.total is None else f"{self.total:,}{'+' if self.total_capped else ''}"
        line.append(f" · {total} matching · {len(self.letters):,} loaded")
        if self.fetching:
            line.append(" · loading…", style="italic")
        if self.marks:
            line.append(f" · {len(self.marks):,} marked", style="bold magenta")
        new, changed = self.fb.state.new_dead, self.fb.state.changed_dead
        if new:
            line.append(f"   ⚑ {new:,} new dead letter{'s' if new != 1 else ''}", style="bold yellow")
        if changed:
            line.append(f"   ⚑ {changed:,} changed elsewhere", style="bold yellow")
        if new or changed:
            line.append(": ctrl+r loads", style="bold yellow")
        self.query_one("#dead-summary", Static).update(line, layout=False)  # one line, fixed height

    # -- moving and marking -----------------------------------------------------------------

    def action_cursor(self, direction: str) -> None:
        """Vim-style movement: down, up, first or last row."""
        table = self.table
        if direction == "down":
            table.action_cursor_down()
        elif direction == "up":
            table.action_cursor_up()
        elif table.row_count:
            table.move_cursor(row=0 if direction == "first" else table.row_count - 1)

    def action_mark(self) -> None:
        """Mark or unmark the highlighted row, then move down."""
        current = self.highlighted()
        if current is None:
            return
        if current in self.marks:
            self.marks.discard(current)
        else:
            self.marks.add(current)
        self.table.update_cell(str(current), "mark", MARK if current in self.marks else NO_MARK)
        self.table.action_cursor_down()
        self.paint()

    def action_mark_all(self) -> None:
        """Mark every loaded row, or unmark all when all are marked."""
        unmark = len(self.marks) == len(self.letters)
        changed: list[int] = list(self.marks) if unmark else [i for i in self.letters if i not in self.marks]
        self.marks = set() if unmark else set(self.letters)
        self.paint()
        self.run_worker(self._redraw_marks(changed), group="dead-marks", exit_on_error=False)

    async def _redraw_marks(self, ids: Iterable[int]) -> None:
        """Rewrite the mark column in slices, so that thousands of rows never hold up a frame."""
        table = self.table
        pending = list(ids)
        for start in range(0, len(pending), MARK_SLICE):
            for dead_id in pending[start : start + MARK_SLICE]:
                if str(dead_id) in table.rows:
                    table.update_cell(str(dead_id), "mark", MARK if dead_id in self.marks else NO_MARK)
            await asyncio.sleep(0)  # let the app draw a frame between slices

    # -- filtering --------------------------------------------------------------------------

    def action_filter(self) -> None:
        """Open the filter box with the current filter."""
        box = self.query_one("#dead-filter", Input)
        reviewed = {False: "no", True: "yes", None: "all"}[self.filter.reviewed]
        box.value = " ".join(p for p in (self.filter.as_text(), f"reviewed:{reviewed}") if p)
        box.display = True
        box.focus()

    @on(Input.Submitted, "#dead-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        try:
            flt = DeadFilter.parse(event.value, base=self.filter)
        except ValueError as exc:
            self.notify(str(exc), title="Filter", severity="error")
            return
        event.input.display = False
        self.table.focus()
        self.set_filter(flt)

    def action_cycle_reviewed(self) -> None:
        """Unreviewed → reviewed → both."""
        following = {False: True, True: None, None: False}[self.filter.reviewed]
        self.set_filter(DeadFilter(self.filter.queue, self.filter.error_class, self.filter.text, following))

    def action_back(self) -> None:
        """Esc: close the filter box, else clear the filter, else go back."""
        box = self.query_one("#dead-filter", Input)
        if box.display:
            box.display = False
            self.table.focus()
            return
        if self.filter.as_text():
            self.set_filter(DeadFilter(reviewed=self.filter.reviewed))
            return
        super().action_back()

    # -- actions ----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Dim actions without a dead letter to act on (and mutating ones when read-only)."""
        allowed = super().check_action(action, parameters)
        if allowed and action in ("retry", "review", "discard", "inspect", "mark") and not self.letters:
            return None
        return allowed

    def action_inspect(self) -> None:
        """Open the highlighted dead letter."""
        from fleetbox.tui.screens.job import JobDetailScreen

        current = self.highlighted()
        if current is not None:
            letters = list(self.letters.values())
            index = next(i for i, d in enumerate(letters) if d["id"] == current)
            self.app.push_screen(JobDetailScreen(letters, index, on_change=self._changed))

    @on(DataTable.RowSelected, "#dead")
    def _row_selected(self) -> None:
        self.action_inspect()

    def _changed(self) -> None:
        self.dirty = True

    def _describe(self, ids: list[int]) -> str:
        queues = sorted({self.letters[i]["queue"] for i in ids if i in self.letters})
        what = f"dead letter {ids[0]}" if len(ids) == 1 else f"{len(ids):,} dead letters"
        return f"{what} ({', '.join(queues[:4])}{'…' if len(queues) > 4 else ''})"

    def _each(self, verb: str, ids: list[int], act: Callable[[int], Awaitable[object]]) -> None:
        async def run() -> None:
            done, failed = 0, []
            for dead_id in ids:
                try:
                    await act(dead_id)
                    done += 1
                except Disconnected as exc:
                    failed.append(str(exc))
                    break
                except ClientError as exc:
                    failed.append(f"{dead_id}: {exc}")
            self.marks.clear()
            if done:
                self.notify(f"{verb} {done:,} dead letter{'s' if done != 1 else ''}", title="Dead letters")
            if failed:
                self.notify("\n".join(failed[:5]), title=f"Not {verb.lower()}: {len(failed)}", severity="error")
            self.reload()

        self.run_worker(run(), group="dead-action", exit_on_error=False)

    def action_retry(self) -> None:
        """Retry the marked or highlighted dead letters (asks first)."""
        ids = self.targets()
        if not ids:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._each("Retried", ids, self.fb.client.retry_dead)

        self.app.push_screen(ConfirmModal(f"Retry {self._describe(ids)}?", yes="Retry"), answered)

    def action_discard(self) -> None:
        """Discard the marked or highlighted dead letters (asks first)."""
        ids = self.targets()
        if not ids:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._each("Discarded", ids, self.fb.client.discard_dead)

        self.app.push_screen(
            ConfirmModal(f"Discard {self._describe(ids)}? They stay on record.", yes="Discard"), answered
        )

    def action_review(self) -> None:
        """Mark the marked or highlighted dead letters reviewed, with notes."""
        ids = self.targets()
        if not ids:
            return
        first = self.letters.get(ids[0], {})
        modal = ReviewModal(self._describe(ids), self.fb.client.operator, first.get("resolutionNotes"))

        def answered(review: object) -> None:
            if isinstance(review, Review):
                client = self.fb.client
                by, notes = review.reviewed_by, review.notes
                self._each("Reviewed", ids, lambda i: client.review_dead(i, reviewed_by=by, notes=notes))

        self.app.push_screen(modal, answered)

    def action_retry_all(self) -> None:
        """Retry every dead letter matching the filter: count now, type the count, the appliance checks it."""
        self.act_on_all("retry", self.filter)

    def action_review_all(self) -> None:
        """Mark every dead letter matching the filter reviewed (notes, then the count typed)."""
        self.act_on_all("review", self.filter)

    def action_discard_all(self) -> None:
        """Discard every dead letter matching the filter (the count typed)."""
        self.act_on_all("discard", self.filter)

    def act_on_all(self, verb: str, flt: DeadFilter) -> None:
        """Retry, review or discard every open dead letter matching ``flt``, not only the loaded ones."""
        self.run_worker(self._act_on_all(verb, flt), group="dead-action", exit_on_error=False)

    async def _act_on_all(self, verb: str, flt: DeadFilter) -> None:
        done = {"retry": "retried", "review": "reviewed", "discard": "discarded"}[verb]
        try:
            page = await self.fb.client.dead_letters(flt, before=None, limit=1)
        except ClientError as exc:
            self.notify(f"Could not count the matching dead letters: {exc}", severity="error")
            return
        if page.total is None or page.total_capped:
            self.notify("Too many dead letters match to count them; narrow the filter first.", severity="error")
            return
        if page.total == 0:
            self.notify("No dead letter matches the filter.", title=f"{verb.capitalize()} all")
            return
        described = flt.as_text() or "no filter"
        what = f"all {page.total:,} {_REVIEWED_LABEL[flt.reviewed]} dead letters matching: {described}"
        review: Review | None = None
        if verb == "review":
            review = await self.app.push_screen_wait(ReviewModal(what, self.fb.client.operator))
            if review is None:
                return
        question = f"{verb.capitalize()} {what}?"
        if not await self.app.push_screen_wait(TypedConfirmModal(question, str(page.total))):
            return
        client = self.fb.client
        try:
            if verb == "retry":
                result = await client.retry_matching(flt, expected=page.total)
            elif review is not None:
                result = await client.review_matching(
                    flt, expected=page.total, reviewed_by=review.reviewed_by, notes=review.notes
                )
            else:
                result = await client.discard_matching(flt, expected=page.total)
        except ClientError as exc:
            self.notify(str(exc), title=f"Nothing {done}", severity="error")
        else:
            skipped = f"; {result.skipped:,} skipped (a job with the same key is waiting)" if result.skipped else ""
            self.notify(
                f"{done.capitalize()} {result.changed:,} of {result.matched:,}{skipped}",
                title=f"{verb.capitalize()} all",
            )
        self.marks.clear()
        self.reload()

    # -- groups -----------------------------------------------------------------------------

    def action_groups(self) -> None:
        """The dead letters of the filter grouped by error class and message; act on a group."""
        self.run_worker(self._groups(), group="dead-groups", exclusive=True, exit_on_error=False)

    async def _groups(self) -> None:
        try:
            groups = await self.fb.client.dead_letter_groups(self.filter)
        except ClientError as exc:
            self.notify(f"Error groups: {exc}", severity="error")
            return
        if not groups:
            self.notify("No dead letter matches the filter.", title="Error groups")
            return
        chosen = await self.app.push_screen_wait(GroupsModal(groups, self.filter, read_only=self.fb.read_only))
        if chosen is None:
            return
        verb, group = chosen
        flt = self.filter.of_group(group)
        self.set_filter(flt)
        if verb != "show":
            await self._act_on_all(verb, flt)
