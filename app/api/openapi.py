"""The OpenAPI 3.1 document of the management API (its schemas are JSON Schema, checked in the suite)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from app.api import query

NULLABLE_STRING = {"type": ["string", "null"]}
DATE = {"type": ["string", "null"], "format": "date-time"}
ANY: dict[str, Any] = {}


def _obj(name: str, properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """An entity schema with ``object`` fixed to ``name`` and ``id`` a string."""
    props = {"object": {"const": name}, "id": {"type": "string"}, **properties}
    return {"type": "object", "properties": props, "required": ["object", "id", *(required or [])]}


def _ref(name: str) -> dict[str, str]:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def _list_of(name: str) -> dict[str, Any]:
    """The list-response schema of an entity."""
    return {
        "type": "object",
        "properties": {
            "object": {"const": "list"},
            "limit": {"type": "integer", "minimum": query.MIN_LIMIT, "maximum": query.MAX_LIMIT},
            "after": NULLABLE_STRING,
            "order": {"enum": ["ASC", "DESC"]},
            "has_more": {"type": "boolean"},
            "total_count": {"type": "integer", "minimum": 0},
            "data": {"type": "array", "items": _ref(name)},
        },
        "required": ["object", "limit", "after", "order", "has_more", "data"],
    }


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {
            "object": {"const": "error"},
            "code": {"type": "integer"},
            "type": {"type": "string"},
            "message": {"type": "string"},
            "fields": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "message": {"type": "string"}},
                    "required": ["name", "message"],
                },
            },
            "request_id": {"type": "string"},
        },
        "required": ["object", "code", "type", "message", "fields", "request_id"],
    },
    "Device": _obj(
        "device",
        {
            "ep": {"type": "string"},
            "ept": NULLABLE_STRING,
            "status": {"enum": ["registered", "deregistered", "expired", None]},
            "first_seen": DATE,
            "last_seen": DATE,
            "original_ep": NULLABLE_STRING,
            "queue_mode": {"type": ["boolean", "null"]},
            "resources": {"type": "array", "items": {"type": "object"}},
        },
        ["ep", "ept", "status", "first_seen", "last_seen"],
    ),
    "ResourceValue": _obj(
        "resource-value",
        {
            "path": {"type": "string", "pattern": "^/"},
            "value": ANY,
            "ct": NULLABLE_STRING,
            "timestamp": DATE,
            "uid": NULLABLE_STRING,
        },
        ["path", "value", "ct", "timestamp"],
    ),
    "DeviceEvent": _obj(
        "device-event",
        {
            "kind": {"type": "string"},
            "path": NULLABLE_STRING,
            "value": ANY,
            "ct": NULLABLE_STRING,
            "uid": NULLABLE_STRING,
            "timestamp": DATE,
            "received_at": DATE,
        },
        ["kind", "timestamp", "received_at"],
    ),
    "AsyncRequest": _obj(
        "async-request",
        {
            "ep": NULLABLE_STRING,
            "method": NULLABLE_STRING,
            "path": NULLABLE_STRING,
            "state": {"enum": ["pending", "resolved", "timeout", "failed"]},
            "status": {"type": ["integer", "null"]},
            "value": ANY,
            "ct": NULLABLE_STRING,
            "payload_b64": NULLABLE_STRING,
            "error": NULLABLE_STRING,
        },
        ["ep", "method", "path", "state", "status", "value", "error"],
    ),
    "DeviceRequest": {
        "type": "object",
        "properties": {
            "method": {"enum": ["GET", "PUT", "POST", "DELETE"]},
            "path": {"type": "string"},
            "value": {"type": ["string", "number", "boolean", "null"]},
        },
        "required": ["method", "path"],
    },
    "DeadLetter": _obj(
        "dead-letter",
        {
            "handler": {"type": "string"},
            "count": {"type": "integer"},
            "error": {"type": "string"},
            "attempts": {"type": "integer"},
            "failed_at": DATE,
            "source": {"type": "string"},
            "events": {"type": "array", "items": {"type": "object"}},
            "traceback": {"type": "string"},
        },
        ["handler", "count", "error", "attempts", "failed_at"],
    ),
    "Replay": _obj("replay", {"job": {"type": "string"}, "state": {"const": "queued"}}, ["job", "state"]),
    "Rejection": _obj(
        "rejection",
        {
            "kind": NULLABLE_STRING,
            "index": {"type": ["integer", "null"]},
            "reason": {"type": "string"},
            "item": ANY,
            "job": NULLABLE_STRING,
            "request_id": NULLABLE_STRING,
            "at": DATE,
        },
        ["kind", "reason", "at"],
    ),
}

ERROR_RESPONSES = {
    code: {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}
    for code, description in (
        ("400", "validation_error: `fields` names the bad parameter"),
        ("401", "invalid_auth: no or a wrong management key"),
        ("404", "not_found"),
    )
}


def _param(name: str, description: str, schema: dict[str, Any], where: str = "query") -> dict[str, Any]:
    """One parameter."""
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }


LIST_PARAMS = [
    _param(
        "limit",
        "results per page",
        {
            "type": "integer",
            "minimum": query.MIN_LIMIT,
            "maximum": query.MAX_LIMIT,
            "default": query.DEFAULT_LIMIT,
        },
    ),
    _param("after", "the entity id after which to start", {"type": "string"}),
    _param("order", "by id", {"enum": ["ASC", "DESC"], "default": "ASC"}),
    _param("include", "comma-separated: total_count", {"type": "string"}),
]


def _filters(fields: dict[str, str]) -> list[dict[str, Any]]:
    """The ``field__op`` parameters of a list."""
    out = []
    for field, kind in fields.items():
        for op in query.OPERATORS:
            schema = {"type": "string"} if kind == query.STRING else {"type": "string", "format": "date-time"}
            many = " (comma-separated)" if op in ("in", "nin") else ""
            out.append(_param(f"{field}__{op}", f"filter on {field}{many}", schema))
    return out


def _ok(schema: dict[str, Any], status: str = "200", description: str = "OK") -> dict[str, Any]:
    """A success response plus the error responses."""
    return {
        status: {"description": description, "content": {"application/json": {"schema": schema}}},
        **ERROR_RESPONSES,
    }


def _list_op(
    summary: str, entity: str, fields: dict[str, str], extra: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A list operation."""
    return {
        "get": {
            "summary": summary,
            "parameters": [*(extra or []), *LIST_PARAMS, *_filters(fields)],
            "responses": _ok(_list_of(entity)),
        }
    }


