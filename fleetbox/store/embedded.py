"""The embedded PostgreSQL used when no database is configured (the ``pgserver`` package).

The server's files live in ``<data_dir>/pgdata``. Several fleetbox processes on the host share one
server; it stops when the last of them exits. A configured database is never replaced by it.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from pathlib import Path
from typing import Any

from fleetbox.config import Settings
from fleetbox.errors import DatabaseError

log = logging.getLogger("fleetbox.embedded")

# Server handles stay referenced for the life of the process: dropping one lets pgserver stop it.
_servers: dict[Path, Any] = {}


def _start(pgdata: Path) -> str:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI) and falls back to /tmp.
        warnings.simplefilter("ignore")
        # Imported here: only the embedded default needs the server binaries.
        from pgserver.postgres_server import get_server

    pgdata.mkdir(parents=True, exist_ok=True)
    if pgdata not in _servers:
        try:
            _servers[pgdata] = get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:
            raise DatabaseError(f"could not start the embedded PostgreSQL in {pgdata}: {exc}") from exc
    return str(_servers[pgdata].get_uri("postgres"))


async def embedded_dsn(data_dir: Path) -> str:
    """Start (or reuse) the private server under ``data_dir`` and return its DSN."""
    pgdata = (data_dir / "pgdata").resolve()
    return await asyncio.to_thread(_start, pgdata)


async def resolve_dsn(settings: Settings, *, announce: bool = True) -> tuple[str, bool]:
    """The DSN to use and whether it is the embedded server."""
    configured = settings.database.resolved_dsn()
    if configured is not None:
        return configured, False
    dsn = await embedded_dsn(settings.appliance.data_dir)
    if announce:
        log.warning(
            "no database configured: using the embedded PostgreSQL",
            extra={"event": "embedded_database", "pgdata": str(settings.appliance.data_dir / "pgdata"), "dsn": dsn},
        )
    return dsn, True
