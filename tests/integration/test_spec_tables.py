"""The spec's tables answer the spec's SQL: its troubleshooting steps run as written."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fleetbox.app import Appliance
from fleetbox.errors import NetworkError, ValidationError
from fleetbox.models import Job, JobState, ManualClock
from fleetbox.store import Store
from tests.conftest import wait_for

AppFactory = Callable[..., Awaitable[Appliance]]

#: The eight tables the spec names.
SPEC_TABLES = (
    "job_tracking",
    "queue_statistics",
    "dead_letter_queue",
    "rate_limit_tracking",
    "scheduled_jobs",
    "queue_alerts",
    "webhook_events",
    "sync_history",
)


async def test_every_table_the_spec_names_exists(db: Store) -> None:
    for name in SPEC_TABLES:
        assert await db.pool.fetchval(f"SELECT count(*) FROM fleetbox.{name}") == 0, name


async def test_error_patterns_in_job_tracking_and_the_dead_letter_queue(
    appliance_factory: AppFactory, clock: ManualClock
) -> None:
    async def handle(job: Job) -> None:
        if job.data["kind"] == "bad":
            raise ValidationError("recipient does not exist")
        if job.data["kind"] == "flaky" and job.attempt == 1:
            raise NetworkError("connection reset")

    app = await appliance_factory(handlers={"sync": handle}, clock=clock)
    jobs = {kind: (await app.client.enqueue("sync", {"kind": kind}, run_at=clock.now())).id for kind in ("ok", "bad")}
    flaky = (await app.client.enqueue("sync", {"kind": "flaky"}, run_at=clock.now())).id

    async def settled() -> bool:
        states = [(await app.client.get_job(j)).state for j in (*jobs.values(), flaky)]
        return states == [JobState.SUCCEEDED, JobState.DEAD, JobState.RETRYING]

    await wait_for(settled)
    sql = app.store.pool
    # "Check error patterns in job_tracking table"
    patterns = await sql.fetch(
        "SELECT queue_name, status, error_type, count(*) FROM fleetbox.job_tracking "
        "WHERE status IN ('failed', 'retry') GROUP BY 1, 2, 3 ORDER BY 2"
    )
    assert [tuple(r) for r in patterns] == [("sync", "failed", "permanent", 1), ("sync", "retry", "transient", 1)]
    row = await sql.fetchrow("SELECT * FROM fleetbox.job_tracking WHERE job_id = $1", jobs["ok"])
    assert (row["status"], row["state"], row["attempts"], row["data"]) == ("completed", "succeeded", 1, {"kind": "ok"})
    # "Review dead letter jobs"
    [letter] = await sql.fetch("SELECT * FROM fleetbox.dead_letter_queue WHERE NOT reviewed ORDER BY failed_at DESC")
    assert (letter["job_id"], letter["original_queue"], letter["error_type"]) == (jobs["bad"], "sync", "permanent")
    assert "recipient does not exist" in letter["error_message"]
