"""The OpenAPI document against the implementation: same routes, and every documented operation,
parameter and response checked by calling it (responses validated as JSON Schema)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from redis import Redis

from app import create_app, state
from app.config import Settings
from tests.conftest import SAMPLES
from tests.unit.test_api import AUTH, KEY, NOW, FakeDMClient
from workers.batch import Rejection
from workers.deadletters import DeadLetters
from workers.handlers.state import StateWriter
from workers.rejections import Rejections
from workers.testing import events_from_body

SAMPLE_VALUES = {"string": "Sensor", "date-time": "20161130T162512Z"}


@pytest.fixture
def app(settings: Settings, redis: Redis) -> Flask:
    return create_app(
        {
            "SETTINGS": settings.with_overrides(management_api_keys=(KEY,)),
            "REDIS": redis,
            "DM_CLIENT": FakeDMClient(),
        }
    )


@pytest.fixture
def doc(app: Flask) -> dict[str, Any]:
    body: dict[str, Any] = app.test_client().get("/api/v1/openapi.json").get_json()
    return body


def validate(doc: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    """Validate against a schema of the document (its $refs resolve inside the document)."""
    Draft202012Validator({**schema, "components": doc["components"]}).validate(instance)


def routes(app: Flask) -> dict[str, set[str]]:
    """The API's routes in the app, as OpenAPI paths -> methods."""
    found: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api/v1"))
            found.setdefault(path, set()).update(
                m.lower() for m in rule.methods or () if m not in ("HEAD", "OPTIONS")
            )
    return found


def test_the_document_is_openapi_3_1_with_valid_schemas(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_the_document_names_exactly_the_routes_the_app_serves(app: Flask, doc: dict[str, Any]) -> None:
    documented = {path: set(ops) for path, ops in doc["paths"].items()}
    assert documented == routes(app)


def seed(client: FlaskClient, redis: Redis) -> dict[str, str]:
    """State for every route; returns the path parameters to use."""
    StateWriter(redis, state.Bounds()).write(
        events_from_body(SAMPLES / "state" / "device_lifecycle.json"), now=NOW
    )
    letter = DeadLetters(redis).add("h", [{"kind": "notifications", "ep": "sensor-1"}], "E: x", "tb", 1, "j")
    Rejections(redis).record([Rejection("notifications", 0, "ep: missing", {})], "job-1", "rid")
    created = client.post(
        "/api/v1/devices/sensor-1/requests", headers=AUTH, json={"method": "GET", "path": "/3/0/0"}
    )
    return {"ep": "sensor-1", "letter_id": letter, "async_id": created.get_json()["id"]}


def calls(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every documented operation, deletions last."""
    ops = [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()]
    return sorted(ops, key=lambda call: call[1] == "delete")


def test_every_operation_answers_as_documented_with_and_without_a_key(
    app: Flask, doc: dict[str, Any], redis: Redis
) -> None:
    client = app.test_client()
    params = seed(client, redis)
    for path, method, op in calls(doc):
        url = "/api/v1" + path.format(**params)
        body = {"method": "GET", "path": "/3/0/0"} if method == "post" and "requestBody" in op else None
        response = client.open(url, method=method.upper(), headers=AUTH, json=body)
        assert str(response.status_code) in op["responses"], (
            method,
            path,
            response.status_code,
            response.get_json(),
        )
        content = op["responses"][str(response.status_code)].get("content")
        if content:
            validate(doc, content["application/json"]["schema"], response.get_json())
        if op.get("security") == []:
            continue
        refused = client.open(url, method=method.upper(), json=body)
        assert refused.status_code == 401
        validate(doc, op["responses"]["401"]["content"]["application/json"]["schema"], refused.get_json())


def test_every_documented_list_parameter_is_accepted(app: Flask, doc: dict[str, Any], redis: Redis) -> None:
    client = app.test_client()
    params = seed(client, redis)
    for path, method, op in calls(doc):
        if method != "get" or "data" not in op["responses"]["200"]["content"]["application/json"][
            "schema"
        ].get("properties", {}):
            continue
        url = "/api/v1" + path.format(**params)
        schema = op["responses"]["200"]["content"]["application/json"]["schema"]
        for param in op["parameters"]:
            if param["in"] != "query":
                continue
            value = {"limit": "2", "order": "DESC", "include": "total_count", "after": "1-0"}.get(
                param["name"]
            )
            value = value or SAMPLE_VALUES[param["schema"].get("format", "string")]
            response = client.get(url, headers=AUTH, query_string={param["name"]: value})
            assert response.status_code == 200, (path, param["name"], response.get_json())
            validate(doc, schema, response.get_json())


def test_a_validation_error_matches_the_documented_error_model(app: Flask, doc: dict[str, Any]) -> None:
    response = app.test_client().get("/api/v1/devices?limit=0", headers=AUTH)
    op = doc["paths"]["/devices"]["get"]
    assert response.status_code == 400
    validate(doc, op["responses"]["400"]["content"]["application/json"]["schema"], response.get_json())
