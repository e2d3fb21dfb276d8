"""Building blocks of the OpenAPI document's hand-written response schemas, shared by
:mod:`fleetbox.admin.openapi` and the parts of the API that describe their own answers
(:mod:`fleetbox.admin.schedules`)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Schema], *, required: list[str] | None = None, strict: bool = True) -> Schema:
    """An object with these properties (all required unless said), and no others when ``strict``."""
    schema: Schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }
    if strict:
        schema["additionalProperties"] = False
    return schema


def ok(schema_name: str, description: str) -> Schema:
    """A JSON answer of a component schema."""
    return {"description": description, "content": {"application/json": {"schema": ref(schema_name)}}}
