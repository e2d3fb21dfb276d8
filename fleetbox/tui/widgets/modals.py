"""Dialogs: yes/no confirmation, typed confirmation, the review form and the help screen."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Label, Static, TextArea


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
