"""Retry-strategy experiments: a queue's retry variants, which jobs get which, and what each did.

A queue declares variants in its config (``[queues.<name>.retry_variants.<label>]``, a weight and
its own rules). Every new job gets one variant: a hash of its id (or of a payload key's value,
:func:`fleetbox.rules.variant_bucket`) falls into the weights in force when the job was created
(the queue's latest *epoch* in ``retry_experiments``). Nothing is written on the hot path: the
worker deciding a retry and the report counting a job compute the same variant from the same
epochs. Weights change by new epochs only: the config file (start, reload), an operator's
promotion, a guardrail that stops a variant whose dead-letter rate passed its limit, or the
bandit mode re-weighting by Thompson sampling.

The report compares each variant's eventual success rate with the control's (the variant named
``control``, else the first label) by a two-proportion z-test, and says it in plain words.
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import math
import random
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetbox import rules
from fleetbox.config import QueueSettings
from fleetbox.errors import InvalidInput, NotFound
from fleetbox.models import Clock
from fleetbox.service.audit import Audit
from fleetbox.store import Store
from fleetbox.store.experiments import Epoch, FinishedJob

log = logging.getLogger("fleetbox.experiments")

#: The label of jobs that got no variant (created before or outside an experiment).
DEFAULT = "default"
#: A report counts at most this many finished jobs (the newest).
REPORT_JOBS = 200_000
#: The significance a verdict needs.
ALPHA = 0.05
#: Fewer finished jobs than this in a variant: no verdict yet.
MIN_JOBS = 30
#: The bandit never starves a variant below this share (it keeps learning).
BANDIT_FLOOR = 0.05
#: The bandit writes new weights only when one moves by more than this.
BANDIT_STEP = 0.05


class VariantBook:
    """Every queue's epochs, oldest first: which variant a job has."""

    def __init__(self, epochs: Iterable[Epoch] = ()) -> None:
        self._by_queue: dict[str, list[Epoch]] = {}
        for epoch in epochs:
            self._by_queue.setdefault(epoch.queue, []).append(epoch)
        self._starts = {q: [e.started_at for e in es] for q, es in self._by_queue.items()}

    def queues(self) -> list[str]:
        """The queues that have (or had) an experiment."""
        return sorted(self._by_queue)

    def epochs(self, queue: str) -> list[Epoch]:
        return list(self._by_queue.get(queue, []))

    def weights_at(self, queue: str, created_at: dt.datetime) -> dict[str, float]:
        """The weights in force when a job of ``queue`` was created (empty: no experiment)."""
        starts = self._starts.get(queue)
        if not starts:
            return {}
        i = bisect.bisect_right(starts, created_at) - 1
        return self._by_queue[queue][i].weights if i >= 0 else {}

    def current(self, queue: str) -> Epoch | None:
        epochs = self._by_queue.get(queue)
        return epochs[-1] if epochs else None

    def label(self, queue: str, job_id: int, created_at: dt.datetime, key: object = None) -> str | None:
        """The job's variant (None: it follows the queue's own rules)."""
        weights = self.weights_at(queue, created_at)
        return rules.pick_variant(weights, rules.variant_bucket(job_id, key)) if weights else None


def key_of(settings: QueueSettings | None, data: Mapping[str, Any]) -> object:
    """The payload value that picks a job's variant (None: its id does)."""
    if settings is None or settings.variant_key is None:
        return None
    return data.get(settings.variant_key)


@dataclass(frozen=True, slots=True)
class VariantFigures:
    """What one variant's finished jobs did."""

    label: str
    #: its share of new jobs now (0: stopped or not in the experiment any more)
    weight: float
    jobs: int
    succeeded: int
    dead: int
    #: jobs that eventually succeeded / finished jobs
    success_rate: float | None
    attempts_per_success: float | None
    #: attempts beyond the first, over all its jobs: the requests its retries cost
    extra_requests: int
    time_to_success_p50: float | None
    time_to_success_p95: float | None
    dead_rate: float | None


@dataclass(frozen=True, slots=True)
class Comparison:
    """A variant's success rate against the control's."""

    label: str
    control: str
    #: the two-sided p-value of the difference (None: not enough jobs)
    p_value: float | None
    verdict: str


@dataclass(frozen=True, slots=True)
class Report:
    """A queue's retry experiment: each variant's figures and how they compare."""

    queue: str
    since: dt.datetime | None
    mode: str
    variants: list[VariantFigures]
    comparisons: list[Comparison]
    verdict: str
    history: list[Epoch] = field(default_factory=list)


