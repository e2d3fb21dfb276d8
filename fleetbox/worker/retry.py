"""The retry policy by error class: the one place that decides whether and when a failed attempt
runs again, or that its job goes to the dead-letter queue.

=============== ============================================ ==========================
error class     delay before retry n (n = 1, 2, ...)          retries (default)
=============== ============================================ ==========================
rate_limited    the Retry-After given, else 2 s * 2**(n-1)    5
transient       1 s * 2**(n-1): 1, 2, 4, 8, 16 s              5
authentication  none (the token-refresh hook runs first)      1
lease_expired   none (the worker died; run again at once)     3
permanent       never retried: straight to the dead letters   0
poison          never retried: straight to the dead letters   0
=============== ============================================ ==========================

Retries are counted per class, so five throttles do not use up the network retries. A job's
``max_attempts`` (when set), else its queue's, caps all attempts together. Every rule can be
overridden per queue. The executor asks :meth:`RetryPolicies.decide` after a failed attempt; the
lease reaper's SQL gets its numbers from :meth:`RetryPolicies.lease_rules`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fleetbox import rules
from fleetbox.config import QueueSettings, RetryRule, RetrySettings, RetryVariantSettings
from fleetbox.errors import ErrorClass
from fleetbox.models import Job
from fleetbox.service.experiments import VariantBook, key_of
from fleetbox.store.jobs import LeaseRule

_RETRIED = (ErrorClass.RATE_LIMITED, ErrorClass.TRANSIENT, ErrorClass.AUTHENTICATION, ErrorClass.LEASE_EXPIRED)


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens after a failed attempt."""

    #: None: the job goes to the dead-letter queue
    run_at: dt.datetime | None
    #: retries used by class, including this one
    retries: dict[str, int]
    reason: str

    @property
    def dead(self) -> bool:
        return self.run_at is None


class RetryPolicy:
    """Decides, for one queue (or one retry variant of it), whether and when a failed attempt is
    retried."""

    def __init__(
        self, defaults: RetrySettings, queue: QueueSettings | None = None, variant: RetryVariantSettings | None = None
    ) -> None:
        self._rules: dict[str, RetryRule] = {}
        layers = [queue.retry if queue is not None else None]
        if variant is not None:
            layers.append(variant.retry)
        for cls in _RETRIED:
            rule: RetryRule = getattr(defaults, cls.value)
            for i, overrides in enumerate(layers):
                in_scope = i == 0 or variant is None or not variant.error_classes or cls.value in variant.error_classes
                override = getattr(overrides, cls.value) if overrides is not None and in_scope else None
                if override is not None:
                    rule = rule.model_copy(update=override.model_dump(exclude_none=True))
            self._rules[cls.value] = rule
        self.max_attempts = queue.max_attempts if queue is not None else None

    def rule(self, error_class: ErrorClass) -> RetryRule | None:
        """The rule of a retried class (None: that class is never retried)."""
        return self._rules.get(error_class.value)

    def delay(self, error_class: ErrorClass, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (from 1) of this class."""
        rule = self._rules[error_class.value]
        if retry_after is not None and error_class in (ErrorClass.RATE_LIMITED, ErrorClass.TRANSIENT):
            # The server said when to come back (429, or a 503/504 with Retry-After); no further
            # off than a delay may be (1e12 s would overflow the retry time).
            return min(max(0.0, retry_after), rules.MAX_DELAY_SECONDS)
        return float(min(rule.max_seconds, rule.base_seconds * rule.factor ** (retry - 1)))

    def decide(
        self,
        *,
        error_class: ErrorClass,
        retries: Mapping[str, int],
        attempt: int,
        max_attempts: int | None,
        now: dt.datetime,
        retry_after: float | None = None,
    ) -> Decision:
        used = dict(retries)
        rule = self.rule(error_class)
        if rule is None:
            return Decision(None, used, f"{error_class.value} error: not retried")
        n = used.get(error_class.value, 0) + 1
        if n > rule.max_retries:
            return Decision(None, used, f"{error_class.value}: {rule.max_retries} retries used up")
        cap = max_attempts if max_attempts is not None else self.max_attempts
        if cap is not None and attempt >= cap:
            return Decision(None, used, f"all {cap} attempts used")
        used[error_class.value] = n
        delay = self.delay(error_class, n, retry_after)
        return Decision(now + dt.timedelta(seconds=delay), used, f"{error_class.value} retry {n} in {delay:g}s")


class RetryPolicies:
    """The retry policy of every queue: the configured defaults with each queue's overrides, and
    each retry variant's rules over its queue's (``book`` says which variant a job has)."""

    def __init__(
        self, defaults: RetrySettings, queues: Iterable[tuple[str, QueueSettings]], book: VariantBook | None = None
    ) -> None:
        self.default = RetryPolicy(defaults)
        self._settings = dict(queues)
        self._by_queue = {name: RetryPolicy(defaults, queue) for name, queue in self._settings.items()}
        self._variants = {
            (name, label): RetryPolicy(defaults, queue, variant)
            for name, queue in self._settings.items()
            for label, variant in queue.retry_variants.items()
        }
        #: every queue's experiment epochs (refreshed by the worker)
        self.book = book or VariantBook()

    def of(self, queue: str) -> RetryPolicy:
        return self._by_queue.get(queue, self.default)

    def variant_of(self, job: Job) -> str | None:
        """The retry variant of ``job`` (None: its queue's own rules)."""
        if not self.book.epochs(job.queue):
            return None
        return self.book.label(job.queue, job.id, job.created_at, key_of(self._settings.get(job.queue), job.data))

    def decide(
        self,
        queue: str,
        *,
        error_class: ErrorClass,
        retries: Mapping[str, int],
        attempt: int,
        max_attempts: int | None,
        now: dt.datetime,
        retry_after: float | None = None,
        job: Job | None = None,
    ) -> Decision:
        """After a failed attempt of a job of ``queue``: when it runs again, or that it is dead.
        With ``job``, a job in a retry experiment follows its variant's rules."""
        label = self.variant_of(job) if job is not None else None
        policy = self._variants.get((queue, label)) if label is not None else None
        decision = (policy or self.of(queue)).decide(
            error_class=error_class,
            retries=retries,
            attempt=attempt,
            max_attempts=max_attempts,
            now=now,
            retry_after=retry_after,
        )
        if label is None or policy is None:
            return decision
        return Decision(decision.run_at, decision.retries, f"{decision.reason} (retry variant {label})")

    def lease_rules(self) -> tuple[list[LeaseRule], int]:
        """What the lease reaper needs: per queue, how many lost leases its jobs may have and its
        cap on attempts; and the default number of lost leases."""
        default = self.default.rule(ErrorClass.LEASE_EXPIRED)
        assert default is not None
        out = []
        for name, policy in self._by_queue.items():
            rule = policy.rule(ErrorClass.LEASE_EXPIRED)
            assert rule is not None
            out.append(LeaseRule(name, rule.max_retries, policy.max_attempts))
        return out, default.max_retries
