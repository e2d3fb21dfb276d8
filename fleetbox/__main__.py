"""``python -m fleetbox`` is the ``fleetbox`` command."""

from __future__ import annotations

import sys

from fleetbox.cli import main

sys.exit(main())
