"""Whatever the appliance sends, the TUI's renderers show it as plain text and never raise.

Hypothesis feeds the pure functions that turn socket data into screen text (queue rows, the queue
detail, dead-letter rows and detail, the timeline, alerts, recent errors, change notices, the
number and time formats) with hostile values in any field: text that is Textual markup
(``[/bogus]``, ``[@click=app.quit]``), terminal control sequences, lone surrogates, NaN-like
strings, None where text is expected, huge and non-finite numbers, deep and wide JSON. Each
result is rendered by a real rich console. What a user would check: the text on screen is the
value's text (markup is not read, so no link and no style comes from it) and holds no character
the terminal would act on. The same run over the real socket is in test_plain_text.py.
"""

from __future__ import annotations

import io
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.json import JSON
from rich.text import Text

from fleetbox.tui.app import change_notice
from fleetbox.tui.screens.alerts import alert_cells
from fleetbox.tui.screens.dead import cells
from fleetbox.tui.screens.job import Preview, detail_text, timeline
from fleetbox.tui.screens.queue_detail import error_cells, state_line
from fleetbox.tui.screens.queues import row_cells
from fleetbox.tui.widgets.text import DASH, UNSAFE, ago, clock, count, counted, duration, epoch, ms, plain, trend

NOW = 1_780_000_000.0
MARKUP = ["[/bogus]", "[@click=app.quit]quit[/]", "[b]bold", "[link=http://x]x[/link]", "[", "\\[x]"]
CONTROL = ["\x1b[2J\x1b[H", "\x1b]0;title\x07", "\x9b31m", "\x00", "\r\n", "\x7f", "\x08\x08"]
NAN_LIKE = ["NaN", "nan", "Infinity", "-Infinity", "1e999", "-0", "", " ", "null", "None"]


def _deep(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


#: every code point, surrogates and controls included
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=60)
HOSTILE_TEXT = st.one_of(
    ANY_TEXT,
    st.sampled_from(MARKUP + CONTROL + NAN_LIKE),
    st.lists(st.sampled_from(MARKUP + CONTROL + NAN_LIKE + ["a", " "]), max_size=6).map("".join),
)
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**18, max_value=10**80),
    st.sampled_from([10**4200, -(10**4200)]),
    st.floats(allow_nan=True, allow_infinity=True),
    HOSTILE_TEXT,
)
HOSTILE = st.one_of(
    st.recursive(
        SCALAR,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(HOSTILE_TEXT, inner, max_size=4),
        max_leaves=12,
    ),
    st.just(_deep(3000)),
    st.just({"a": _deep(200)}),
)

QUEUE_ROW: dict[str, Any] = {
    "name": "reports",
    "tier": "low",
    "paused": False,
    "waiting": 3,
    "scheduled": 1,
    "running": 2,
    "retrying": 1,
    "deadUnreviewed": 4,
    "donePerMinute": 12.5,
    "failureRate": 7.5,
    "avgMs": 180.0,
    "p95Ms": 2400.0,
    "oldestWaitingSeconds": 42.0,
    "workers": {"busy": 2, "size": 5},
    "limiter": {
        "resource": "graph",
        "ratePerSecond": 16.7,
        "available": 3.0,
        "pausedUntil": NOW + 12,
        "waits": 4,
        "throttled": 1,
        "concurrency": 4,
        "per": "mailbox",
    },
    "consumers": 0,
}
ATTEMPT: dict[str, Any] = {
    "jobId": 7,
    "attempt": 1,
    "queue": "reports",
    "workerId": "host:1:abc",
    "startedAt": "2026-11-20T10:00:00+00:00",
    "finishedAt": "2026-11-20T10:00:01+00:00",
    "durationMs": 812.0,
    "outcome": "failed",
    "errorClass": "ValidationError",
    "error": "bad",
}
LETTER: dict[str, Any] = {
    "id": 17,
    "jobId": 7,
    "queue": "reports",
    "priority": 5,
    "data": {"n": 1},
    "errorClass": "ValidationError",
    "error": "upstream said no",
    "attempts": 3,
    "history": [ATTEMPT],
    "jobCreatedAt": "2026-11-20T09:59:00+00:00",
    "failedAt": "2026-11-20T10:00:01+00:00",
    "status": "open",
    "reviewed": True,
    "reviewedAt": "2026-11-20T11:00:00+00:00",
    "reviewedBy": "alice",
    "resolutionNotes": "fixed upstream",
    "retriedJobId": 9,
    "retriedAt": "2026-11-20T12:00:00+00:00",
    "discardedAt": None,
}
JOB: dict[str, Any] = {
    "id": 7,
    "history": [ATTEMPT],
    "operatorActions": [
        {"at": "2026-11-20T11:00:00+00:00", "actor": "alice", "action": "dead.review", "details": {"notes": "ok"}}
    ],
}
ALERT: dict[str, Any] = {
    "id": 3,
    "queue": "reports",
    "kind": "backlog",
    "status": "open",
    "message": "backlog 120 over 100",
    "openedAt": "2026-11-20T10:00:00+00:00",
    "resolvedAt": None,
}
ERROR_ROW: dict[str, Any] = {"errorClass": "ValidationError", "count": 3, "lastAt": "2026-11-20T10:00:00+00:00"}
EVENT: dict[str, Any] = {"type": "event", "kind": "queue_paused", "queue": "reports", "by": "bob"}


