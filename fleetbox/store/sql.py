"""Where the SQL lives and how it is read: migrations and named queries from ``sql/``.

Queries are blocks of ``sql/queries/*.sql`` that start with ``-- name: <query_name>``; the typed
stores refer to them by name. A wheel carries ``sql/`` inside the package (``fleetbox/sql``).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from fleetbox.errors import DatabaseError

_NAME = re.compile(r"^-- name: ([a-z0-9_]+)\s*$", re.MULTILINE)


def sql_dir() -> Path:
    """Where the SQL files are: inside the package in a wheel, at the repository top otherwise."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "sql", package.parent / "sql"):
        if (candidate / "migrations").is_dir():
            return candidate
    raise DatabaseError(f"the fleetbox SQL files are missing (looked in {package / 'sql'})")


def parse_queries(text: str) -> dict[str, str]:
    """Split a file of ``-- name: x`` blocks into ``{name: sql}``."""
    parts = _NAME.split(text)
    found: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in found:
            raise DatabaseError(f"query {name!r} is defined twice")
        found[name] = body.strip()
    return found


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
