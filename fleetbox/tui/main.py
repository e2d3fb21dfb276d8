"""``fleetbox tui``: parse the command line and run the app (imports no part of the core)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from fleetbox.tui.client import SOCKET_ENV, FleetboxClient, UnixSocketClient, default_socket_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fleetbox tui``."""
    parser.add_argument(
        "--socket",
        type=Path,
        metavar="PATH",
        help=f"the appliance's control socket (default: ${SOCKET_ENV}, else <appliance.data_dir>/admin.sock)",
    )
    parser.add_argument("--read-only", action="store_true", help="look only: every action is refused")
    parser.add_argument("--demo", action="store_true", help="run against a simulated appliance (no socket)")


def run(args: argparse.Namespace) -> int:
    """Run the TUI until the operator quits."""
    from fleetbox.tui.app import FleetboxTUI

    client: FleetboxClient
    if args.demo:
        from fleetbox.tui.fake import FakeClient

        client = FakeClient.busy(time.time(), demo=True)
    else:
        client = UnixSocketClient(args.socket or default_socket_path())
    FleetboxTUI(client, read_only=args.read_only).run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fleetbox.tui.main``: the same as ``fleetbox tui``."""
    parser = argparse.ArgumentParser(prog="fleetbox tui", description="terminal UI of a running appliance")
    add_arguments(parser)
    return run(parser.parse_args(argv))