def _paths() -> dict[str, Any]:
    """Every route."""
    from app import api

    ep = _param("ep", "the endpoint name (Device ID)", {"type": "string"}, "path")
    letter = _param("letter_id", "a dead letter id", {"type": "string"}, "path")
    return {
        "/devices": _list_op("The device directory", "Device", api.DEVICE_FIELDS),
        "/devices/{ep}": {
            "get": {"summary": "One device", "parameters": [ep], "responses": _ok(_ref("Device"))}
        },
        "/devices/{ep}/resources": _list_op("Last-known values", "ResourceValue", api.RESOURCE_FIELDS, [ep]),
        "/devices/{ep}/events": _list_op("Event history", "DeviceEvent", api.EVENT_FIELDS, [ep]),
        "/devices/{ep}/requests": {
            "post": {
                "summary": "Send a device request through the async tracker",
                "parameters": [ep],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("DeviceRequest")}},
                },
                "responses": {
                    **_ok(_ref("AsyncRequest"), "202", "Accepted"),
                    "503": ERROR_RESPONSES["404"] | {"description": "DM_API_KEY not set"},
                },
            }
        },
        "/async-requests": _list_op("Async requests, pending and settled", "AsyncRequest", api.ASYNC_FIELDS),
        "/async-requests/{async_id}": {
            "get": {
                "summary": "One async request",
                "parameters": [_param("async_id", "an async id", {"type": "string"}, "path")],
                "responses": _ok(_ref("AsyncRequest")),
            }
        },
        "/dead-letters": _list_op("Dead letters (without their events)", "DeadLetter", api.DEAD_FIELDS),
        "/dead-letters/{letter_id}": {
            "get": {
                "summary": "One dead letter with its events",
                "parameters": [letter],
                "responses": _ok(_ref("DeadLetter")),
            },
            "delete": {
                "summary": "Delete a dead letter",
                "parameters": [letter],
                "responses": {"204": {"description": "Deleted"}, **ERROR_RESPONSES},
            },
        },
        "/dead-letters/{letter_id}/replay": {
            "post": {
                "summary": "Queue the replay of a dead letter to its handler",
                "parameters": [letter],
                "responses": _ok(_ref("Replay"), "202", "Queued"),
            }
        },
        "/rejections": _list_op("Rejected items and quarantined bodies", "Rejection", api.REJECTION_FIELDS),
        "/openapi.json": {
            "get": {
                "summary": "This document (no key needed)",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The OpenAPI document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "devicehooks management API",
            "version": "1",
            "description": "Device state, async requests, dead letters, rejections.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "a MANAGEMENT_API_KEYS key"}
            },
            "schemas": SCHEMAS,
        },
        "paths": _paths(),
    }
