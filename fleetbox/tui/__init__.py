"""``fleetbox tui``: a terminal UI that attaches to a running appliance over its control socket.

A client of the socket only: it imports textual, aiohttp, :mod:`fleetbox.protocol` and the standard
library, never the core (import-linter checks it), so it starts without asyncpg or the database.
"""
