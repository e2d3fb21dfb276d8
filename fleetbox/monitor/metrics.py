"""Prometheus figures of one appliance process, in the text format operators scrape.

Counters and the processing-time histogram count the attempts this process finished (each
process is scraped on its own; sum them across processes). Queue depth and dead letters are
read from the database at scrape time, so any one process reports them for the whole database.
Graph's limiters (``fleetbox_graph_limiter_*``) are read from this process at scrape time: each
appliance keeps its own limits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from fleetbox.models import JobState, Outcome, QueueDepth


class FinishedAttempt(Protocol):
    """What the metrics read of a finished attempt (the worker's ``Finished``)."""

    @property
    def queue(self) -> str: ...

    @property
    def outcome(self) -> Outcome: ...

    @property
    def started_at(self) -> float: ...

    @property
    def finished_at(self) -> float: ...


class RateLimitEvent(Protocol):
    """What the metrics read of a rate-limit event (Graph's limiters emit them)."""

    @property
    def resource(self) -> str: ...

    @property
    def event(self) -> str: ...

    @property
    def wait_ms(self) -> float | None: ...


class LimiterFigures(Protocol):
    """What the metrics read of one Graph limiter (:class:`fleetbox.graph.ratelimit.LimiterGauge`)."""

    @property
    def limiter(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def per(self) -> str: ...

    @property
    def capacity(self) -> float: ...

    @property
    def in_use(self) -> float | None: ...

    @property
    def available(self) -> float: ...

    @property
    def keys(self) -> int: ...

    @property
    def waits(self) -> int: ...


class _LimiterCollector(Collector):
    """Graph's limiters, read when scraped."""

    def __init__(self, source: Callable[[], Iterable[LimiterFigures]]) -> None:
        self._source = source

    def describe(self) -> Iterable[Metric]:
        return []  # read at scrape time only (the source may not be ready at registration)

    def collect(self) -> Iterator[Metric]:
        labels = ["limiter", "kind", "per"]
        capacity = GaugeMetricFamily(
            "fleetbox_graph_limiter_capacity",
            "Graph limiter capacity: requests per second (kind rate), requests at once (concurrency), "
            "bytes per upload period (bytes); per appliance process, per key where per is not appliance.",
            labels=labels,
        )
        in_use = GaugeMetricFamily(
            "fleetbox_graph_limiter_in_use",
            "Requests holding a slot (concurrency) or bytes sent in the window (bytes); the fullest key.",
            labels=labels,
        )
        available = GaugeMetricFamily(
            "fleetbox_graph_limiter_available",
            "Tokens (rate), free slots (concurrency) or bytes (bytes) left now; the fullest key.",
            labels=labels,
        )
        keys = GaugeMetricFamily(
            "fleetbox_graph_limiter_keys", "Mailboxes or chats the limiter keeps a limit for now.", labels=labels
        )
        waits = CounterMetricFamily(
            "fleetbox_graph_limiter_waits", "Graph requests this limiter made wait (over 1 ms).", labels=labels
        )
        for figures in self._source():
            values = [figures.limiter, figures.kind, figures.per]
            capacity.add_metric(values, figures.capacity)
            if figures.in_use is not None:
                in_use.add_metric(values, figures.in_use)
            available.add_metric(values, figures.available)
            keys.add_metric(values, figures.keys)
            waits.add_metric(values, figures.waits)
        yield from (capacity, in_use, available, keys, waits)


#: Processing-time buckets in seconds: Graph calls take 0.05 to a few seconds; uploads longer.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The figures of one appliance, in their own registry (several appliances may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.attempts = Counter(
            "fleetbox_attempts",
            "Attempts finished by this process, by queue and outcome.",
            ["queue", "outcome"],
            registry=self.registry,
        )
        #: the duration histogram of each queue seen, so a batch looks each up once
        self._durations: dict[str, Histogram] = {}
        self.duration = Histogram(
            "fleetbox_attempt_duration_seconds",
            "Time from handler start to finish, by queue.",
            ["queue"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.jobs = Gauge(
            "fleetbox_queue_jobs",
            "Unfinished jobs by queue and state (whole database).",
            ["queue", "state"],
            registry=self.registry,
        )
        self.dead = Gauge(
            "fleetbox_dead_letters_open",
            "Dead letters not yet retried or discarded, by original queue.",
            ["queue"],
            registry=self.registry,
        )
        self.paused = Gauge("fleetbox_queue_paused", "1 when the queue is paused.", ["queue"], registry=self.registry)
        self.rate_waits = Counter(
            "fleetbox_rate_limit_waits",
            "Graph requests that waited for a rate limiter (in a slot or deferred), by resource.",
            ["resource"],
            registry=self.registry,
        )
        self.rate_wait_seconds = Counter(
            "fleetbox_rate_limit_wait_seconds",
            "Time Graph requests spent waiting for rate limiters, by resource.",
            ["resource"],
            registry=self.registry,
        )
        self.throttled = Counter(
            "fleetbox_graph_throttled",
            "Graph answers 429 (or 503/504): requests throttled, by resource.",
            ["resource"],
            registry=self.registry,
        )
        self.notifications_rejected = Counter(
            "fleetbox_graph_notifications_rejected",
            "Change notifications discarded for a wrong clientState (forged, or a stale subscription).",
            registry=self.registry,
        )
        self.task_failures = Counter(
            "fleetbox_task_failures",
            "Failures of this process's background tasks (each was restarted), by task.",
            ["task"],
            registry=self.registry,
        )

    def watch_limiters(self, source: Callable[[], Iterable[LimiterFigures]]) -> None:
        """Report Graph's limiters (``source`` is read at every scrape)."""
        self.registry.register(_LimiterCollector(source))

    def observe(self, items: Iterable[FinishedAttempt]) -> None:
        """Count finished attempts (the completer calls this after each batch it writes)."""
        # Once per batch, not per attempt: labels() costs more than the count it finds (it was
        # a tenth of the appliance's CPU in a drain of no-op jobs, docs/performance.md).
        counts: dict[tuple[str, Outcome], int] = {}
        durations = self._durations
        for item in items:
            key = (item.queue, item.outcome)
            counts[key] = counts.get(key, 0) + 1
            histogram = durations.get(item.queue)
            if histogram is None:
                histogram = durations[item.queue] = self.duration.labels(item.queue)
            histogram.observe(max(0.0, item.finished_at - item.started_at))
        for (queue, outcome), count in counts.items():
            self.attempts.labels(queue, outcome.value).inc(count)

    def observe_rate_event(self, event: RateLimitEvent) -> None:
        """Count a rate-limit wait or a throttled request."""
        if event.event == "wait":
            self.rate_waits.labels(event.resource).inc()
            self.rate_wait_seconds.labels(event.resource).inc((event.wait_ms or 0.0) / 1000)
        else:
            self.throttled.labels(event.resource).inc()

    def set_depth(self, depth: Sequence[QueueDepth]) -> None:
        """Refresh the per-queue gauges from a fresh count."""
        for d in depth:
            for state, value in (
                (JobState.WAITING, d.waiting),
                (JobState.SCHEDULED, d.scheduled),
                (JobState.RETRYING, d.retrying),
                (JobState.RUNNING, d.running),
            ):
                self.jobs.labels(d.queue, state).set(value)
            self.dead.labels(d.queue).set(d.dead)
            self.paused.labels(d.queue).set(1 if d.paused else 0)

    def render(self) -> bytes:
        """The registry in the Prometheus text format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)
