"""The database seam: the asyncpg pool, one connection's named queries, codecs, error translation.

This package is the only importer of asyncpg, and this module the only place that catches its
errors: each one is translated into :mod:`fleetbox.errors` here. A connection whose protocol state
is broken (asyncpg's ``InternalClientError``, a dropped socket) is terminated before it goes back
to the pool, so the next caller gets a fresh one instead of the same fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol

import asyncpg

from fleetbox.errors import DatabaseError, InvalidInput, SchemaNotReady
from fleetbox.models import JsonText, UndecodablePayload
from fleetbox.store.sql import queries

Row = asyncpg.Record

#: Errors after which the connection cannot be trusted: terminate it rather than reuse it.
_BROKEN = (asyncpg.InternalClientError, asyncpg.InterfaceError, ConnectionError)
#: Everything the driver (or the socket under it) raises for a failed statement.
DRIVER_ERRORS = (
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)


def translate(exc: BaseException) -> Exception:
    """The fleetbox error for a driver error (the driver's message stays in ``__cause__``)."""
    if isinstance(exc, asyncpg.InvalidParameterValueError):
        # Raised by our own SQL functions, with "field: reason" as the message.
        field, sep, reason = str(exc).partition(": ")
        return InvalidInput(reason, field=field) if sep else InvalidInput(str(exc))
    if isinstance(exc, asyncpg.DataError):
        # A value asyncpg could not encode for PostgreSQL (a bigint overflow, a wrong type).
        return InvalidInput(f"a value cannot be stored: {exc}")
    if isinstance(exc, asyncpg.CharacterNotInRepertoireError | asyncpg.UntranslatableCharacterError):
        return InvalidInput("text holds a character PostgreSQL cannot store (NUL or invalid Unicode)")
    if isinstance(exc, asyncpg.UndefinedTableError | asyncpg.UndefinedFunctionError):
        return SchemaNotReady(f"the fleetbox schema is not ready ({exc}); run `fleetbox migrate`")
    if isinstance(exc, asyncpg.InvalidSchemaNameError):
        return SchemaNotReady(f"the fleetbox schema is missing ({exc}); run `fleetbox migrate`")
    if isinstance(exc, asyncpg.TooManyConnectionsError):
        return DatabaseError(f"database busy: the server refuses new connections ({exc}); try again")
    if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.CannotConnectNowError):
        return DatabaseError(f"database unreachable: {type(exc).__name__}: {exc}")
    if isinstance(exc, asyncpg.PostgresError):
        return DatabaseError(f"database error: {type(exc).__name__}: {exc}")
    if isinstance(exc, OSError | asyncpg.InterfaceError | asyncpg.InternalClientError | TimeoutError):
        return DatabaseError(f"database unreachable: {type(exc).__name__}: {exc}")
    return DatabaseError(f"database error: {type(exc).__name__}")


@contextlib.contextmanager
def translated(conn: asyncpg.Connection[Row] | asyncpg.pool.PoolConnectionProxy[Row] | None = None) -> Iterator[None]:
    """Translate driver errors; terminate ``conn`` when its state can no longer be trusted."""
    try:
        yield
    except DRIVER_ERRORS as exc:
        if conn is not None and isinstance(exc, _BROKEN) and not isinstance(exc, asyncpg.ClientConfigurationError):
            with contextlib.suppress(Exception):
                conn.terminate()
        raise translate(exc) from exc


# -- JSON codecs ----------------------------------------------------------------------------------


def _encode_json(value: Any) -> str:
    if type(value) is JsonText:
        return value
    return json.dumps(value, separators=(",", ":"))


def _encode_jsonb(value: Any) -> bytes:
    # jsonb's binary format is a version byte (1) and the JSON text; binary is what COPY needs.
    return b"\x01" + _encode_json(value).encode()


#: The C scanner behind json.loads, without its per-call checks: jsonb output is always one valid
#: JSON value with no surrounding whitespace, so those checks are not needed here. Hot path: every
#: claimed job carries two jsonb values (its payload and its retries, nearly always "{}"). Measured
#: 2026-12-06 (docs/performance.md, "What the hot-path tricks buy"): "{}" 0.06 µs against 1.0 µs
#: with json.loads, a small payload 0.53 µs against 2.15 µs; about 2 µs a claimed job, some 2 % of
#: ``fleetbox bench``'s drain time per job (~110 µs at 9k jobs/s on the shared machine).
_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_EMPTY_OBJECT = b"\x01{}"


