"""`fleetbox tui` starts without the core: no asyncpg, no config, no database module."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from fleetbox.config import load_settings
from fleetbox.tui.client import DeadFilter, default_socket_path

_PROBE = """
import sys
from fleetbox.cli import main
try:
    main(["tui", "--help"])
except SystemExit:
    pass
import fleetbox.tui.app, fleetbox.tui.main
# the CLI's command modules define arguments only: they import the core inside their commands
allowed = ("fleetbox", "fleetbox.cli", "fleetbox.cli_schedules", "fleetbox.cli_experiments", "fleetbox.protocol")
core = sorted(
    m for m in sys.modules if m.startswith("fleetbox.") and not m.startswith("fleetbox.tui") and m not in allowed
)
print("asyncpg" in sys.modules, "pydantic" in sys.modules, core)
"""


def test_the_tui_entry_loads_no_core_module() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60)
    assert "--read-only" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "False False []"


def test_default_socket_agrees_with_the_appliance(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("FLEETBOX_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no ./fleetbox.toml

    def appliance_socket() -> Path:
        settings = load_settings(None, {}).settings
        return settings.admin.control_socket(settings.appliance.data_dir)

    assert default_socket_path() == appliance_socket()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_socket_path() == appliance_socket()
    monkeypatch.setenv("FLEETBOX_APPLIANCE__DATA_DIR", str(tmp_path / "d"))
    assert default_socket_path() == appliance_socket()
    monkeypatch.setenv("FLEETBOX_ADMIN__SOCKET_PATH", "/tmp/fb.sock")
    assert default_socket_path() == appliance_socket() == Path("/tmp/fb.sock")


def test_filter_text_parses_and_names_a_wrong_qualifier() -> None:
    assert DeadFilter.parse("queue:sync error:NetworkError reviewed:yes timed out") == DeadFilter(
        "sync", "NetworkError", "timed out", True
    )
    assert DeadFilter.parse("", base=DeadFilter(reviewed=None)) == DeadFilter(reviewed=None)
    with pytest.raises(ValueError, match="reviewed: must be yes, no or all"):
        DeadFilter.parse("reviewed:maybe")
    with pytest.raises(ValueError, match="queue: needs a value"):
        DeadFilter.parse("queue:")


def test_the_tui_has_no_import_cycle() -> None:
    """The app imports its screens; screens and the palette reach the app only through
    fleetbox.tui.host (counting imports inside functions and for type checking too)."""
    graph = grimp.build_graph("fleetbox")
    modules = sorted(m for m in graph.modules if m.startswith("fleetbox.tui"))
    both_ways = [
        (a, b)
        for i, a in enumerate(modules)
        for b in modules[i + 1 :]
        if graph.chain_exists(a, b) and graph.chain_exists(b, a)
    ]
    assert both_ways == []
    assert not graph.find_shortest_chains("fleetbox.tui.screens", "fleetbox.tui.app")
