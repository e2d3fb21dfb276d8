"""Retention: completed jobs are archived after the cutoff and deleted from the archive after
theirs, in batches; dead-lettered jobs, their attempts and open dead letters are never touched;
old statistics snapshots go. Jobs are made the real way (an appliance on a ManualClock) where
their history matters, and with plain SQL where exact times do.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest

from fleetbox.app import Appliance
from fleetbox.config import Settings
from fleetbox.errors import InvalidInput, NotFound
from fleetbox.models import Job, JobState, ManualClock, Thresholds
from fleetbox.monitor.schedule import Scheduler
from fleetbox.service.retention import Retention
from fleetbox.store import Store
from fleetbox.store.retention import Prunable
from tests.conftest import monitor_for, tasks_for, wait_for

AppFactory = Callable[..., Awaitable[Appliance]]

NOW = dt.datetime(2026, 3, 8, 12, 0, tzinfo=dt.UTC)
_ids = itertools.count(1)


async def finished_job(db: Store, state: str, finished_at: dt.datetime, *, attempts: int = 1) -> int:
    """A row in jobs_done with its attempts, as the completer writes them."""
    job_id = next(_ids)
    await db.pool.execute(
        """INSERT INTO jobs_done (id, queue, priority, state, data, attempts, created_at, run_at, finished_at,
                                  duration_ms)
           VALUES ($1, 'sync', 5, $2, '{"n": 1}', $3, $4, $4, $4, 10)""",
        job_id,
        state,
        attempts,
        finished_at,
    )
    await db.pool.execute(
        """INSERT INTO job_attempts (job_id, attempt, queue, started_at, finished_at, duration_ms, outcome)
           SELECT $1, a, 'sync', $2, $2, 10, CASE WHEN a = $3 THEN $4 ELSE 'retry' END
             FROM generate_series(1, $3) a""",
        job_id,
        finished_at,
        attempts,
        "dead" if state == "dead" else "succeeded",
    )
    return job_id


async def ids(db: Store, table: str) -> set[int]:
    return {r["id"] for r in await db.pool.fetch(f"SELECT id FROM {table}")}


async def attempt_jobs(db: Store) -> set[int]:
    return {r["job_id"] for r in await db.pool.fetch("SELECT DISTINCT job_id FROM job_attempts")}


async def test_archive_moves_completed_jobs_older_than_the_cutoff_in_batches(
    db: Store, caplog: pytest.LogCaptureFixture
) -> None:
    hours = dt.timedelta(hours=1)
    old_ok = [await finished_job(db, "succeeded", NOW - 30 * hours, attempts=2) for _ in range(5)]
    old_cleared = await finished_job(db, "cleared", NOW - 48 * hours)
    old_dead = [await finished_job(db, "dead", NOW - 100 * hours, attempts=3) for _ in range(2)]
    recent = [await finished_job(db, "succeeded", NOW - 23 * hours) for _ in range(2)]
    at_cutoff = await finished_job(db, "succeeded", NOW - 24 * hours)  # not older than the cutoff
    caplog.set_level(logging.INFO, logger="fleetbox.retention")

    moved = await Retention(db).archive_completed(older_than=NOW - 24 * hours, batch=2, now=NOW)
    assert moved == 6
    assert await ids(db, "jobs_archive") == {*old_ok, old_cleared}
    assert await ids(db, "jobs_done") == {*old_dead, *recent, at_cutoff}
    row = await db.pool.fetchrow("SELECT * FROM jobs_archive WHERE id = $1", old_ok[0])
    assert (row["state"], row["attempts"], row["archived_at"], row["data"]) == ("succeeded", 2, NOW, {"n": 1})
    # attempts stay with archived jobs until they are deleted
    assert await attempt_jobs(db) == {*old_ok, old_cleared, *old_dead, *recent, at_cutoff}
    assert await Retention(db).archive_completed(older_than=NOW - 24 * hours, now=NOW) == 0  # nothing left to move
    events = [r.__dict__ for r in caplog.records if r.__dict__.get("event") == "jobs_archived"]
    assert [e["count"] for e in events] == [6, 0]


async def test_delete_archived_honours_its_cutoff_and_takes_the_attempts(db: Store) -> None:
    first = [await finished_job(db, "succeeded", NOW - dt.timedelta(days=10)) for _ in range(3)]
    dead = await finished_job(db, "dead", NOW - dt.timedelta(days=30), attempts=2)
    archived_then = NOW - dt.timedelta(days=8)
    assert await Retention(db).archive_completed(older_than=NOW - dt.timedelta(days=1), now=archived_then) == 3
    second = [await finished_job(db, "succeeded", NOW - dt.timedelta(days=2)) for _ in range(2)]
    assert await Retention(db).archive_completed(older_than=NOW - dt.timedelta(days=1), now=NOW) == 2

    # a cutoff before the first archiving deletes nothing
    assert await Retention(db).delete_archived(older_than=archived_then) == 0
    assert await ids(db, "jobs_archive") == {*first, *second}
    for job_id in (*first, *second):
        await db.graph.record_effect(job_id, "message", f"graph-{job_id}", None)
    assert await Retention(db).delete_archived(older_than=NOW - dt.timedelta(days=7), batch=2) == 3
    assert await ids(db, "jobs_archive") == set(second)
    effects = {r["job_id"] for r in await db.pool.fetch("SELECT job_id FROM graph_effects")}
    assert effects == set(second)  # what the deleted jobs created in Graph goes with them
    assert await attempt_jobs(db) == {*second, dead}
    assert await ids(db, "jobs_done") == {dead}
    assert await Retention(db).delete_archived(older_than=NOW + dt.timedelta(seconds=1)) == 2
    assert await ids(db, "jobs_archive") == set()
    assert await attempt_jobs(db) == {dead}  # a dead job's history is never deleted here


async def test_retention_checks_its_arguments(db: Store) -> None:
    naive = dt.datetime(2026, 1, 1)
    retention = Retention(db)
    calls = (
        lambda **kw: retention.archive_completed(now=NOW, **kw),
        retention.delete_archived,
        partial(retention.prune, Prunable.STATISTICS),
        partial(retention.prune, Prunable.WEBHOOK_EVENTS),
    )
    for call in calls:
        with pytest.raises(InvalidInput) as err:
            await call(older_than=naive)
        assert err.value.field == "older_than"
        with pytest.raises(InvalidInput) as err:
            await call(older_than=NOW, batch=0)
        assert err.value.field == "batch"


async def test_cleanup_webhook_events_honours_its_cutoff(db: Store) -> None:
    for days in (1, 8, 9, 30):
        await db.pool.execute(
            "INSERT INTO webhook_events (source, dedupe_key, payload, received_at) VALUES ('outlook', $1, '{}', $2)",
            f"k{days}",
            NOW - dt.timedelta(days=days),
        )
    assert await Retention(db).prune(Prunable.WEBHOOK_EVENTS, older_than=NOW - dt.timedelta(days=7), batch=2) == 3
    assert await db.pool.fetchval("SELECT array_agg(dedupe_key) FROM webhook_events") == ["k1"]


async def test_cleanup_statistics_honours_its_cutoff(db: Store) -> None:
    clock = ManualClock(NOW - dt.timedelta(days=40))
    monitor = monitor_for(db, clock=clock, thresholds=Thresholds(), settle_seconds=0)
    for _ in range(40):
        await monitor.snapshot()
        clock.advance(86400)
    queues = await db.pool.fetchval("SELECT count(DISTINCT queue) FROM queue_statistics")
    cutoff = NOW - dt.timedelta(days=30)
    older = await db.pool.fetchval("SELECT count(*) FROM queue_statistics WHERE at < $1", cutoff)
    assert older == 10 * queues
    assert await Retention(db).prune(Prunable.STATISTICS, older_than=cutoff, batch=7) == older
    assert await db.pool.fetchval("SELECT min(at) FROM queue_statistics") >= cutoff
    assert await db.pool.fetchval("SELECT count(*) FROM queue_statistics") == 30 * queues


async def test_real_jobs_dead_letters_stay_through_the_weekly_cleanup(appliance_factory: AppFactory) -> None:
    """Succeeded jobs are archived and later deleted; dead-lettered ones and their dead letters stay."""
    clock = ManualClock(NOW)

    async def handle(job: Job) -> None:
        if job.data["fail"]:
            raise ValueError("permanently broken")

    app = await appliance_factory(
        handlers={"sync": handle}, clock=clock, retry={"transient": {"max_retries": 0}}, monitor={"schedule": False}
    )
    jobs = [(await app.client.enqueue("sync", {"fail": i < 2})).id for i in range(6)]

    async def all_finished() -> bool:
        states = [(await app.client.get_job(j)).state for j in jobs]
        return all(s in (JobState.SUCCEEDED, JobState.DEAD) for s in states)

    await wait_for(all_finished)
    dead_jobs, ok_jobs = set(jobs[:2]), set(jobs[2:])
    letters = await app.client.dead_letters.list()
    assert {d.job_id for d in letters} == dead_jobs
    await app.client.dead_letters.review(letters[0].id, reviewed_by="ops", resolution_notes="looked at it")

    # the weekly job cleanup, two weeks later, through the schedule's own task
    settings = Settings(database={"dsn": "postgresql://unused"}, retention={"archive_hours": 24, "delete_days": 7})
    tasks = {t.name: t for t in tasks_for(settings, app.store, app.monitor, clock)}
    clock.current = dt.datetime(2026, 3, 15, 0, 0, tzinfo=dt.UTC)  # a Sunday midnight, a week later
    scheduler = Scheduler(app.store, clock=clock, tasks=[tasks["job-cleanup"]])
    assert await scheduler.run_due(clock.now()) == ["job-cleanup"]
    result: dict[str, Any] = await app.store.pool.fetchval(
        "SELECT result FROM scheduler_ticks WHERE task = 'job-cleanup'"
    )
    assert result == {"archived": 4, "deleted": 0, "webhookEvents": 0}
    assert await ids(app.store, "jobs_archive") == ok_jobs
    archived = await app.client.get_job(min(ok_jobs))  # still found, in the archive, with its history
    assert (archived.state, archived.data, len(archived.history)) == (JobState.SUCCEEDED, {"fail": False}, 1)
    clock.current += dt.timedelta(days=7, minutes=30)  # the archived_at cutoff is strict
    assert await scheduler.run_due(clock.now()) == ["job-cleanup"]
    assert await ids(app.store, "jobs_archive") == set()
    with pytest.raises(NotFound):
        await app.client.get_job(min(ok_jobs))
    # the dead-lettered jobs, their attempts and their dead letters are all still there
    assert await ids(app.store, "jobs_done") == dead_jobs
    assert await attempt_jobs(app.store) == dead_jobs
    after = await app.client.dead_letters.list()
    assert {d.job_id for d in after} == dead_jobs
    assert {d.status.value for d in after} == {"open"}
    for job_id in dead_jobs:
        assert (await app.client.get_job(job_id)).state is JobState.DEAD


async def test_the_daily_table_cleanup_cuts_every_growing_table_by_its_own_age(db: Store) -> None:
    """rate_limit_tracking, queue_alerts, audit_log, dead_letters, sync_history, inbound_messages,
    performance_reports, appliances, graph_subscriptions, graph_uploads, schedule_runs,
    alert_notifications: old rows go, recent ones stay, and what is still needed (open alerts and
    dead letters, the latest delta link) stays."""
    old, recent = NOW - dt.timedelta(days=400), NOW - dt.timedelta(hours=1)
    sql = db.pool
    # an old open alert stays (the alerts below), what was sent about it goes by its own age
    open_alert = await sql.fetchval(
        "INSERT INTO queue_alerts (kind, message, opened_at) VALUES ('dead_letters', 'y', $1) RETURNING id", old
    )
    for at in (old, recent):
        await sql.execute("INSERT INTO rate_limit_tracking (resource, at, event) VALUES ('teams', $1, 'wait')", at)
        await sql.execute(
            "INSERT INTO audit_log (at, actor, action, target) VALUES ($1, 'ops', 'queue.pause', 'sync')", at
        )
        await sql.execute(
            "INSERT INTO performance_reports (period_start, period_end, created_at, report) VALUES ($1, $1, $1, '{}')",
            at,
        )
        await sql.execute(
            "INSERT INTO appliances (worker_id, name, version, started_at, seen_at) VALUES ($1, 'a', '1', $2, $2)",
            f"w-{at.timestamp()}",
            at,
        )
        await sql.execute(
            "INSERT INTO inbound_messages (source, container, graph_id, data, updated_at) VALUES "
            "('outlook', 'inbox', $1, '{}', $2)",
            f"m-{at.timestamp()}",
            at,
        )
        await sql.execute(
            "INSERT INTO graph_subscriptions (id, source, resource, change_type, expires_at, removed_at) "
            "VALUES ($1, 'outlook', $1, 'created', $2, $2)",
            f"s-{at.timestamp()}",
            at,
        )
        await sql.execute(
            "INSERT INTO graph_uploads (job_id, upload_url, total_bytes, updated_at) VALUES ($1, 'https://u', 10, $2)",
            int(at.timestamp()),
            at,
        )
        await sql.execute(
            "INSERT INTO schedule_runs (schedule, tick, fired_at, outcome) VALUES ('nightly', $1, $1, 'enqueued')", at
        )
        await sql.execute(
            "INSERT INTO alert_notifications (webhook, alert_id, transition, created_at) "
            "VALUES ('ops', $1, 'opened', $2)",
            open_alert,
            at,
        )
    # alerts: an old resolved one goes, an old open one stays
    await sql.execute(
        "INSERT INTO queue_alerts (kind, message, opened_at, resolved_at) VALUES ('backlog', 'x', $1, $1)", old
    )
    # sync history: the old round that holds the latest delta link stays; older superseded ones go
    for started, link in ((old, "https://g/delta?1"), (old + dt.timedelta(hours=1), "https://g/delta?2")):
        await sql.execute(
            "INSERT INTO sync_history (resource, scope, started_at, finished_at, delta_link) VALUES "
            "('messages', 'u1/inbox', $1, $1, $2)",
            started,
            link,
        )
    # dead letters: one retried long ago goes with its job record; an old open one stays
    for status, job_id in (("retried", 901), ("open", 902)):
        await sql.execute(
            "INSERT INTO jobs_done (id, queue, priority, state, data, attempts, created_at, run_at, finished_at) "
            "VALUES ($1, 'sync', 5, 'dead', '{}', 1, $2, $2, $2)",
            job_id,
            old,
        )
        await sql.execute(
            "INSERT INTO dead_letters (job_id, queue, priority, data, error_class, error, attempts, history, "
            "job_created_at, failed_at, status, retried_at) VALUES ($1, 'sync', 5, '{}', 'permanent', 'e', 1, '[]', "
            "$2, $2, $3, $4)",
            job_id,
            old,
            status,
            old if status == "retried" else None,
        )

    settings = Settings(database={"dsn": "postgresql://unused"})
    clock = ManualClock(NOW)
    tasks = {t.name: t for t in tasks_for(settings, db, monitor_for(db, clock=clock), clock)}
    result = await tasks["table-cleanup"].run()
    assert result == {
        "rate_events": 1,
        "resolved_alerts": 1,
        "audit": 1,
        "resolved_dead_letters": 1,
        "sync_history": 1,
        "inbound_messages": 1,
        "reports": 1,
        "appliances": 1,
        "removed_subscriptions": 1,
        "stale_uploads": 1,
        "schedule_runs": 1,
        "alert_notifications": 1,
    }
    for table, column in (
        ("rate_limit_tracking", "at"),
        ("audit_log", "at"),
        ("performance_reports", "period_end"),
        ("appliances", "seen_at"),
        ("inbound_messages", "updated_at"),
        ("graph_subscriptions", "removed_at"),
        ("graph_uploads", "updated_at"),
        ("schedule_runs", "fired_at"),
        ("alert_notifications", "created_at"),
    ):
        assert await sql.fetchval(f"SELECT min({column}) FROM {table}") == recent, table
    assert [r["kind"] for r in await sql.fetch("SELECT kind FROM queue_alerts")] == ["dead_letters"]
    assert await sql.fetchval("SELECT delta_link FROM sync_history") == "https://g/delta?2"
    assert [r["job_id"] for r in await sql.fetch("SELECT job_id FROM dead_letters")] == [902]
    assert [r["id"] for r in await sql.fetch("SELECT id FROM jobs_done")] == [902]
    assert await tasks["table-cleanup"].run() == dict.fromkeys(result, 0)  # nothing more to cut
