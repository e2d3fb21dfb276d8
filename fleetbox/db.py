"""The database seam: the asyncpg pool, named queries from ``sql/``, error translation.

This is the only module that imports asyncpg. Queries are referred to by name; their text lives
in ``sql/queries/*.sql`` as blocks that start with ``-- name: <query_name>``. Driver errors are
translated here into :mod:`fleetbox.errors` and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import asyncpg

from fleetbox.errors import DatabaseError, InvalidInput, SchemaNotReady

Row = asyncpg.Record

_NAME = re.compile(r"^-- name: ([a-z0-9_]+)\s*$", re.MULTILINE)


def sql_dir() -> Path:
    """Where the SQL files are: inside the package in a wheel, at the repository top otherwise."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "sql", here.parent / "sql"):
        if (candidate / "migrations").is_dir():
            return candidate
    raise DatabaseError(f"the fleetbox SQL files are missing (looked in {here / 'sql'})")


def parse_queries(text: str) -> dict[str, str]:
    """Split a file of ``-- name: x`` blocks into ``{name: sql}``."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise DatabaseError(f"query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


@cache
def queries() -> dict[str, str]:
    """Every named query in ``sql/queries``."""
    found: dict[str, str] = {}
    for path in sorted((sql_dir() / "queries").glob("*.sql")):
        for name, text in parse_queries(path.read_text(encoding="utf-8")).items():
            if name in found:
                raise DatabaseError(f"query {name!r} is defined twice")
            found[name] = text
    return found


def migrations() -> list[tuple[int, str, str]]:
    """The migration files in order, as ``(version, name, sql)``."""
    found = []
    for path in sorted((sql_dir() / "migrations").glob("*.sql")):
        number, _, name = path.stem.partition("_")
        found.append((int(number), name, path.read_text(encoding="utf-8")))
    return found


def _translate(exc: BaseException) -> Exception:
    if isinstance(exc, asyncpg.InvalidParameterValueError):
        # Raised by our own SQL functions, with "field: reason" as the message.
        field, sep, reason = str(exc).partition(": ")
        return InvalidInput(reason, field=field) if sep else InvalidInput(str(exc))
    if isinstance(exc, asyncpg.UndefinedTableError | asyncpg.UndefinedFunctionError):
        return SchemaNotReady(f"the fleetbox schema is not ready ({exc}); run `fleetbox migrate`")
    if isinstance(exc, asyncpg.InvalidSchemaNameError):
        return SchemaNotReady(f"the fleetbox schema is missing ({exc}); run `fleetbox migrate`")
    if isinstance(exc, asyncpg.PostgresError):
        return DatabaseError(f"database error: {type(exc).__name__}: {exc}")
    if isinstance(exc, OSError | asyncpg.InterfaceError | asyncio.TimeoutError):
        return DatabaseError(f"database unreachable: {type(exc).__name__}: {exc}")
    return DatabaseError(f"database error: {type(exc).__name__}")


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise _translate(exc) from exc


class JsonText(str):
    """JSON already encoded (and validated) by the caller: sent to PostgreSQL as it is."""

    __slots__ = ()


def _encode_json(value: Any) -> str:
    if type(value) is JsonText:
        return value
    return json.dumps(value, separators=(",", ":"))


def _encode_jsonb(value: Any) -> bytes:
    # jsonb's binary format is a version byte (1) and the JSON text; binary is what COPY needs.
    return b"\x01" + _encode_json(value).encode()


#: The C scanner behind json.loads, without its per-call checks: jsonb output is always one valid
#: JSON value with no surrounding whitespace, so those checks are not needed here.
_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_EMPTY_OBJECT = b"\x01{}"


def _decode_jsonb(data: bytes) -> Any:
    # Every claimed job carries two jsonb values (its payload and its retries, nearly always
    # "{}"), so this runs twice per job on the hot path.
    if data == _EMPTY_OBJECT:
        return {}
    return _scan_json(data[1:].decode(), 0)[0]


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec("json", encoder=_encode_json, decoder=json.loads, schema="pg_catalog")


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing beyond the rollback asyncpg always does."""


class Conn:
    """One connection: run named queries on it."""

    def __init__(self, conn: asyncpg.Connection[Row] | asyncpg.pool.PoolConnectionProxy[Row]) -> None:
        self._conn = conn

    async def fetch(self, query: str, *args: Any) -> list[Row]:
        with _translated():
            return await self._conn.fetch(queries()[query], *args)

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        with _translated():
            return await self._conn.fetchrow(queries()[query], *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        with _translated():
            return await self._conn.fetchval(queries()[query], *args)

    async def execute(self, query: str, *args: Any) -> str:
        with _translated():
            return await self._conn.execute(queries()[query], *args)

    async def executemany(self, query: str, args: Sequence[Sequence[Any]]) -> None:
        with _translated():
            await self._conn.executemany(queries()[query], args)

    async def run_script(self, sql: str) -> None:
        """Run a whole SQL file (migrations only)."""
        with _translated():
            await self._conn.execute(sql)

    async def copy_jobs(self, schema: str, columns: Sequence[str], records: Sequence[tuple[Any, ...]]) -> None:
        """Bulk-load job rows with COPY (the fastest way in)."""
        with _translated():
            await self._conn.copy_records_to_table("jobs", records=records, columns=list(columns), schema_name=schema)

    async def prepare(self, query: str) -> None:
        """Parse and plan a named query against the schema (a test checks every query)."""
        with _translated():
            await self._conn.prepare(queries()[query])

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        with _translated():
            async with self._conn.transaction():
                yield self


class Database:
    """A pool of connections to the fleetbox schema."""

    def __init__(self, dsn: str, *, schema: str, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        self.schema = schema
        self._min = min_size
        self._max = max_size
        self._pool: asyncpg.Pool | None = None

    def _server_settings(self) -> dict[str, str]:
        return {"search_path": self.schema, "application_name": "fleetbox"}

    async def open(self) -> Database:
        with _translated():
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self._min,
                max_size=self._max,
                server_settings=self._server_settings(),
                init=_init_connection,
                # Named queries are few and reused: let asyncpg keep them prepared.
                statement_cache_size=256,
                # By default every release sends "SELECT pg_advisory_unlock_all(); CLOSE ALL;
                # UNLISTEN *; RESET ALL", a round trip after each claim, completion batch and
                # enqueue. Pooled connections hold none of that state here (migrations and LISTEN
                # use connections of their own), and asyncpg still rolls back an open transaction.
                reset=_keep_session,
            )
        return self

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), timeout=10)

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise DatabaseError("the database pool is not open")
        return self._pool

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Conn]:
        with _translated():
            async with self.pool.acquire() as conn:
                yield Conn(conn)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self.acquire() as conn, conn.transaction():
            yield conn

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

    async def connect_raw(self) -> Conn:
        """A connection outside the pool (migrations take a session-level advisory lock on it)."""
        with _translated():
            conn = await asyncpg.connect(self.dsn, server_settings=self._server_settings())
            await _init_connection(conn)
        return Conn(conn)

    async def close_raw(self, conn: Conn) -> None:
        with contextlib.suppress(Exception):
            await conn._conn.close()


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
            conn: asyncpg.Connection | None = None
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
            except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                result = log_error(f"{type(exc).__name__}: {exc}")
                if result is not None:
                    await result
            finally:
                self.connected = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), timeout=2)
            await asyncio.sleep(self._retry)
