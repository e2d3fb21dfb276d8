"""The job states' words are defined once (fleetbox.models.JobState); the faces that cannot import
it (the wire types the TUI reads, the dashboard's JavaScript) spell the same words, checked here."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from fleetbox import protocol
from fleetbox.admin import answers
from fleetbox.models import PENDING, STATE_ALIASES, JobState
from fleetbox.service.jobs import ALIASES, DONE_STATUSES, JOB_STATUSES, LIVE_STATUSES, status_filter
from fleetbox.tui.screens.queues import COLUMNS

#: the states a queue's figures count (the hot table's jobs)
COUNTED = {JobState.WAITING, JobState.SCHEDULED, JobState.RETRYING, JobState.RUNNING}
APP_JS = Path(__file__).resolve().parents[2] / "fleetbox" / "admin" / "ui" / "app.js"


def test_the_stream_and_the_tui_name_the_counted_states_by_their_words() -> None:
    row = typing.get_type_hints(protocol.QueueRow)
    assert set(row) >= COUNTED and "ready" not in row
    assert {key for key, _label, _width in COLUMNS} >= COUNTED
    assert {label for key, label, _width in COLUMNS if key in COUNTED} == {"WAITING", "SCHED", "RETRY", "RUN"}


def test_the_api_document_and_the_dashboard_use_the_same_words() -> None:
    # The document's schemas are generated from these answer models (fleetbox.admin.openapi).
    stats = answers.QueueStats.model_json_schema(by_alias=True)
    totals = answers.StatsTotals.model_json_schema(by_alias=True)
    job = answers.Job.model_json_schema(by_alias=True)
    assert "ready" not in stats["properties"] and "ready" not in totals["properties"]
    assert set(stats["properties"]) >= COUNTED and set(totals["properties"]) >= COUNTED
    assert set(job["$defs"]["JobState"]["enum"]) == {s.value for s in JobState}
    [listed] = re.findall(r"const JOB_STATES = \[([^\]]*)\]", APP_JS.read_text())
    assert re.findall(r'"([a-z]+)"', listed) == [*LIVE_STATUSES[:-1], PENDING, *DONE_STATUSES]


def test_filters_take_the_states_pending_and_one_table_of_aliases() -> None:
    assert ALIASES is STATE_ALIASES
    assert set(JOB_STATUSES) == {*LIVE_STATUSES, *DONE_STATUSES, *STATE_ALIASES}
    assert {status_filter(word) for word in ("ready", "waiting")} == {"waiting"}
    assert (status_filter("completed"), status_filter("failed"), status_filter(PENDING)) == (
        "succeeded",
        "dead",
        PENDING,
    )
