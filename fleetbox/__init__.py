"""fleetbox: a PostgreSQL job-queue appliance.

The public surface: :class:`Client` to enqueue and manage jobs, :class:`Appliance` to run them
(embedded in your own asyncio program, or as ``fleetbox run``), :class:`Settings`, the domain
values and the errors handlers raise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleetbox.app import Appliance
    from fleetbox.client import Client, NewJob
    from fleetbox.config import Settings, load_settings
    from fleetbox.errors import (
        AuthenticationError,
        ConfigError,
        Conflict,
        DatabaseError,
        Deferred,
        FleetboxError,
        InvalidInput,
        JobError,
        NetworkError,
        NoProcessorError,
        NotFound,
        PermanentError,
        PoisonError,
        RateLimitError,
        SchemaNotReady,
        SyncStateLost,
        TransientError,
        UnknownQueue,
        ValidationError,
    )
    from fleetbox.models import (
        DeadLetter,
        EnqueueResult,
        Job,
        JobInfo,
        JobPriority,
        JobState,
        ManualClock,
        QueueDepth,
        Tier,
    )

__version__ = "0.1.0"

__all__ = [
    "Appliance",
    "AuthenticationError",
    "Client",
    "ConfigError",
    "Conflict",
    "DatabaseError",
    "DeadLetter",
    "Deferred",
    "EnqueueResult",
    "FleetboxError",
    "InvalidInput",
    "Job",
    "JobError",
    "JobInfo",
    "JobPriority",
    "JobState",
    "ManualClock",
    "NetworkError",
    "NewJob",
    "NoProcessorError",
    "NotFound",
    "PermanentError",
    "PoisonError",
    "QueueDepth",
    "RateLimitError",
    "SchemaNotReady",
    "Settings",
    "SyncStateLost",
    "Tier",
    "TransientError",
    "UnknownQueue",
    "ValidationError",
    "__version__",
    "load_settings",
]

#: public name -> the module that defines it. Imported on first use (PEP 562), so that
#: ``fleetbox.tui`` and ``fleetbox.protocol`` load without the core, asyncpg or the database.
_LAZY = {
    "Appliance": "fleetbox.app",
    "Client": "fleetbox.client",
    "NewJob": "fleetbox.client",
    "Settings": "fleetbox.config",
    "load_settings": "fleetbox.config",
    **{
        name: "fleetbox.errors"
        for name in (
            "AuthenticationError",
            "ConfigError",
            "Conflict",
            "DatabaseError",
            "Deferred",
            "FleetboxError",
            "InvalidInput",
            "JobError",
            "NetworkError",
            "NoProcessorError",
            "NotFound",
            "PermanentError",
            "PoisonError",
            "RateLimitError",
            "SchemaNotReady",
            "SyncStateLost",
            "TransientError",
            "UnknownQueue",
            "ValidationError",
        )
    },
    **{
        name: "fleetbox.models"
        for name in (
            "DeadLetter",
            "EnqueueResult",
            "Job",
            "JobInfo",
            "JobPriority",
            "JobState",
            "ManualClock",
            "QueueDepth",
            "Tier",
        )
    },
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fleetbox' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
