"""The answers are pydantic models: the document's schemas come from them, and what they send."""

from __future__ import annotations

from typing import Any

import pytest

from fleetbox.admin import answers
from fleetbox.admin.openapi import build_openapi
from fleetbox.admin.server import api_routes
from fleetbox.config import AdminSettings
from fleetbox.store import Store
from tests.admin.conftest import READ, Api


def _objects(schema: Any) -> list[dict[str, Any]]:
    """Every object schema with named properties inside ``schema``."""
    found: list[dict[str, Any]] = []
    if isinstance(schema, dict):
        if "properties" in schema:
            found.append(schema)
        for value in schema.values():
            found += _objects(value)
    elif isinstance(schema, list):
        for value in schema:
            found += _objects(value)
    return found


def test_the_document_describes_every_answer_by_its_model_and_each_is_closed() -> None:
    document = build_openapi(api_routes(AdminSettings()), version="test", max_body=1024)
    components = document["components"]["schemas"]
    for model in answers.ANSWERS:
        assert components[model.__name__] == answers.schemas()[model.__name__]
        closed = [s.get("additionalProperties") for s in _objects(components[model.__name__])]
        assert closed and all(c is False for c in closed), model.__name__
    # every answer's camelCase names, as the handlers send them
    job = components["Job"]["properties"]
    assert {"dataPreview", "dataSize", "singletonKey", "retryOfDeadLetterId", "runAt"} <= set(job)
    assert set(components["Stats"]["properties"]["queues"]["additionalProperties"].values()) == {
        "#/components/schemas/QueueStats"
    }


def test_an_answer_built_without_a_field_or_with_an_unknown_one_is_refused_by_name() -> None:
    values = {"error_class": "Timeout", "count": 2, "last_at": "2026-01-01T00:00:00.000Z", "last_message": None}
    built = answers.build(answers.ErrorGroup, values)
    sent = b'{"errorClass":"Timeout","count":2,"lastAt":"2026-01-01T00:00:00.000Z","lastMessage":null}'
    assert built.to_json() == sent
    with pytest.raises(TypeError, match="last_message"):
        answers.build(answers.ErrorGroup, {k: v for k, v in values.items() if k != "last_message"})
    with pytest.raises(TypeError, match="lastAt"):
        answers.build(answers.ErrorGroup, {**values, "lastAt": "2026-01-01T00:00:00.000Z"})


def test_an_error_names_its_field_only_when_it_has_one() -> None:
    plain = answers.Error(error=answers.ErrorDetail(code="conflict", message="no"))
    named = answers.Error(error=answers.ErrorDetail(code="invalid_input", message="bad", field="limit"))
    assert plain.to_json() == b'{"error":{"code":"conflict","message":"no"}}'
    assert named.to_json() == b'{"error":{"code":"invalid_input","message":"bad","field":"limit"}}'


async def test_a_payload_nested_deeper_than_pydantic_serialises_is_still_sent_in_full(api: Api, db: Store) -> None:
    # 300 levels: past pydantic-core's serialisation depth, within what an answer carries (512).
    text = '{"a":' * 300 + "1" + "}" * 300
    job_id = await db.pool.fetchval(
        "INSERT INTO fleetbox.jobs (queue, tier, data) VALUES ('sync', 3, $1::text::jsonb) RETURNING id", text
    )
    detail = await api.get(f"/api/queue/jobs/{job_id}", headers=READ)
    assert detail.status == 200
    data = (await detail.json())["data"]
    depth = 0
    while isinstance(data, dict):
        data, depth = data["a"], depth + 1
    assert (depth, data) == (300, 1)
    listed = await api.get("/api/queue/sync/jobs?include=payload", headers=READ)
    assert listed.status == 200
    assert [row["id"] for row in (await listed.json())["jobs"]] == [job_id]
