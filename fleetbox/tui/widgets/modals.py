"""Dialogs: yes/no confirmation, typed confirmation, the review form and the help screen."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Input, Label, Static, TextArea

from fleetbox.tui.client import DeadFilter, Json


class ConfirmModal(ModalScreen[bool]):
    """A yes/no question; focus starts on No, so a stray Enter does nothing harmful."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str, *, yes: str = "Yes") -> None:
        super().__init__(classes="dialog")
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label(Text(self.question), classes="dialog-question")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="warning", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, answer: bool) -> None:
        """Close with the answer."""
        self.dismiss(answer)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class TypedConfirmModal(ModalScreen[bool]):
    """A destructive action: the operator types ``expected`` (a queue name, a count) to go on."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="typed.cancel")]

    def __init__(self, question: str, expected: str) -> None:
        super().__init__(classes="dialog")
        self.question = question
        self.expected = expected

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Label(Text(self.question), classes="dialog-question")
            yield Label(Text.assemble("Type ", (self.expected, "bold"), " and press Enter to confirm, Esc to cancel."))
            yield Input(placeholder=self.expected, id="typed")
            yield Label("", id="typed-error", classes="dialog-error")

    def on_mount(self) -> None:
        self.query_one("#typed", Input).focus()

    @on(Input.Submitted, "#typed")
    def _submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.expected:
            self.dismiss(True)
        else:
            self.query_one("#typed-error", Label).update(Text(f"That is not {self.expected!r}: nothing was done yet."))

    def action_cancel(self) -> None:
        """Close without doing anything."""
        self.dismiss(False)


@dataclass(frozen=True, slots=True)
class Review:
    """What the review form returns."""

    reviewed_by: str
    notes: str | None


class ReviewModal(ModalScreen[Review | None]):
    """Mark dead letters reviewed: who (the operator by default) and resolution notes."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="review.save", priority=True),
        Binding("escape", "cancel", "Cancel", id="review.cancel"),
    ]

    def __init__(self, what: str, reviewer: str, notes: str | None = None) -> None:
        super().__init__(classes="dialog")
        self.what = what
        self.reviewer = reviewer
        self.notes = notes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box review-box"):
            yield Label(Text(f"Mark {self.what} reviewed"), classes="dialog-question")
            yield Label("Reviewer")
            yield Input(self.reviewer, id="reviewer")
            yield Label("Resolution notes (ctrl+s saves, esc cancels)")
            yield TextArea(self.notes or "", id="notes", soft_wrap=True)
            yield Label("", id="review-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save (ctrl+s)", variant="primary", id="save")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#notes", TextArea).focus()

    def action_save(self) -> None:
        """Close with the review, unless the reviewer is blank."""
        reviewer = self.query_one("#reviewer", Input).value.strip()
        if not reviewer:
            self.query_one("#review-error", Label).update("The reviewer must not be blank.")
            return
        notes = self.query_one("#notes", TextArea).text.strip()
        self.dismiss(Review(reviewer, notes or None))

    def action_cancel(self) -> None:
        """Close without reviewing."""
        self.dismiss(None)

    @on(Input.Submitted, "#reviewer")
    def _reviewer_done(self) -> None:
        self.query_one("#notes", TextArea).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)


class GroupsModal(ModalScreen[tuple[str, Json] | None]):
    """The dead letters of a filter grouped by error class and message, largest group first.

    Closes with ``("show", group)`` (enter: list that group), ``("retry" | "review" | "discard",
    group)`` (act on every dead letter of the group, after the count is typed), or None.
    """

    BINDINGS = [
        Binding("enter", "choose('show')", "Show", id="groups.show", tooltip="List the dead letters of this group"),
        Binding("r", "choose('retry')", "Retry all…", id="groups.retry", tooltip="Retry the group (type the count)"),
        Binding("m", "choose('review')", "Review all…", id="groups.review", tooltip="Review the group (notes, count)"),
        Binding("D", "choose('discard')", "Discard all…", id="groups.discard", tooltip="Discard the group (count)"),
        Binding("escape", "choose('')", "Close", id="groups.close"),
    ]

    def __init__(self, groups: list[Json], flt: DeadFilter, *, read_only: bool) -> None:
        super().__init__(classes="dialog")
        self.groups = groups
        self.flt = flt
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        described = self.flt.as_text() or "no filter"
        with Vertical(classes="dialog-box groups-box"):
            yield Label(Text(f"Error groups of the dead letters matching: {described}"), classes="dialog-question")
            table: DataTable[Text] = DataTable(id="groups", cursor_type="row", zebra_stripes=True)
            table.add_column(Text("COUNT", justify="right"), key="count", width=7)
            table.add_column("ERROR CLASS", key="class", width=16)
            table.add_column("MESSAGE", key="message", width=52)
            table.add_column("QUEUES", key="queues", width=18)
            for i, group in enumerate(self.groups):
                table.add_row(
                    Text(f"{group['count']:,}", justify="right"),
                    Text(group["errorClass"], style="red"),
                    Text(group["message"], no_wrap=True, overflow="ellipsis"),
                    Text(", ".join(group["queues"])),
                    key=str(i),
                )
            yield table
            yield Label("enter shows a group · r retry · m review · D discard (each asks for the count) · esc closes")

    def on_mount(self) -> None:
        self.query_one("#groups", DataTable).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Acting on a group is refused (dimmed) when read-only."""
        if action == "choose" and parameters and parameters[0] not in ("show", "") and self.read_only:
            return None
        return True

    def action_choose(self, verb: str) -> None:
        """Close with the highlighted group and what to do with it."""
        if not verb:
            self.dismiss(None)
            return
        table = self.query_one("#groups", DataTable)
        self.dismiss((verb, self.groups[table.cursor_row]))

    @on(DataTable.RowSelected, "#groups")
    def _selected(self) -> None:
        self.action_choose("show")


class HelpScreen(ModalScreen[None]):
    """The keys of the screen underneath, generated from its bindings and the app's."""

    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="help.close")]

    def __init__(self, under: Screen[object]) -> None:
        super().__init__(classes="dialog")
        self.under = under

    def compose(self) -> ComposeResult:
        # One line per action: keys bound to the same action (``n,escape``) are shown together.
        lines: dict[tuple[str, str], tuple[list[str], str]] = {}
        for active in self.under.active_bindings.values():
            binding = active.binding
            if binding.action.startswith(("scroll_", "cursor_", "select_cursor", "page_")):
                continue  # the widget's own movement keys (arrows, page up/down) need no help
            scope = "global" if active.node is self.app else "this screen"
            keys, _ = lines.setdefault((scope, binding.action), ([], binding.tooltip or binding.description))
            keys.append(self.app.get_key_display(binding))
        table = Text()
        for scope in ("this screen", "global"):
            table.append(f"{scope}\n", style="bold underline")
            for (line_scope, action), (keys, description) in lines.items():
                if line_scope == scope:
                    table.append(f"  {' '.join(dict.fromkeys(keys)):<14}", style="bold")
                    table.append(f"{description or action}\n")
        with Vertical(classes="dialog-box help-box"):
            yield Label(Text(f"Keys: {getattr(self.under, 'CRUMBS', 'fleetbox')}"), classes="dialog-question")
            with VerticalScroll():
                yield Static(table, id="help-keys")
            yield Label("Mouse: click a row to select it, a footer key to run it. Esc closes.")

    def action_close(self) -> None:
        """Back to the screen."""
        self.dismiss(None)
