"""The retry policy: the spec's rules by error class, counted per class, capped, overridable."""

from __future__ import annotations

import datetime as dt

import pytest

from fleetbox import rules
from fleetbox.config import QueueSettings, RetrySettings, Settings
from fleetbox.errors import ErrorClass
from fleetbox.worker.retry import Decision, RetryPolicy

NOW = dt.datetime(2025, 12, 1, 10, 0, tzinfo=dt.UTC)


def run(
    policy: RetryPolicy,
    classes: list[ErrorClass],
    *,
    max_attempts: int | None = None,
    retry_after: float | None = None,
) -> list[Decision]:
    """Fail one attempt after another with these error classes, feeding each decision forward."""
    retries: dict[str, int] = {}
    decisions = []
    for attempt, error_class in enumerate(classes, start=1):
        decision = policy.decide(
            error_class=error_class,
            retries=retries,
            attempt=attempt,
            max_attempts=max_attempts,
            now=NOW,
            retry_after=retry_after,
        )
        decisions.append(decision)
        if decision.dead:
            break
        retries = decision.retries
    return decisions


def delays(decisions: list[Decision]) -> list[float]:
    return [(d.run_at - NOW).total_seconds() for d in decisions if d.run_at is not None]


@pytest.fixture
def policy() -> RetryPolicy:
    return RetryPolicy(RetrySettings())


@pytest.mark.parametrize("retry_after", [1e12, float("inf")])
def test_a_retry_after_is_capped_at_the_longest_delay(policy: RetryPolicy, retry_after: float) -> None:
    [decision] = run(policy, [ErrorClass.RATE_LIMITED], retry_after=retry_after)
    assert delays([decision]) == [rules.MAX_DELAY_SECONDS]


def test_transient_backs_off_1_2_4_8_16_then_dead(policy: RetryPolicy) -> None:
    decisions = run(policy, [ErrorClass.TRANSIENT] * 10)
    assert len(decisions) == 6
    assert delays(decisions) == [1, 2, 4, 8, 16]
    assert [d.dead for d in decisions] == [False] * 5 + [True]
    assert decisions[4].retries == {"transient": 5}
    assert "5 retries used up" in decisions[-1].reason
    assert decisions[-1].run_at is None


def test_rate_limited_honours_retry_after(policy: RetryPolicy) -> None:
    decisions = run(policy, [ErrorClass.RATE_LIMITED] * 10, retry_after=42.5)
    assert delays(decisions) == [42.5] * 5
    assert decisions[-1].dead
    assert len(decisions) == 6
    assert "rate_limited" in decisions[-1].reason


def test_rate_limited_retry_after_zero_is_immediate(policy: RetryPolicy) -> None:
    decision = policy.decide(
        error_class=ErrorClass.RATE_LIMITED, retries={}, attempt=1, max_attempts=None, now=NOW, retry_after=0
    )
    assert decision.run_at == NOW


def test_rate_limited_without_retry_after_backs_off(policy: RetryPolicy) -> None:
    decisions = run(policy, [ErrorClass.RATE_LIMITED] * 10)
    assert delays(decisions) == [2, 4, 8, 16, 32]
    assert decisions[-1].dead
    assert len(decisions) == 6


def test_authentication_retries_once_immediately_then_dead(policy: RetryPolicy) -> None:
    decisions = run(policy, [ErrorClass.AUTHENTICATION] * 5)
    assert len(decisions) == 2
    assert delays(decisions) == [0]
    assert decisions[0].retries == {"authentication": 1}
    assert decisions[1].dead
    assert "1 retries used up" in decisions[1].reason


def test_permanent_is_never_retried(policy: RetryPolicy) -> None:
    decision = policy.decide(error_class=ErrorClass.PERMANENT, retries={}, attempt=1, max_attempts=10, now=NOW)
    assert decision.dead
    assert decision.run_at is None
    assert decision.retries == {}
    assert "permanent" in decision.reason
    assert policy.rule(ErrorClass.PERMANENT) is None