def _decode_jsonb(data: bytes) -> Any:
    if data == _EMPTY_OBJECT:
        return {}
    try:
        return _scan_json(data[1:].decode(), 0)[0]
    except RecursionError:
        # Stored before fleetbox limited nesting (or by hand): never let one row break a claim,
        # a page or a stream tick. The job that carries it is dead-lettered as poison.
        return UndecodablePayload(size=len(data) - 1, reason="nested too deeply to decode")
    except (ValueError, StopIteration) as exc:
        return UndecodablePayload(size=len(data) - 1, reason=f"not decodable: {exc}")


def _decode_json(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        return UndecodablePayload(size=len(text), reason="nested too deeply to decode")


async def _init_connection(conn: asyncpg.Connection[Row]) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec("json", encoder=_encode_json, decoder=_decode_json, schema="pg_catalog")


async def _keep_session(_conn: asyncpg.Connection[Row]) -> None:
    """The pool's reset on release: nothing beyond the rollback asyncpg always does."""


# -- running named queries ------------------------------------------------------------------------


class Runner(Protocol):
    """Runs named queries (``sql/queries``): on the pool (a connection per call) or on one connection."""

    async def fetch(self, query: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, query: str, *args: Any) -> Row | None: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...

    async def execute(self, query: str, *args: Any) -> str: ...

    async def copy_records(
        self, table: str, schema: str, columns: Sequence[str], records: Sequence[tuple[Any, ...]]
    ) -> None: ...


class Conn:
    """One connection: runs named queries on it."""

    def __init__(self, conn: asyncpg.Connection[Row] | asyncpg.pool.PoolConnectionProxy[Row]) -> None:
        self._conn = conn
        self._on_commit: list[Callable[[], None]] = []

    async def fetch(self, query: str, *args: Any) -> list[Row]:
        with translated(self._conn):
            return await self._conn.fetch(queries()[query], *args)

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        with translated(self._conn):
            return await self._conn.fetchrow(queries()[query], *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        with translated(self._conn):
            return await self._conn.fetchval(queries()[query], *args)

    async def execute(self, query: str, *args: Any) -> str:
        with translated(self._conn):
            return await self._conn.execute(queries()[query], *args)

    async def run_script(self, sql: str) -> None:
        """Run a whole SQL file (migrations only)."""
        with translated(self._conn):
            await self._conn.execute(sql)

    async def copy_records(
        self, table: str, schema: str, columns: Sequence[str], records: Sequence[tuple[Any, ...]]
    ) -> None:
        """Bulk-load rows with COPY (the fastest way in)."""
        with translated(self._conn):
            await self._conn.copy_records_to_table(table, records=records, columns=list(columns), schema_name=schema)

    async def prepare(self, query: str) -> None:
        """Parse and plan a named query against the schema (a test checks every query)."""
        with translated(self._conn):
            await self._conn.prepare(queries()[query])

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the transaction in progress has committed (never if it rolls back)."""
        self._on_commit.append(callback)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        with translated(self._conn):
            async with self._conn.transaction():
                yield self
        callbacks, self._on_commit = self._on_commit, []
        for callback in callbacks:
            callback()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._conn.close(), timeout=5)


class Pool:
    """A pool of connections to the fleetbox schema; also a :class:`Runner` (a connection per call).

    Args:
        dsn: the PostgreSQL DSN (holds the password: never logged).
        schema: the schema of fleetbox's tables (a plain identifier; checked here too).
        min_size, max_size: pool bounds.
        acquire_timeout: the longest wait for a free connection before a call fails with a
            retryable :class:`DatabaseError` (a database at its connection limit must not hang
            an enqueue for ever).
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
        check_schema_name(schema)
        self.dsn = dsn
        self.schema = schema
        self._min = min_size
        self._max = max_size
        self._acquire_timeout = acquire_timeout
        self._statement_timeout = statement_timeout
        self._pool: asyncpg.Pool[Row] | None = None

    def server_settings(self) -> dict[str, str]:
        settings = {"search_path": self.schema, "application_name": "fleetbox"}
        if self._statement_timeout is not None:
            settings["statement_timeout"] = str(int(self._statement_timeout * 1000))
        return settings

    async def open(self) -> None:
        with translated():
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self._min,
                max_size=self._max,
                server_settings=self.server_settings(),
                init=_init_connection,
                # Named queries are few and reused: let asyncpg keep them prepared.
                statement_cache_size=256,
                # By default every release sends "SELECT pg_advisory_unlock_all(); CLOSE ALL;
                # UNLISTEN *; RESET ALL", a round trip after each claim, completion batch and
                # enqueue. Pooled connections hold none of that state here (migrations and LISTEN
                # use connections of their own), and asyncpg still rolls back an open transaction.
                reset=_keep_session,
            )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except (TimeoutError, *DRIVER_ERRORS):
                pool.terminate()  # a connection still busy after 10 s: cut it

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    @property
    def raw(self) -> asyncpg.Pool[Row]:
        """The asyncpg pool itself (tests read the database through it)."""
        if self._pool is None:
            raise DatabaseError("the database pool is not open")
        return self._pool

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Conn]:
        pool = self.raw
        with translated():
            try:
                # asyncio.timeout, not acquire(timeout=): asyncpg wraps a timed acquire in a task
                # of its own, some 5 µs on every query of the hot path.
                async with asyncio.timeout(self._acquire_timeout):
                    conn = await pool.acquire()
            except TimeoutError:
                raise DatabaseError(
                    f"database busy: no connection free within {self._acquire_timeout:g} s; try again"
                ) from None
        try:
            yield Conn(conn)
        finally:
            with translated():
                await pool.release(conn)

    async def fetch(self, query: str, *args: Any) -> list[Row]:
        async with self.acquire() as conn:
            return await conn.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        async with self.acquire() as conn:
            return await conn.execute(query, *args)

    async def copy_records(
        self, table: str, schema: str, columns: Sequence[str], records: Sequence[tuple[Any, ...]]
    ) -> None:
        async with self.acquire() as conn:
            await conn.copy_records(table, schema, columns, records)

    async def connect_raw(self) -> Conn:
        """A connection outside the pool (migrations take a session-level advisory lock on it)."""
        with translated():
            conn = await asyncpg.connect(self.dsn, server_settings=self.server_settings(), timeout=30)
            await _init_connection(conn)
        return Conn(conn)