def spoiled(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``base`` with any of its fields (and some new ones) replaced by hostile values."""
    keys = st.sampled_from([*base, "extra"])
    return st.dictionaries(keys, HOSTILE, max_size=len(base)).map(lambda changes: {**base, **changes})


def rendered(*parts: Text | JSON) -> str:
    """What a terminal is sent for these parts, through a real rich console (no colour codes)."""
    out = io.StringIO()
    console = Console(file=out, width=100, color_system=None, legacy_windows=False, soft_wrap=False)
    for part in parts:
        console.print(part)
    return out.getvalue()


def assert_plain(*parts: Text | JSON) -> None:
    """Every part renders, holds no character a terminal acts on, and has no style from markup."""
    for part in parts:
        text = part.text if isinstance(part, JSON) else part
        assert UNSAFE.search(text.plain) is None, repr(text.plain[:200])
        for span in text.spans:  # a style of ours is a colour; markup would add a click or a link
            style = span.style
            if isinstance(style, str):
                assert "link" not in style and "@" not in style, style
            else:
                assert not (style.meta or style.link), style
    assert UNSAFE.search(rendered(*parts)) is None


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(row=spoiled(QUEUE_ROW), limiter=spoiled(QUEUE_ROW["limiter"]), workers=HOSTILE)
@example(row={**QUEUE_ROW, "name": "[/bogus]"}, limiter=QUEUE_ROW["limiter"], workers={"busy": None, "size": "x"})
def test_queue_rows_and_detail_show_any_figures_as_plain_text(
    row: dict[str, Any], limiter: dict[str, Any], workers: Any
) -> None:
    row = {**row, "limiter": limiter if row.get("limiter") is QUEUE_ROW["limiter"] else row.get("limiter")}
    if row.get("workers") is QUEUE_ROW["workers"]:
        row["workers"] = workers
    shown = row_cells(row, trend([1.0, float("nan"), 3.0], 9), NOW)  # type: ignore[arg-type]
    assert_plain(*shown.values())
    assert shown["name"].plain.endswith(plain(row.get("name")))
    line = state_line(plain(row.get("name")), row, NOW)  # type: ignore[arg-type]
    assert_plain(line)
    assert plain(row.get("name")) in line.plain


@SETTINGS
@given(letter=spoiled(LETTER), marked=st.booleans())
@example(letter={**LETTER, "error": "[@click=app.quit]quit[/]", "reviewedBy": "[/bogus]"}, marked=True)
@example(letter={**LETTER, "queue": None, "id": None, "error": 10**4200, "history": _deep(3000)}, marked=False)
def test_dead_letter_rows_show_their_text_as_it_is(letter: dict[str, Any], marked: bool) -> None:
    row = cells(letter, NOW, marked)
    assert_plain(*row)
    error = letter.get("error")
    assert row[7].plain == plain(error, "")
    if letter.get("reviewed"):
        assert row[8].plain == f"✎ {plain(letter.get('reviewedBy'))}"
    if isinstance(letter.get("queue"), str):
        assert row[3].plain == plain(letter["queue"])


@SETTINGS
@given(letter=spoiled(LETTER), job=st.one_of(st.none(), spoiled(JOB)), payload=HOSTILE, index=st.integers(0, 10**6))
@example(letter=LETTER, job=JOB, payload=_deep(3000), index=0)
@example(letter=LETTER, job=JOB, payload={"esc": "\x1b[2J", "c1": "\x9b", "half": "\ud800"}, index=0)
def test_the_job_detail_shows_any_dead_letter_and_payload(
    letter: dict[str, Any], job: dict[str, Any] | None, payload: Any, index: int
) -> None:
    shown = detail_text(letter, job, payload, now=NOW, index=index, total=index + 1)
    assert_plain(shown.title, shown.payload, shown.errors, shown.timeline, shown.review)
    notes = letter.get("resolutionNotes")
    if letter.get("reviewed") and isinstance(notes, str) and notes:
        assert plain(notes) in shown.review.plain
    if isinstance(letter.get("error"), str) and not letter.get("history"):
        assert plain(letter["error"]) in shown.errors.plain
    for when, what in timeline(letter, job):
        assert UNSAFE.search(what) is None and isinstance(when, str)


@SETTINGS
@given(text=st.text(max_size=300))
@example(text='{"note":"bad 6","order":6}')
@example(text="\x1b[2J[bold]x[/bold]")
def test_a_payload_preview_is_shown_as_the_text_it_is_and_said_to_be_one(text: str) -> None:
    """Found by hand: with the appliance away the Payload tab showed the row's preview as a quoted
    JSON string ("{\"note\": ..."), as if it were the payload."""
    shown = detail_text(LETTER, None, Preview(text), now=NOW, index=0, total=1).payload
    assert_plain(shown)
    assert shown.plain.startswith("(a preview, its first characters: the full payload loads with the job; ctrl+r)")
    assert shown.plain.endswith(plain(text, ""))


@SETTINGS
@given(alert=spoiled(ALERT), error=spoiled(ERROR_ROW))
def test_alerts_and_recent_errors_show_their_text_as_it_is(alert: dict[str, Any], error: dict[str, Any]) -> None:
    row = alert_cells(alert, NOW)
    assert_plain(*row)
    assert row[5].plain == plain(alert.get("message"), "")
    errors = error_cells(error, NOW)
    assert_plain(*errors)
    assert errors[0].plain == plain(error.get("errorClass"))


@SETTINGS
@given(event=spoiled(EVENT), operator=st.one_of(st.none(), HOSTILE_TEXT))
@example(event={**EVENT, "by": "[@click=app.quit]"}, operator="alice")
def test_change_notices_name_the_actor_as_plain_text(event: dict[str, Any], operator: str | None) -> None:
    notice = change_notice(event, operator)  # type: ignore[arg-type]
    if notice is None:
        return
    assert UNSAFE.search(notice) is None
    assert notice.startswith(plain(event["by"]) + " ")


@SETTINGS
@given(value=HOSTILE, values=st.lists(HOSTILE, max_size=20), width=st.integers(-2, 40))
@example(value=float("nan"), values=[float("inf"), 10**400], width=9)
@example(value="2026-13-45T99:00:00", values=[], width=3)
def test_number_and_time_formats_take_any_value(value: Any, values: list[Any], width: int) -> None:
    texts = (count(value), counted(value, "attempt"), ms(value), duration(value), clock(value), ago(value, NOW))
    for text in (*texts, plain(value)):
        assert isinstance(text, str) and UNSAFE.search(text) is None
    assert epoch(value) is None or isinstance(value, str)
    assert len(trend(values, width)) == max(width, 0)
    if value is None:
        assert ms(value) == DASH and plain(value) == DASH


def test_a_count_of_one_takes_the_singular() -> None:
    assert [counted(n, "attempt") for n in (0, 1, 2, 1204)] == [
        "0 attempts",
        "1 attempt",
        "2 attempts",
        "1,204 attempts",
    ]
    assert counted(True, "attempt") == "true attempts"  # not a count: shown as it came, never "1 attempt"
    assert counted(None, "attempt") == f"{DASH} attempts"