def test_permanent_after_retries_is_dead_at_once(policy: RetryPolicy) -> None:
    decisions = run(policy, [ErrorClass.TRANSIENT, ErrorClass.RATE_LIMITED, ErrorClass.PERMANENT])
    assert [d.dead for d in decisions] == [False, False, True]
    assert decisions[-1].retries == {"transient": 1, "rate_limited": 1}


def test_lease_expired_runs_again_at_once_three_times(policy: RetryPolicy) -> None:
    decisions = run(policy, [ErrorClass.LEASE_EXPIRED] * 10)
    assert delays(decisions) == [0, 0, 0]
    assert len(decisions) == 4
    assert decisions[-1].dead
    assert "lease_expired" in decisions[-1].reason


def test_retries_are_counted_per_class(policy: RetryPolicy) -> None:
    # Five throttles do not use up the network retries.
    classes = [ErrorClass.RATE_LIMITED] * 5 + [ErrorClass.TRANSIENT] * 5 + [ErrorClass.AUTHENTICATION]
    decisions = run(policy, classes)
    assert not any(d.dead for d in decisions)
    assert decisions[-1].retries == {"rate_limited": 5, "transient": 5, "authentication": 1}
    assert delays(decisions)[5:10] == [1, 2, 4, 8, 16]  # transient starts its own backoff at 1 s
    # now every budget is spent
    for error_class in (ErrorClass.RATE_LIMITED, ErrorClass.TRANSIENT, ErrorClass.AUTHENTICATION):
        d = policy.decide(
            error_class=error_class, retries=decisions[-1].retries, attempt=12, max_attempts=None, now=NOW
        )
        assert d.dead, error_class


def test_interleaved_classes_keep_separate_backoff(policy: RetryPolicy) -> None:
    classes = [ErrorClass.TRANSIENT, ErrorClass.RATE_LIMITED, ErrorClass.TRANSIENT, ErrorClass.RATE_LIMITED]
    assert delays(run(policy, classes)) == [1, 2, 2, 4]


def test_decide_does_not_change_the_given_counts(policy: RetryPolicy) -> None:
    given = {"transient": 2}
    decision = policy.decide(error_class=ErrorClass.TRANSIENT, retries=given, attempt=3, max_attempts=None, now=NOW)
    assert given == {"transient": 2}
    assert decision.retries == {"transient": 3}
    assert delays([decision]) == [4]


def test_job_max_attempts_caps_all_attempts(policy: RetryPolicy) -> None:
    decisions = run(policy, [ErrorClass.TRANSIENT] * 10, max_attempts=3)
    assert [d.dead for d in decisions] == [False, False, True]
    assert "all 3 attempts used" in decisions[-1].reason
    mixed = [ErrorClass.RATE_LIMITED, ErrorClass.TRANSIENT, ErrorClass.AUTHENTICATION]
    assert [d.dead for d in run(policy, mixed, max_attempts=2)] == [False, True]


def test_max_attempts_of_one_means_no_retry(policy: RetryPolicy) -> None:
    decisions = run(policy, [ErrorClass.TRANSIENT], max_attempts=1)
    assert decisions[0].dead


def test_class_limit_applies_below_max_attempts(policy: RetryPolicy) -> None:
    decisions = run(policy, [ErrorClass.AUTHENTICATION] * 5, max_attempts=100)
    assert [d.dead for d in decisions] == [False, True]


