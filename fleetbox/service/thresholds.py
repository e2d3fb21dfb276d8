"""Alert thresholds: the configured ones, and changes made at runtime (shared by every appliance)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from fleetbox import rules
from fleetbox.errors import InvalidInput
from fleetbox.models import Clock, Thresholds
from fleetbox.service.audit import Audit
from fleetbox.store import Store
from fleetbox.store.monitor import StoredThresholds


def merged(configured: Thresholds, stored: StoredThresholds | None) -> Thresholds:
    """The thresholds in force: those changed at runtime, the configured ones for the rest."""
    if stored is None:
        return configured
    changes = {name: getattr(stored, name) for name in rules.THRESHOLDS if getattr(stored, name) is not None}
    return replace(configured, **changes)


class ThresholdSettings:
    """Reads and changes the thresholds in force."""

    def __init__(self, store: Store, audit: Audit, *, clock: Clock, configured: Thresholds) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock
        #: the configured thresholds (the fallback for fields not changed at runtime)
        self.configured = configured

    async def current(self) -> Thresholds:
        """The thresholds in force. Raises DatabaseError when the database cannot be reached."""
        return merged(self.configured, await self._store.monitor.thresholds())

    async def update(self, changes: Mapping[str, object], *, actor: str) -> Thresholds:
        """Change thresholds for every process on the database; returns the thresholds in force.

        ``changes`` uses the spec's keys (``maxBacklog``, ``maxFailureRate``, ``maxProcessingTime``,
        ``maxDeadLetterJobs``) or snake_case; keys not given keep their values. Audit-logged.

        Raises:
            InvalidInput: no key, an unknown key or a bad value (named); nothing was changed.
        """
        parsed = rules.parse_threshold_changes(changes)
        if not parsed:
            keys = ", ".join(r.camel for r in rules.THRESHOLDS.values())
            raise InvalidInput(f"give at least one of {keys}", field="thresholds")
        actor = rules.check_text(actor, "actor", limit=rules.MAX_ACTOR) or ""
        wanted = StoredThresholds(**{name: parsed.get(name) for name in rules.THRESHOLDS})  # type: ignore[arg-type]
        async with self._store.transaction() as tx:
            result = merged(self.configured, await tx.monitor.set_thresholds(wanted, self._clock.now(), actor))
            changed = {rules.THRESHOLDS[name].camel: value for name, value in parsed.items()}
            await self._audit.record(
                tx, actor, "monitor.thresholds", "thresholds", {"changes": changed, "thresholds": result.to_json()}
            )
        return result
