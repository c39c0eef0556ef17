"""One exception hierarchy, mapped to Device Management's error model.

An error response is ``{"object": "error", "code", "type", "message", "fields", "request_id"}``.
"""

from __future__ import annotations

import json
from typing import Any


class DevicehooksError(Exception):
    """Base of every error that becomes an error-model response."""

    code = 500
    type = "internal_server_error"
    retry_after: int | None = None

    def __init__(self, message: str, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or []


class BadRequest(DevicehooksError):
    """The request body or parameters are invalid."""

    code = 400
    type = "validation_error"


class Unauthorized(DevicehooksError):
    """The request did not carry valid credentials."""

    code = 401
    type = "invalid_auth"


class NotFound(DevicehooksError):
    """The resource does not exist."""

    code = 404
    type = "not_found"


class MethodNotAllowed(DevicehooksError):
    """The method is not supported on this route."""

    code = 405
    type = "method_not_allowed"


class PayloadTooLarge(DevicehooksError):
    """The request body exceeds the configured limit."""

    code = 413
    type = "payload_too_large"


class ServiceUnavailable(DevicehooksError):
    """A dependency (Redis) is unavailable; the sender should retry."""

    code = 503
    type = "service_unavailable"
    retry_after = 1


def error_body(
    code: int, type_: str, message: str, request_id: str, fields: list[Any] | None = None
) -> bytes:
    """Serialise one error in the Device Management error model."""
    return json.dumps(
        {
            "object": "error",
            "code": code,
            "type": type_,
            "message": message,
            "fields": fields or [],
            "request_id": request_id,
        }
    ).encode()