def test_queue_overrides_rules_and_max_attempts() -> None:
    queue = QueueSettings(
        max_attempts=4,
        retry={
            "transient": {"max_retries": 2, "base_seconds": 0.5},
            "rate_limited": {"max_retries": 1},
            "authentication": {"max_retries": 0},
        },
    )
    policy = RetryPolicy(RetrySettings(), queue)
    transient = policy.rule(ErrorClass.TRANSIENT)
    assert transient is not None
    assert (transient.max_retries, transient.base_seconds, transient.factor, transient.max_seconds) == (2, 0.5, 2, 16)
    assert delays(run(policy, [ErrorClass.TRANSIENT] * 5)) == [0.5, 1.0]
    assert len(run(policy, [ErrorClass.TRANSIENT] * 5)) == 3
    assert len(run(policy, [ErrorClass.RATE_LIMITED] * 5)) == 2
    assert run(policy, [ErrorClass.AUTHENTICATION])[0].dead
    # the queue's max_attempts caps attempts when the job sets none
    decisions = run(policy, [ErrorClass.LEASE_EXPIRED] * 10)
    assert [d.dead for d in decisions] == [False, False, False, True]
    assert policy.max_attempts == 4
    # lease_expired keeps its default rule: 3 retries, no delay
    assert delays(decisions) == [0, 0, 0]


def test_queue_max_attempts_caps_before_class_limits() -> None:
    policy = RetryPolicy(RetrySettings(), QueueSettings(max_attempts=2))
    decisions = run(policy, [ErrorClass.TRANSIENT] * 10)
    assert [d.dead for d in decisions] == [False, True]
    assert "all 2 attempts used" in decisions[-1].reason


def test_job_max_attempts_wins_over_the_queue() -> None:
    policy = RetryPolicy(RetrySettings(), QueueSettings(max_attempts=2))
    assert len(run(policy, [ErrorClass.TRANSIENT] * 10, max_attempts=5)) == 5


def test_override_of_one_queue_leaves_others_alone() -> None:
    settings = Settings(queues={"reports": {"tier": "low", "retry": {"transient": {"max_retries": 1}}}})
    reports = RetryPolicy(settings.retry, settings.queues["reports"])
    default = RetryPolicy(settings.retry)
    assert len(run(reports, [ErrorClass.TRANSIENT] * 10)) == 2
    assert len(run(default, [ErrorClass.TRANSIENT] * 10)) == 6


def test_global_rule_settings_change_every_queue() -> None:
    settings = Settings(retry={"transient": {"max_retries": 3, "base_seconds": 10, "max_seconds": 25}})
    policy = RetryPolicy(settings.retry, QueueSettings())
    assert delays(run(policy, [ErrorClass.TRANSIENT] * 10)) == [10, 20, 25]


def test_delay_is_capped_by_max_seconds(policy: RetryPolicy) -> None:
    assert policy.delay(ErrorClass.TRANSIENT, 1) == 1
    assert policy.delay(ErrorClass.TRANSIENT, 5) == 16
    assert policy.delay(ErrorClass.TRANSIENT, 50) == 16
    assert policy.delay(ErrorClass.RATE_LIMITED, 20) == 300
    assert policy.delay(ErrorClass.RATE_LIMITED, 20, retry_after=3) == 3
    assert policy.delay(ErrorClass.RATE_LIMITED, 1, retry_after=-5) == 0
    # a server that names its Retry-After on a 503/504 (transient) is waited for too
    assert policy.delay(ErrorClass.TRANSIENT, 1, retry_after=99) == 99
    # but it means nothing to the classes that retry at once
    assert policy.delay(ErrorClass.AUTHENTICATION, 1, retry_after=99) == 0
    assert policy.delay(ErrorClass.LEASE_EXPIRED, 1, retry_after=99) == 0


def test_decision_run_at_is_now_plus_delay(policy: RetryPolicy) -> None:
    later = NOW + dt.timedelta(hours=3)
    decision = policy.decide(
        error_class=ErrorClass.TRANSIENT, retries={"transient": 3}, attempt=4, max_attempts=None, now=later
    )
    assert decision.run_at == later + dt.timedelta(seconds=8)
    assert not decision.dead
    assert decision.reason == "transient retry 4 in 8s"
