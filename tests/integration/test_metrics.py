"""The appliance's Prometheus figures: attempts by outcome, processing time, depth by state."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from fleetbox.client import Client
from fleetbox.errors import ValidationError
from fleetbox.models import Job, JobState, Outcome, Tier
from fleetbox.monitor.metrics import Metrics
from fleetbox.worker.completer import Finished
from tests.conftest import wait_for


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_count_attempts_and_report_depth(appliance_factory, client: Client) -> None:
    async def handle(job: Job) -> None:
        if job.data.get("bad"):
            raise ValidationError("bad payload")

    app = await appliance_factory(handlers={"reports": handle}, queues={"reports": {"tier": "low"}})
    jobs = [await client.enqueue("reports", {"bad": n == 0}) for n in range(3)]
    await client.enqueue("reports", {}, delay=3_600_000)

    async def finished() -> bool:
        states = [(await client.get_job(j.id)).state for j in jobs]
        return all(state in (JobState.SUCCEEDED, JobState.DEAD) for state in states)

    await wait_for(finished)
    await wait_for(lambda: app.worker.completer.written == 3)
    app.metrics.set_depth(await app.queue_depth())
    got = samples(app.metrics.render())

    assert got[("fleetbox_attempts_total", (("outcome", "succeeded"), ("queue", "reports")))] == 2
    assert got[("fleetbox_attempts_total", (("outcome", "dead"), ("queue", "reports")))] == 1
    assert got[("fleetbox_attempt_duration_seconds_count", (("queue", "reports"),))] == 3
    assert got[("fleetbox_queue_jobs", (("queue", "reports"), ("state", "scheduled")))] == 1
    assert got[("fleetbox_dead_letters_open", (("queue", "reports"),))] == 1
    assert got[("fleetbox_queue_paused", (("queue", "reports"),))] == 0


def test_a_batch_counts_every_attempt_by_queue_and_outcome() -> None:
    # One batch of outcomes from two queues, each with both outcomes: every attempt is counted
    # once under its own labels and timed in its own queue's histogram.
    metrics = Metrics()
    batch = [
        Finished(n, 1, queue, Tier.LOW, 100.0, 100.0 + n / 10, outcome)
        for n, (queue, outcome) in enumerate(
            [("a", Outcome.SUCCEEDED)] * 3
            + [("a", Outcome.DEAD)]
            + [("b", Outcome.SUCCEEDED)]
            + [("b", Outcome.RETRY)] * 2
        )
    ]
    metrics.observe(batch)
    metrics.observe(batch[:1])
    got = samples(metrics.render())

    def attempts(queue: str, outcome: str) -> float:
        return got[("fleetbox_attempts_total", (("outcome", outcome), ("queue", queue)))]

    assert (attempts("a", "succeeded"), attempts("a", "dead")) == (4, 1)
    assert (attempts("b", "succeeded"), attempts("b", "retry")) == (1, 2)
    assert got[("fleetbox_attempt_duration_seconds_count", (("queue", "a"),))] == 5
    assert got[("fleetbox_attempt_duration_seconds_count", (("queue", "b"),))] == 3
    assert abs(got[("fleetbox_attempt_duration_seconds_sum", (("queue", "b"),))] - (0.4 + 0.5 + 0.6)) < 1e-9
