"""The one service layer: every operator action and every way a job enters, defined once.

The CLI, the admin HTTP API, the control socket (and so the terminal UI) and the Python
``Client`` all call this, and only this; it calls the store. Audit rows are written here only
(:mod:`fleetbox.service.audit`)::

    service = Service(store, clock=clock, limits=limits, thresholds=thresholds)
    await service.enqueue.enqueue("sync", {"userId": "u1"})
    await service.dead_letters.retry(dead_letter_id, actor="alice")
    await service.queues.set_paused("sync", True, actor="alice")
    await service.dependencies.skip(dead_letter_id, {"url": None}, actor="alice")
"""

from __future__ import annotations

from fleetbox import rules
from fleetbox.models import Clock, SystemClock, Thresholds
from fleetbox.redaction import Redaction
from fleetbox.service.audit import Audit
from fleetbox.service.dead_letters import DeadLetters
from fleetbox.service.dependencies import Dependencies
from fleetbox.service.enqueue import Enqueuer
from fleetbox.service.experiments import Experiments
from fleetbox.service.jobs import Jobs
from fleetbox.service.queues import Queues
from fleetbox.service.retention import Retention
from fleetbox.service.schedules import Schedules
from fleetbox.service.thresholds import ThresholdSettings
from fleetbox.store import Store

__all__ = ["Service"]


class Service:
    """The operator actions and enqueue, over one store.

    Args:
        store: the fleetbox database (open).
        clock: the time of every decision (tests pass a ManualClock).
        limits: the payload limits in force (``[appliance]`` settings).
        thresholds: the configured alert thresholds.
        redaction: what of each queue's payloads is masked when read (default: the built-in
            policies of the spec's Graph queues; ``config.redaction_of(settings)`` adds the
            configured ones).
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        limits: rules.Limits | None = None,
        thresholds: Thresholds | None = None,
        redaction: Redaction | None = None,
    ) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.audit = Audit(store)
        self.enqueue = Enqueuer(store, self.audit, clock=self.clock, limits=limits or rules.Limits())
        redaction = redaction or Redaction.of()
        self.dead_letters = DeadLetters(store, self.audit, clock=self.clock, redaction=redaction)
        self.jobs = Jobs(store, self.audit, self.dead_letters, clock=self.clock, redaction=redaction)
        self.queues = Queues(store, self.audit, clock=self.clock)
        self.thresholds = ThresholdSettings(store, self.audit, clock=self.clock, configured=thresholds or Thresholds())
        self.retention = Retention(store)
        self.schedules = Schedules(store, self.audit, self.enqueue, clock=self.clock, redaction=redaction)
        self.dependencies = Dependencies(store, self.audit, self.enqueue, clock=self.clock)
        self.experiments = Experiments(store, self.audit, clock=self.clock)

    @property
    def redaction(self) -> Redaction:
        """The redaction policies in force."""
        return self.jobs.redaction

    def apply(self, limits: rules.Limits, thresholds: Thresholds, redaction: Redaction | None = None) -> None:
        """A configuration reload: new payload limits, configured thresholds and redaction
        policies apply from now."""
        self.enqueue.limits = limits
        self.thresholds.configured = thresholds
        if redaction is not None:
            self.jobs.redaction = redaction
            self.dead_letters.redaction = redaction
            self.schedules.redaction = redaction