def check_schema_name(schema: object) -> str:
    """A schema name is spliced into DDL and channel names: a plain lowercase identifier only."""
    from fleetbox.rules import SCHEMA_NAME

    if not isinstance(schema, str) or not SCHEMA_NAME.fullmatch(schema):
        raise InvalidInput(
            f"must be a lowercase identifier ({SCHEMA_NAME.pattern}), got {schema!r:.80}", field="schema"
        )
    return schema


class Listener:
    """A dedicated connection that LISTENs on a channel and reconnects when it drops.

    ``on_notify`` gets each payload; ``on_reconnect`` runs after every (re)connection, because
    notifications sent while the connection was down are lost and the caller must catch up.
    """

    def __init__(
        self,
        dsn: str,
        channel: str,
        on_notify: Callable[[str], None],
        on_reconnect: Callable[[], None],
        *,
        retry_seconds: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._on_notify = on_notify
        self._on_reconnect = on_reconnect
        self._retry = retry_seconds
        self._lost = asyncio.Event()
        self.connected = False

    def _callback(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self._on_notify(str(payload))

    def _terminated(self, _conn: object) -> None:
        self._lost.set()

    async def run(self, log_error: Callable[[str], Awaitable[None] | None]) -> None:
        """Listen until cancelled."""
        while True:
            conn: asyncpg.Connection[Row] | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=10)
                self._lost.clear()
                conn.add_termination_listener(self._terminated)
                await conn.add_listener(self._channel, self._callback)
                self.connected = True
                self._on_reconnect()
                # A dropped socket is not always reported; look at the connection now and then.
                while not conn.is_closed():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._lost.wait(), timeout=5)
                        break
            except DRIVER_ERRORS as exc:
                result = log_error(str(translate(exc)))
                if result is not None:
                    await result
            finally:
                self.connected = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), timeout=2)
            await asyncio.sleep(self._retry)
