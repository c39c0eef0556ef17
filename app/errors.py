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


class PayloadTooLarge(DevicehooksError):
    """The request body exceeds the configured limit."""

    code = 413
    type = "payload_too_large"


class ServiceUnavailable(DevicehooksError):
    """A dependency (Redis) is unavailable; the sender should retry."""

    code = 503
    type = "service_unavailable"
    retry_after = 1


# Errors that Device Management's API answered (app/dm).


class DMApiError(DevicehooksError):
    """Device Management answered with an error (its status, type, message and request id are kept)."""

    code = 502
    type = "dm_api_error"

    def __init__(
        self,
        status: int | None,
        error_type: str,
        message: str,
        request_id: str | None = None,
        fields: list[Any] | None = None,
    ) -> None:
        super().__init__(message, fields)
        self.status = status
        self.error_type = error_type
        self.request_id = request_id

    def __str__(self) -> str:
        """One line naming the status, type, message and request id."""
        status = self.status if self.status is not None else "-"
        return (
            f"Device Management error {status} {self.error_type}: {self.message} "
            f"(request_id={self.request_id})"
        )


class DMBadRequest(DMApiError):
    """400: the request was refused as invalid (also: a callback URL that failed verification)."""


class DMUnauthorized(DMApiError):
    """401/403: the API key is missing, invalid or not allowed to do this."""


class DMNotFound(DMApiError):
    """404/410: the device, resource, callback or channel does not exist."""


class DMConflict(DMApiError):
    """409: the request conflicts with the current state (e.g. a long poll is already open)."""


class DMPreconditionFailed(DMApiError):
    """412: e.g. no notification channel, or the device answered 4.12."""


class DMRateLimited(DMApiError):
    """429: too many requests, or the device's queue is full; retried with Retry-After."""


class DMUnavailable(DMApiError):
    """5xx or no connection: Device Management (or the device) is unavailable; retried with backoff."""

    code = 503
    type = "service_unavailable"


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
