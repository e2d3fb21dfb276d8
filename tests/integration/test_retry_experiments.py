"""Retry-strategy experiments on a real appliance and real PostgreSQL: jobs with known outcomes
under two variants, the report's figures and verdict, the guardrail, promotion and the bandit."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fleetbox.app import Appliance
from fleetbox.config import Settings, load_settings
from fleetbox.errors import ConfigError, NotFound, TransientError
from fleetbox.models import Job
from fleetbox.rules import pick_variant, variant_bucket
from fleetbox.service.experiments import thompson_weights, two_proportion_p
from fleetbox.store import Store
from tests.conftest import wait_for

AppFactory = Callable[..., Awaitable[Appliance]]

#: patient retries a transient failure three times at once; impatient never retries it
VARIANTS = {
    "patient": {"weight": 1, "retry": {"transient": {"max_retries": 3, "base_seconds": 0}}},
    "impatient": {"weight": 1, "retry": {"transient": {"max_retries": 0}}},
}


async def fails_twice(job: Job) -> None:
    """A flaky remote: the first two attempts of every job fail, the third succeeds."""
    if job.attempt < 3:
        raise TransientError(f"flaky (attempt {job.attempt})")


def queue(**extra: Any) -> dict[str, Any]:
    return {"flaky": {"tier": "high", "retry_variants": VARIANTS, "guardrail_min_jobs": 20, **extra}}


async def finished(db: Store, count: int) -> None:
    async def done() -> bool:
        return await db.pool.fetchval("SELECT count(*) FROM jobs_done WHERE queue = 'flaky'") == count

    await wait_for(done, timeout=60)


def test_a_job_s_variant_is_a_pure_function_of_its_id_or_key_and_follows_the_weights() -> None:
    weights = {"a": 1.0, "b": 3.0}
    labels = [pick_variant(weights, variant_bucket(job_id)) for job_id in range(1, 20_001)]
    assert labels == [pick_variant(weights, variant_bucket(job_id)) for job_id in range(1, 20_001)]
    assert 0.23 < labels.count("a") / len(labels) < 0.27
    # with a payload key, every job of one user gets the same variant
    assert len({pick_variant(weights, variant_bucket(job_id, "user-7")) for job_id in range(100)}) == 1
    assert pick_variant({}, 0.5) is None


async def test_the_report_shows_what_each_variant_did_and_the_guardrail_stops_the_worse_one(
    appliance_factory: AppFactory, db: Store
) -> None:
    app = await appliance_factory(queues=queue(), handlers={"flaky": fails_twice}, monitor={"schedule": False})
    ids = [(await app.client.enqueue("flaky", {"n": n})).id for n in range(120)]
    await finished(db, 120)

    # every job met the fate its variant gives it: the worker and the report agree on variants
    book = await app.service.experiments.book()
    rows = {r["id"]: r for r in await db.pool.fetch("SELECT id, state, attempts, created_at FROM jobs_done")}
    for job_id in ids:
        label = book.label("flaky", job_id, rows[job_id]["created_at"])
        expected = ("succeeded", 3) if label == "patient" else ("dead", 1)
        assert (rows[job_id]["state"], rows[job_id]["attempts"]) == expected, label

    report = await app.service.experiments.report("flaky", app.settings.queues["flaky"])
    figures = {v.label: v for v in report.variants}
    patient, impatient = figures["patient"], figures["impatient"]
    assert patient.jobs + impatient.jobs == 120 and min(patient.jobs, impatient.jobs) > 30
    assert (patient.success_rate, patient.attempts_per_success, patient.dead_rate) == (1.0, 3.0, 0.0)
    assert patient.extra_requests == 2 * patient.jobs
    assert (impatient.success_rate, impatient.dead_rate, impatient.extra_requests) == (0.0, 1.0, 0)
    assert patient.time_to_success_p50 is not None and impatient.time_to_success_p50 is None
    [comparison] = report.comparisons
    assert comparison.p_value is not None and comparison.p_value < 1e-6
    assert report.verdict.startswith("patient better than impatient: success 100.0% against 0.0%")
    # dead letters carry the variant's reason
    error = await db.pool.fetchval("SELECT error FROM dead_letters WHERE queue = 'flaky' LIMIT 1")
    assert "transient: 0 retries used up" in error

    # the guardrail: impatient's dead-letter rate is past 50 % after more than 20 jobs
    assert await app.service.experiments.tune(app.settings.queues) == {
        "flaky": f"impatient: dead-letter rate 100% over 50% after {impatient.jobs} jobs"
    }
    await app.worker.refresh_experiments()
    more = [(await app.client.enqueue("flaky", {"n": n})).id for n in range(20)]
    await finished(db, 140)
    states = await db.pool.fetch("SELECT state FROM jobs_done WHERE id = ANY($1::bigint[])", more)
    assert {r["state"] for r in states} == {"succeeded"}
    history = (await app.service.experiments.report("flaky", app.settings.queues["flaky"])).history
    assert [(e.source, e.weights) for e in history] == [
        ("config", {"patient": 1.0, "impatient": 1.0}),
        ("guardrail", {"patient": 1.0}),
    ]
    audit = await db.pool.fetchval("SELECT action FROM audit_log WHERE target = 'queue:flaky'")
    assert audit == "experiment.guardrail"


async def test_a_promoted_variant_takes_every_new_job_and_survives_a_reload(
    appliance_factory: AppFactory, db: Store, make_settings: Callable[..., Settings]
) -> None:
    app = await appliance_factory(queues=queue(), handlers={"flaky": fails_twice}, monitor={"schedule": False})
    with pytest.raises(NotFound, match=r"no retry variant 'eager'.*impatient, patient"):
        await app.service.experiments.promote("flaky", "eager", actor="ops")
    await app.service.experiments.promote("flaky", "impatient", actor="ops")
    await app.reload(make_settings(queues=queue(), monitor={"schedule": False}))  # the file did not change
    ids = [(await app.client.enqueue("flaky", {"n": n})).id for n in range(30)]
    await finished(db, 30)
    states = await db.pool.fetch("SELECT state FROM jobs_done WHERE id = ANY($1::bigint[])", ids)
    assert {r["state"] for r in states} == {"dead"}
    report = await app.service.experiments.report("flaky", app.settings.queues["flaky"])
    assert {v.label: v.weight for v in report.variants} == {"impatient": 1.0, "patient": 0.0}
    assert report.history[-1].actor == "ops"
    # variants removed from the file end the experiment: new jobs follow the queue's own rules
    await app.reload(make_settings(queues={"flaky": {"tier": "high"}}, monitor={"schedule": False}))
    report = await app.service.experiments.report("flaky", app.settings.queues["flaky"])
    assert report.history[-1].weights == {} and report.mode == "none"


async def test_the_bandit_moves_new_jobs_to_the_variant_that_succeeds(appliance_factory: AppFactory, db: Store) -> None:
    app = await appliance_factory(
        queues=queue(variant_mode="bandit", guardrail_dead_rate=1.0),
        handlers={"flaky": fails_twice},
        monitor={"schedule": False},
    )
    for n in range(80):
        await app.client.enqueue("flaky", {"n": n})
    await finished(db, 80)
    assert await app.service.experiments.tune(app.settings.queues) == {"flaky": "bandit"}
    report = await app.service.experiments.report("flaky", app.settings.queues["flaky"])
    weights = {v.label: v.weight for v in report.variants}
    assert weights["patient"] >= 0.9 and weights["impatient"] == pytest.approx(0.05, abs=0.01)
    assert report.history[-1].source == "bandit"


def test_thompson_weights_favour_the_better_arm_and_keep_a_floor() -> None:
    weights = thompson_weights({"a": (90, 10), "b": (50, 50)}, rng=random.Random(7))
    assert weights["a"] > 0.9 and weights["b"] == pytest.approx(0.05, abs=0.005)
    even = thompson_weights({"a": (50, 50), "b": (50, 50)}, rng=random.Random(7))
    assert abs(even["a"] - even["b"]) < 0.1
    assert two_proportion_p(50, 100, 50, 100) == 1.0
    assert two_proportion_p(60, 100, 40, 100) == pytest.approx(0.0047, abs=0.0005)


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ({"default": {"weight": 1}}, "not 'default'"),
        ({"a": {"weight": 0}}, "weight"),
        ({"a": {"error_classes": ["permanent"]}}, "error_classes"),
    ],
)
def test_a_bad_variant_is_refused_naming_what_is_wrong(variants: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, {"queues": {"flaky": {"tier": "high", "retry_variants": variants}}}, environ={})
