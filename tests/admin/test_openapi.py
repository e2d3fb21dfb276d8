"""The OpenAPI document describes exactly the routes the server has, with their errors."""

from __future__ import annotations

import re
from typing import Any

import schemathesis

from fleetbox.admin.auth import Access
from fleetbox.admin.errors import ERROR_STATUSES
from fleetbox.admin.server import api_routes
from fleetbox.config import AdminSettings
from tests.admin.conftest import Api

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


async def served(api: Api) -> dict[str, Any]:
    response = await api.get("/api/queue/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    document: dict[str, Any] = await response.json()
    return document


async def test_the_document_lists_exactly_the_routes_of_the_server(api: Api) -> None:
    document = await served(api)
    assert document["openapi"] == "3.1.0"
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops if m in METHODS}
    routes = {(r.method, r.path) for r in api_routes(AdminSettings())}
    assert documented == routes
    registered = {
        (route.method, route.resource.canonical)
        for route in api.app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        # the web dashboard's page, files and sign-in are not part of the API
        and not route.resource.canonical.startswith("/ui")
    }
    assert registered == routes


async def test_every_operation_documents_its_parameters_and_errors(api: Api) -> None:
    document = await served(api)
    access = {r.operation_id: r.access for r in api_routes(AdminSettings())}
    ids = []
    for path, ops in document["paths"].items():
        placeholders = set(re.findall(r"{(\w+)}", path))
        for method, op in ops.items():
            ids.append(op["operationId"])
            params = op.get("parameters", [])
            assert {p["name"] for p in params if p["in"] == "path"} == placeholders, (method, path)
            responses = op["responses"]
            if access[op["operationId"]] is Access.PUBLIC:
                assert op["security"] == [] and "401" not in responses
            else:
                assert op["security"] == [{"adminKey": []}]
                assert {"401", "403"} <= set(responses), (method, path)
            if "requestBody" in op:
                assert {"400", "413", "415"} <= set(responses), (method, path)
            if placeholders:
                assert "404" in responses and "400" in responses, (method, path)
            for status, response in responses.items():
                if int(status) >= 400 and op["operationId"] not in ("getHealth", "getReadyz"):
                    assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
                assert int(status) in {101, 200, 201} | set(ERROR_STATUSES), (method, path, status)
    assert len(ids) == len(set(ids))


async def test_schemathesis_loads_every_operation(api: Api) -> None:
    schema = schemathesis.openapi.from_dict(await served(api))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(api_routes(AdminSettings()))
