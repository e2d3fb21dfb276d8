"""The admin HTTP API of the appliance (aiohttp): the spec's /api/queue endpoints.

``build_app`` makes the aiohttp application, ``AdminServer`` serves it. The appliance starts it
after the dispatcher when ``admin.enabled`` is true. Layout: ``routes`` (handlers and the route
table), ``auth`` (the x-admin-key check), ``errors`` (the one place an error becomes a status),
``models`` (what each operation reads, for validation and the document), ``inputs`` (the
JSON body and the acting operator), ``operations`` (what the API does in the database),
``answers`` (what each operation answers, as pydantic models), ``views`` (the domain values as
answers), ``openapi`` (the document at /api/queue/openapi.json, its schemas from ``models`` and
``answers``).
"""

from __future__ import annotations

from fleetbox.admin.routes import ApplianceInfo
from fleetbox.admin.server import AdminServer, build_app

__all__ = ["AdminServer", "ApplianceInfo", "build_app"]