def two_proportion_p(successes_a: int, n_a: int, successes_b: int, n_b: int) -> float:
    """The two-sided p-value of a two-proportion z-test (pooled)."""
    pooled = (successes_a + successes_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if variance == 0:
        return 1.0  # both all successes, or both all failures: no difference to see
    z = (successes_b / n_b - successes_a / n_a) / math.sqrt(variance)
    return math.erfc(abs(z) / math.sqrt(2))


class Experiments:
    """Retry experiments over one store."""

    def __init__(self, store: Store, audit: Audit, *, clock: Clock) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock

    async def book(self) -> VariantBook:
        """Every queue's epochs, as the worker and the report read them."""
        return VariantBook(await self._store.experiments.epochs())

    # -- managing --------------------------------------------------------------------------------

    async def apply_config(self, queues: Mapping[str, QueueSettings]) -> None:
        """The variants of the config file (at start and on reload): a queue whose configured
        weights differ from its latest config epoch gets a new epoch; one whose variants were
        removed ends its experiment. A promotion, guardrail or bandit epoch after an unchanged
        config stays in force."""
        book = await self.book()
        now = self._clock.now()
        for queue in sorted(set(queues) | set(book.queues())):
            settings = queues.get(queue)
            configured = {label: v.weight for label, v in (settings.retry_variants if settings else {}).items()}
            from_config = [e for e in book.epochs(queue) if e.source == "config"]
            if configured == (from_config[-1].weights if from_config else {}):
                continue  # unchanged in the file: what is in force stays
            reason = "variants from the config file" if configured else "variants removed from the config file"
            await self._store.experiments.add(queue, now, configured, source="config", reason=reason, actor="config")
            fields = {"queue": queue, "weights": configured, "source": "config"}
            log.info("retry experiment weights", extra={"event": "retry_experiment_weights", **fields})

    async def promote(self, queue: str, label: str, *, actor: str) -> Epoch:
        """Make ``label`` the rules of every new job of ``queue`` (the experiment's end)."""
        book = await self.book()
        current = book.current(queue)
        labels = {label for e in book.epochs(queue) for label in e.weights}
        if current is None or label not in labels:
            known = ", ".join(sorted(labels)) or "none"
            raise NotFound(f"queue {queue!r:.80} has no retry variant {label!r:.80} (variants: {known})")
        now = self._clock.now()
        async with self._store.transaction() as tx:
            await tx.experiments.add(
                queue, now, {label: 1.0}, source="promote", reason=f"{label} promoted", actor=actor
            )
            await self._audit.record(tx, actor, "experiment.promote", f"queue:{queue}", {"variant": label})
        return Epoch(queue, now, {label: 1.0}, "promote", f"{label} promoted", actor)

    # -- the report ------------------------------------------------------------------------------

    async def report(self, queue: str, settings: QueueSettings | None) -> Report:
        """Each variant's figures over the jobs finished since the experiment began."""
        if not rules.valid_queue_name(queue):
            raise InvalidInput(f"must be 1-63 of a-z, 0-9, '-', '_', '.', got {queue!r:.80}", field="queue")
        book = await self.book()
        epochs = book.epochs(queue)
        since = next((e.started_at for e in epochs if e.weights), None)
        jobs = await self._store.experiments.finished_jobs(
            queue, since or self._clock.now() - dt.timedelta(days=7), REPORT_JOBS
        )
        groups: dict[str, list[FinishedJob]] = {}
        for job in jobs:
            label = book.label(queue, job.id, job.created_at, key_of(settings, job.data)) or DEFAULT
            groups.setdefault(label, []).append(job)
        current = book.current(queue)
        # No experiment in force: every new job follows the queue's own rules, the default variant.
        weights = (current.weights if current is not None else {}) or {DEFAULT: 1.0}
        total = sum(weights.values()) or 1.0
        labels = sorted({*groups, *(label for e in epochs for label in e.weights)} - ({DEFAULT} - set(groups)))
        if not labels:
            labels = [DEFAULT]
        figures = [_figures(label, groups.get(label, []), weights.get(label, 0.0) / total) for label in labels]
        comparisons = _compare(figures)
        mode = settings.variant_mode if settings is not None and settings.retry_variants else "none"
        return Report(queue, since, mode, figures, comparisons, _verdict(comparisons, figures), epochs)

    # -- guardrails and the bandit (a periodic task) -----------------------------------------

    async def tune(self, queues: Mapping[str, QueueSettings]) -> dict[str, str]:
        """Stop variants past their guardrail, and re-weight the bandit queues; returns what changed."""
        changed: dict[str, str] = {}
        for queue, settings in queues.items():
            if not settings.retry_variants:
                continue
            book = await self.book()
            current = book.current(queue)
            if current is None or not current.weights:
                continue
            report = await self.report(queue, settings)
            weights = dict(current.weights)
            limit, minimum = settings.guardrail_dead_rate, settings.guardrail_min_jobs
            stopped = [
                v for v in report.variants if v.label in weights and v.jobs >= minimum and (v.dead_rate or 0) > limit
            ]
            if stopped and len(stopped) < len(weights):
                for v in stopped:
                    weights.pop(v.label)
                    log.warning(
                        "retry variant stopped by its guardrail",
                        extra={
                            "event": "retry_variant_stopped",
                            "queue": queue,
                            "variant": v.label,
                            "dead_rate": v.dead_rate,
                            "limit": settings.guardrail_dead_rate,
                        },
                    )
                reason = "; ".join(
                    f"{v.label}: dead-letter rate {v.dead_rate:.0%} over {settings.guardrail_dead_rate:.0%} "
                    f"after {v.jobs} jobs"
                    for v in stopped
                    if v.dead_rate is not None
                )
                await self._add(queue, weights, "guardrail", reason)
                changed[queue] = reason
                continue
            if settings.variant_mode == "bandit":
                tuned = thompson_weights(
                    {v.label: (v.succeeded, v.dead) for v in report.variants if v.label in weights}
                )
                shares = {label: w / sum(weights.values()) for label, w in weights.items()}
                if tuned and max(abs(tuned[label] - shares.get(label, 0)) for label in tuned) > BANDIT_STEP:
                    await self._add(queue, tuned, "bandit", "re-weighted by Thompson sampling of the success rates")
                    changed[queue] = "bandit"
        return changed

    async def _add(self, queue: str, weights: Mapping[str, float], source: str, reason: str) -> None:
        async with self._store.transaction() as tx:
            await tx.experiments.add(queue, self._clock.now(), weights, source=source, reason=reason, actor="fleetbox")
            await self._audit.record(
                tx, "fleetbox", f"experiment.{source}", f"queue:{queue}", {"weights": dict(weights), "reason": reason}
            )


def thompson_weights(
    outcomes: Mapping[str, tuple[int, int]], *, draws: int = 4000, rng: random.Random | None = None
) -> dict[str, float]:
    """Each variant's chance of having the best success rate, from Beta(1 + successes, 1 +
    failures) samples, floored at :data:`BANDIT_FLOOR` and normalised."""
    if len(outcomes) < 2:
        return {}
    rng = rng or random.Random()
    wins = dict.fromkeys(outcomes, 0)
    labels = sorted(outcomes)
    for _ in range(draws):
        best = max(labels, key=lambda label: rng.betavariate(1 + outcomes[label][0], 1 + outcomes[label][1]))
        wins[best] += 1
    floored = {label: max(BANDIT_FLOOR, count / draws) for label, count in wins.items()}
    total = sum(floored.values())
    return {label: round(w / total, 4) for label, w in floored.items()}


def _figures(label: str, jobs: list[FinishedJob], weight: float) -> VariantFigures:
    succeeded = [j for j in jobs if j.state == "succeeded"]
    dead = len(jobs) - len(succeeded)
    times = sorted((j.finished_at - j.created_at).total_seconds() for j in succeeded)
    return VariantFigures(
        label=label,
        weight=round(weight, 4),
        jobs=len(jobs),
        succeeded=len(succeeded),
        dead=dead,
        success_rate=len(succeeded) / len(jobs) if jobs else None,
        attempts_per_success=sum(j.attempts for j in succeeded) / len(succeeded) if succeeded else None,
        extra_requests=sum(max(0, j.attempts - 1) for j in jobs),
        time_to_success_p50=statistics.median(times) if times else None,
        time_to_success_p95=times[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)] if times else None,
        dead_rate=dead / len(jobs) if jobs else None,
    )


