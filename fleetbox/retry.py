"""The retry policy by error class: when a failed attempt runs again, or that it goes dead.

=============== ============================================ ==========================
error class     delay before retry n (n = 1, 2, ...)          retries (default)
=============== ============================================ ==========================
rate_limited    the Retry-After given, else 2 s * 2**(n-1)    5
transient       1 s * 2**(n-1): 1, 2, 4, 8, 16 s              5
authentication  none (the token-refresh hook runs first)      1
lease_expired   none (the worker died; run again at once)     3
permanent       never retried: straight to the dead letters   0
=============== ============================================ ==========================

Retries are counted per class, so five throttles do not use up the network retries. A job's
``max_attempts`` (when set) caps all attempts together. Every rule can be overridden per queue.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fleetbox.config import QueueSettings, RetryRule, RetrySettings
from fleetbox.errors import ErrorClass


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
    """Decides, for one queue, whether and when a failed attempt is retried."""

    def __init__(self, defaults: RetrySettings, queue: QueueSettings | None = None) -> None:
        self._rules: dict[str, RetryRule] = {}
        overrides = queue.retry if queue is not None else None
        for cls in ("rate_limited", "transient", "authentication", "lease_expired"):
            rule: RetryRule = getattr(defaults, cls)
            override = getattr(overrides, cls) if overrides is not None else None
            if override is not None:
                rule = rule.model_copy(update=override.model_dump(exclude_none=True))
            self._rules[cls] = rule
        self.max_attempts = queue.max_attempts if queue is not None else None

    def rule(self, error_class: ErrorClass) -> RetryRule | None:
        return self._rules.get(error_class.value)

    def delay(self, error_class: ErrorClass, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (from 1) of this class."""
        rule = self._rules[error_class.value]
        if error_class is ErrorClass.RATE_LIMITED and retry_after is not None:
            return max(0.0, retry_after)
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
            return Decision(None, used, "permanent error: not retried")
        n = used.get(error_class.value, 0) + 1
        if n > rule.max_retries:
            return Decision(None, used, f"{error_class.value}: {rule.max_retries} retries used up")
        cap = max_attempts if max_attempts is not None else self.max_attempts
        if cap is not None and attempt >= cap:
            return Decision(None, used, f"all {cap} attempts used")
        used[error_class.value] = n
        delay = self.delay(error_class, n, retry_after)
        return Decision(now + dt.timedelta(seconds=delay), used, f"{error_class.value} retry {n} in {delay:g}s")


def build_policies(defaults: RetrySettings, queues: Iterable[tuple[str, QueueSettings]]) -> dict[str, RetryPolicy]:
    """One policy per queue: the defaults with that queue's overrides."""
    return {name: RetryPolicy(defaults, queue) for name, queue in queues}
