"""The queue registry: the spec's nine queues, custom queues from config, tiers and handlers.

The registry says what this appliance can run: the dispatcher claims only queues with a handler
here, and :func:`register_queues` records every queue in the database (so enqueue knows them
whichever appliance runs them).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from fleetbox import protocol, rules
from fleetbox.config import QueueSettings, Settings
from fleetbox.errors import ConfigError
from fleetbox.models import Job, Tier
from fleetbox.monitor.notify import ALERT_QUEUE
from fleetbox.store import Store

Handler = Callable[[Job], Awaitable[object]]

DEAD_LETTER_QUEUE = "dead-letter"

#: The spec's queues and their tiers (one list, :data:`fleetbox.protocol.SPEC_QUEUES`, which the
#: terminal UI reads too), and the dead-letter queue. Their processors talk to Microsoft Graph.
SPEC_QUEUES: dict[str, Tier] = {
    **{name: Tier.parse(tier) for name, tier in protocol.SPEC_QUEUES},
    DEAD_LETTER_QUEUE: Tier.DEAD,
}

#: Every queue an appliance always has: the spec's and fleetbox's own alert deliveries.
BUILTIN_QUEUES: dict[str, Tier] = {**SPEC_QUEUES, ALERT_QUEUE: Tier.HIGH}


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue the appliance serves."""

    name: str
    tier: Tier
    #: None: the queue has no processor, and its jobs dead-letter with a clear error
    handler: Handler | None
    settings: QueueSettings


def import_handler(path: str) -> Handler:
    """Resolve ``package.module:function`` to an async callable."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"handler {path!r}: cannot import {module_name!r}: {exc}") from None
    except Exception as exc:  # the module itself is broken (SyntaxError, NameError, ...)
        raise ConfigError(f"handler {path!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    func = getattr(module, attr, None)
    if func is None:
        raise ConfigError(f"handler {path!r}: {module_name!r} has no attribute {attr!r}")
    if not callable(func):
        raise ConfigError(f"handler {path!r} is not callable")
    if not inspect.iscoroutinefunction(func):
        raise ConfigError(f"handler {path!r} must be an async function (async def)")
    return func  # type: ignore[no-any-return]


def build_registry(
    settings: Settings, handlers: Mapping[str, Handler] | None = None, *, import_handlers: bool = True
) -> dict[str, QueueSpec]:
    """Every queue: the spec's, then the config's; handlers given in code win over config paths."""
    handlers = dict(handlers or {})
    registry: dict[str, QueueSpec] = {}
    names = list(BUILTIN_QUEUES) + [n for n in settings.queues if n not in BUILTIN_QUEUES]
    for name in handlers:
        if name not in names:
            raise ConfigError(f"handler given for unknown queue {name!r}; declare it under [queues.{name}]")
    for name in names:
        qs = settings.queues.get(name, QueueSettings())
        if name == DEAD_LETTER_QUEUE:
            if name in settings.queues or name in handlers:
                raise ConfigError("queues.dead-letter: the dead-letter queue cannot be configured")
            registry[name] = QueueSpec(name, Tier.DEAD, None, qs)
            continue
        if name in BUILTIN_QUEUES:
            tier = Tier.parse(qs.tier) if qs.tier else BUILTIN_QUEUES[name]
        elif qs.tier is None:
            raise ConfigError(f"queues.{name}.tier: a custom queue needs a tier (high, medium or low)")
        else:
            tier = Tier.parse(qs.tier)
        if not rules.valid_queue_name(name):
            raise ConfigError(f"queues.{name}: a queue name is 1-63 lowercase letters, digits, '-', '_' or '.'")
        handler = handlers.get(name)
        if handler is None and qs.handler is not None and import_handlers:
            handler = import_handler(qs.handler)
        registry[name] = QueueSpec(name, tier, handler, qs)
    return registry


async def register_queues(store: Store, registry: Mapping[str, QueueSpec]) -> None:
    """Record the queues in the database (new ones, changed tiers); pause flags are kept."""
    async with store.transaction() as tx:
        await tx.queues.register((spec.name, spec.tier) for spec in registry.values())


def runnable(registry: Mapping[str, QueueSpec], tier: Tier) -> list[str] | None:
    """The queues of ``tier`` this appliance can run (None: every queue of the tier has a handler)."""
    queues = [s for s in registry.values() if s.tier is tier]
    if all(s.handler is not None for s in queues):
        return None
    return [s.name for s in queues if s.handler is not None]
