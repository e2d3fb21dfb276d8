"""The built wheel (what ``pip install .`` and the container image install) carries its SQL."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import asyncpg

from fleetbox.store.sql import migrations, queries, sql_dir
from fleetbox.worker.registry import BUILTIN_QUEUES
from tests.e2e.conftest import REPO, child_env

PROBE = """
import json, fleetbox
from fleetbox.store.sql import migrations, queries, sql_dir
print(json.dumps({"package": fleetbox.__file__, "sql_dir": str(sql_dir()),
                  "queries": sorted(queries()), "migrations": [v for v, _, _ in migrations()]}))
"""


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"{argv} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


async def test_the_wheel_carries_the_sql_and_finds_it_when_installed(tmp_path: Path, dsn: str) -> None:
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dist), str(REPO)], tmp_path)
    [wheel] = dist.glob("fleetbox-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    repo_sql = sorted(p.relative_to(REPO / "sql").as_posix() for p in (REPO / "sql").rglob("*.sql"))
    assert "fleetbox/sql/migrations/0001_core.sql" in names
    assert {f"fleetbox/sql/{p}" for p in repo_sql} <= names
    assert any(n.startswith("fleetbox/sql/queries/") and n.endswith(".sql") for n in names)
    assert "fleetbox/cli.py" in names and "fleetbox/__main__.py" in names
    # the web dashboard's static files (served from the package with importlib.resources)
    repo_ui = sorted(p.name for p in (REPO / "fleetbox" / "admin" / "ui").iterdir())
    assert {"index.html", "app.js", "style.css"} <= set(repo_ui)
    assert {f"fleetbox/admin/ui/{n}" for n in repo_ui} <= names
    assert not any(n.startswith(("tests/", "sql/")) or "__pycache__" in n for n in names), sorted(names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as zf:
        assert "fleetbox = fleetbox.cli:main" in zf.read(entry_points).decode()

    # Install it (not editable) and import it from outside the repository.
    site = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site), str(wheel)], tmp_path)
    env = {k: v for k, v in child_env().items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)  # ahead of the test venv's editable install of the repository
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = json.loads(_run([sys.executable, "-c", PROBE], elsewhere, env))
    package_dir = site / "fleetbox"
    assert Path(probe["package"]) == package_dir / "__init__.py"
    assert Path(probe["sql_dir"]) == package_dir / "sql"
    assert probe["queries"] == sorted(queries())
    assert probe["migrations"] == [v for v, _, _ in migrations()]
    assert sql_dir() != package_dir / "sql"  # the tests themselves use the repository's files

    # The installed package finds its migrations and applies them to a real database.
    migrate = [sys.executable, "-m", "fleetbox", "migrate", "--dsn", dsn, "--schema", "from_wheel"]
    migrated = _run(migrate, elsewhere, env)
    assert f"applied migrations {[v for v, _, _ in migrations()]}" in migrated
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM from_wheel.queues") == len(BUILTIN_QUEUES)
    finally:
        await conn.close()
