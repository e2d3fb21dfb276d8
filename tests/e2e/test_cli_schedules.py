"""``fleetbox schedule`` (cron schedules managed at runtime) and ``fleetbox retry-report``, from the
console script against the test database, as an operator would use them."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

Cli = Callable[..., subprocess.CompletedProcess[str]]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


async def test_a_schedule_is_added_listed_shown_paused_resumed_run_and_removed(
    cli: Cli, pg: asyncpg.Connection
) -> None:
    out = ok(
        cli(
            "schedule",
            "add",
            "nightly",
            "--cron",
            "30 2 * * *",
            "--tz",
            "Europe/Berlin",
            "--queue",
            "sync",
            "--data",
            '{"scope": "all"}',
            "--overlap",
            "skip",
            "--alert-after",
            "93600",
            "--by",
            "alice",
        )
    )
    assert out.startswith("schedule nightly: next run 20")

    listing = ok(cli("schedule", "list"))
    assert "nightly" in listing and "30 2 * * *" in listing and "Europe/Berlin" in listing and "active" in listing
    [row] = json.loads(ok(cli("schedule", "list", "--json")))
    assert (row["queue"], row["data"], row["overlap"], row["alertAfterSeconds"], row["source"]) == (
        "sync",
        {"scope": "all"},
        "skip",
        93600,
        "api",
    )
    next_run = dt.datetime.fromisoformat(row["nextRunAt"])
    local = next_run.astimezone(dt.timezone(dt.timedelta(hours=1)))  # Berlin in winter (today is before March)
    assert (local.hour, local.minute) in ((2, 30), (3, 30))

    # A year of next runs: the spring-forward night has no 02:30 and is flagged, once.
    shown = json.loads(ok(cli("schedule", "show", "nightly", "--next", "366", "--json")))
    skipped = [t for t in shown["next"] if t["dst"] == "skipped-forward"]
    assert len(skipped) == 1
    gap = dt.datetime.fromisoformat(skipped[0]["at"])
    assert (gap.month, gap.weekday(), gap.hour, gap.minute) == (3, 6, 1, 0)  # last Sunday of March, 03:00 local
    assert len({t["at"] for t in shown["next"]}) == 366
    text = ok(cli("schedule", "show", "nightly", "--next", "366"))
    assert "DST: the named time does not exist that day" in text

    assert "paused" in ok(cli("schedule", "pause", "nightly", "--by", "bob"))
    assert "paused" in ok(cli("schedule", "list"))
    assert "next runs: none (paused)" in ok(cli("schedule", "show", "nightly"))
    assert "resumed: next run" in ok(cli("schedule", "resume", "nightly"))

    job_id = int(ok(cli("schedule", "run", "nightly", "--by", "carol")).strip())
    job = await pg.fetchrow("SELECT queue, data FROM jobs WHERE id = $1", job_id)
    assert (job["queue"], json.loads(job["data"])) == ("sync", {"scope": "all"})
    runs = json.loads(ok(cli("schedule", "show", "nightly", "--json")))["runs"]
    assert [(r["outcome"], r["jobId"]) for r in runs] == [("enqueued", job_id)]

    assert "removed" in ok(cli("schedule", "remove", "nightly"))
    gone = cli("schedule", "show", "nightly")
    assert gone.returncode == 4 and "no schedule 'nightly'" in gone.stderr
    audit = await pg.fetch("SELECT actor, action FROM audit_log WHERE target = 'schedule:nightly' ORDER BY id")
    assert [(a["actor"], a["action"]) for a in audit] == [
        ("alice", "schedule.put"),
        ("bob", "schedule.pause"),
        ("cli", "schedule.resume"),
        ("carol", "schedule.run"),
        ("cli", "schedule.remove"),
    ]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--cron", "61 * * * *", "--queue", "sync"], "cron"),
        (["--cron", "0 * * * *", "--queue", "sync", "--tz", "Mars/Olympus"], "timezone"),
        (["--cron", "0 * * * *", "--queue", "no-such-queue"], "queue"),
        (["--cron", "0 * * * *", "--queue", "sync", "--data", "[1]"], "data"),
        (["--cron", "0 * * * *", "--queue", "sync", "--priority", "11"], "priority"),
    ],
)
async def test_a_bad_schedule_is_refused_naming_what_is_wrong_and_writes_nothing(
    cli: Cli, pg: asyncpg.Connection, args: list[str], field: str
) -> None:
    result = cli("schedule", "add", "nightly", *args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert field in result.stderr, result.stderr
    assert await pg.fetchval("SELECT count(*) FROM scheduled_jobs") == 0
    assert await pg.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_retry_report_prints_each_variant_and_promote_changes_the_weights(
    cli: Cli, pg: asyncpg.Connection, tmp_path: Any
) -> None:
    config = tmp_path / "fleetbox.toml"
    config.write_text(
        '[queues.reports]\ntier = "low"\n'
        "[queues.reports.retry_variants.control]\nweight = 1\n"
        "[queues.reports.retry_variants.patient]\nweight = 3\n"
    )
    await pg.execute(
        "INSERT INTO queues (name, tier) VALUES ('reports', 3);"
        "INSERT INTO retry_experiments (queue, started_at, weights, source) "
        "VALUES ('reports', now() - interval '1 hour', '{\"control\": 1, \"patient\": 3}', 'config')"
    )
    text = ok(cli("retry-report", "reports", "--config", str(config)))
    assert "queue reports: retry variants (fixed)" in text
    assert "control" in text and "patient" in text and "0.75" in text
    assert "verdict: not enough jobs yet (0 and 0; 30 each needed)" in text
    ok(cli("retry-report", "reports", "--promote", "patient", "--by", "dana", "--config", str(config)))
    report = json.loads(ok(cli("retry-report", "reports", "--json", "--config", str(config))))
    assert {v["label"]: v["weight"] for v in report["variants"]} == {"control": 0.0, "patient": 1.0}
    assert report["history"][-1]["source"] == "promote" and report["history"][-1]["actor"] == "dana"
    missing = cli("retry-report", "reports", "--promote", "nope", "--config", str(config))
    assert missing.returncode == 4 and "no retry variant 'nope'" in missing.stderr


async def test_enqueue_after_keeps_a_job_blocked_and_job_shows_its_parents_and_children(
    cli: Cli, pg: asyncpg.Connection
) -> None:
    first = int(ok(cli("enqueue", "sync", "--data", '{"step": 1}')).strip())
    second = int(ok(cli("enqueue", "sync", "--data", '{"step": 2}')).strip())
    after = ("--after", f"{first},{second}", "--on-failure", "hold")
    child = int(ok(cli("enqueue", "notifications", "--data", "{}", *after)).strip())
    shown = json.loads(ok(cli("job", str(child))))
    assert shown["state"] == "blocked"
    assert sorted(p["job_id"] for p in shown["parents"]) == [first, second]
    assert all(p["edge"] is None for p in shown["parents"])  # neither parent has finished
    parent = json.loads(ok(cli("job", str(first))))
    assert [c["job_id"] for c in parent["children"]] == [child]
    assert await pg.fetchval("SELECT count(*) FROM jobs WHERE id = $1", child) == 0  # never claimable
    unknown = cli("enqueue", "sync", "--data", "{}", "--after", "999999")
    assert unknown.returncode == 2 and "no job 999999" in unknown.stderr
    bad = cli("enqueue", "sync", "--data", "{}", "--after", "1,x")
    assert bad.returncode == 2 and "--after" in bad.stderr and "Traceback" not in bad.stderr
