"""The data-access layer: the only place that runs SQL and the only importer of asyncpg.

:class:`Store` opens a pool of connections to the fleetbox schema and offers the typed stores,
one per area: ``jobs``, ``queues``, ``dead_letters``, ``audit``, ``monitor``, ``stream``,
``retention``, ``ticks``, ``graph``, ``appliances``, ``schedules``, ``alerting``,
``dependencies`` and ``experiments``. Their methods have names,
typed parameters and typed results; the SQL text lives in ``sql/queries/*.sql`` (named blocks)
and ``sql/migrations``.
Several writes that must land together run in :meth:`Store.transaction`, which offers the same
typed stores on one connection::

    async with store.transaction() as tx:
        job_id = await tx.dead_letters.requeue(dead_id, now)
        await tx.audit.write(actor, "dead.retry", f"dead:{dead_id}", {"job_id": job_id})

Driver errors are translated into :mod:`fleetbox.errors` here (``store.pool``) and nowhere else.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from functools import cached_property

import asyncpg

from fleetbox.store.alerting import AlertOutboxStore
from fleetbox.store.appliances import ApplianceStore
from fleetbox.store.audit import AuditStore
from fleetbox.store.dead_letters import DeadLetterStore
from fleetbox.store.dependencies import DependencyStore
from fleetbox.store.experiments import ExperimentStore
from fleetbox.store.graph import GraphStore
from fleetbox.store.jobs import JobStore
from fleetbox.store.monitor import MonitorStore
from fleetbox.store.pool import Conn, Listener, Pool, Row, Runner
from fleetbox.store.queues import QueueStore
from fleetbox.store.retention import RetentionStore
from fleetbox.store.schedules import ScheduleStore
from fleetbox.store.stream import StreamStore
from fleetbox.store.ticks import TickStore

__all__ = ["Listener", "Store", "Stores", "Tx"]


class Stores:
    """The typed stores over one runner (the pool, or one connection in a transaction)."""

    _runner: Runner
    schema: str

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self._runner, self.schema)

    @cached_property
    def queues(self) -> QueueStore:
        return QueueStore(self._runner)

    @cached_property
    def dead_letters(self) -> DeadLetterStore:
        return DeadLetterStore(self._runner)

    @cached_property
    def audit(self) -> AuditStore:
        return AuditStore(self._runner)

    @cached_property
    def monitor(self) -> MonitorStore:
        return MonitorStore(self._runner)

    @cached_property
    def stream(self) -> StreamStore:
        return StreamStore(self._runner)

    @cached_property
    def retention(self) -> RetentionStore:
        return RetentionStore(self._runner)

    @cached_property
    def ticks(self) -> TickStore:
        return TickStore(self._runner)

    @cached_property
    def graph(self) -> GraphStore:
        return GraphStore(self._runner)

    @cached_property
    def appliances(self) -> ApplianceStore:
        return ApplianceStore(self._runner)

    @cached_property
    def schedules(self) -> ScheduleStore:
        return ScheduleStore(self._runner)

    @cached_property
    def alerting(self) -> AlertOutboxStore:
        return AlertOutboxStore(self._runner)

    @cached_property
    def dependencies(self) -> DependencyStore:
        return DependencyStore(self._runner)

    @cached_property
    def experiments(self) -> ExperimentStore:
        return ExperimentStore(self._runner)


class Tx(Stores):
    """The typed stores on one connection, inside a transaction."""

    def __init__(self, conn: Conn, schema: str) -> None:
        self._runner = conn
        self._conn = conn
        self.schema = schema

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the transaction has committed (never if it rolls back)."""
        self._conn.on_commit(callback)


class Store(Stores):
    """The fleetbox database: a pool of connections and the typed stores.

    Args:
        dsn: the PostgreSQL DSN (holds the password: never logged).
        schema: the schema of fleetbox's tables (a plain lowercase identifier).
        min_size, max_size: pool bounds.
        acquire_timeout: the longest wait for a free connection before a call fails with a
            retryable DatabaseError.
        statement_timeout: the longest a statement may run, in seconds (None: the server's).
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str,
        min_size: int = 1,
        max_size: int = 10,
        acquire_timeout: float | None = 10.0,
        statement_timeout: float | None = None,
    ) -> None:
        self.runner = Pool(
            dsn,
            schema=schema,
            min_size=min_size,
            max_size=max_size,
            acquire_timeout=acquire_timeout,
            statement_timeout=statement_timeout,
        )
        self._runner = self.runner
        self.schema = schema
        self.dsn = dsn

    async def open(self) -> Store:
        await self.runner.open()
        return self

    async def close(self) -> None:
        await self.runner.close()

    async def __aenter__(self) -> Store:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def is_open(self) -> bool:
        return self.runner.is_open

    @property
    def pool(self) -> asyncpg.Pool[Row]:
        """The asyncpg pool itself (tests read the database through it; fleetbox never does)."""
        return self.runner.raw

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """The typed stores on one connection, in a transaction that commits when the block ends."""
        async with self.runner.acquire() as conn, conn.transaction():
            yield Tx(conn, self.schema)

    def listener(self, channel: str, on_notify: Callable[[str], None], on_reconnect: Callable[[], None]) -> Listener:
        """A connection of its own that LISTENs on ``<schema>_<channel>`` and reconnects by itself."""
        return Listener(self.dsn, f"{self.schema}_{channel}", on_notify, on_reconnect)