def _compare(figures: list[VariantFigures]) -> list[Comparison]:
    arms = [f for f in figures if f.label != DEFAULT]
    if len(arms) < 2:
        return []
    control = next((f for f in arms if f.label == "control"), arms[0])
    out = []
    for f in arms:
        if f is control:
            continue
        if f.jobs < MIN_JOBS or control.jobs < MIN_JOBS:
            needed = f"not enough jobs yet ({control.jobs} and {f.jobs}; {MIN_JOBS} each needed)"
            out.append(Comparison(f.label, control.label, None, needed))
            continue
        p = two_proportion_p(control.succeeded, control.jobs, f.succeeded, f.jobs)
        if p < ALPHA:
            better, worse = (f, control) if (f.success_rate or 0) > (control.success_rate or 0) else (control, f)
            verdict = (
                f"{better.label} better than {worse.label}: success {better.success_rate:.1%} against "
                f"{worse.success_rate:.1%} (p = {p:.3g} < {ALPHA})"
            )
        else:
            verdict = f"no difference yet between {f.label} and {control.label} (p = {p:.3g})"
        out.append(Comparison(f.label, control.label, p, verdict))
    return out


def _verdict(comparisons: list[Comparison], figures: list[VariantFigures]) -> str:
    if not comparisons:
        arms = [f for f in figures if f.label != DEFAULT]
        return "no experiment: one variant" if len(arms) < 2 else "no verdict"
    return "; ".join(c.verdict for c in comparisons)
