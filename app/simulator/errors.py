"""The simulator's HTTP errors, in Device Management's error model (app.errors)."""

from __future__ import annotations

from app.errors import BadRequest, DevicehooksError, NotFound, Unauthorized

__all__ = [
    "BadRequest",
    "Conflict",
    "DevicehooksError",
    "Gone",
    "NotFound",
    "PreconditionFailed",
    "Unauthorized",
    "UnsupportedMediaType",
    "UpgradeRequired",
]


class Conflict(DevicehooksError):
    """The request conflicts with the current state (a long poll is already open, noResp on queue mode)."""

    code = 409
    type = "conflict"


class Gone(DevicehooksError):
    """The endpoint is not known (legacy /v2/endpoints API)."""

    code = 410
    type = "gone"


class PreconditionFailed(DevicehooksError):
    """An asynchronous request needs a notification channel."""

    code = 412
    type = "precondition_failed"


class UnsupportedMediaType(DevicehooksError):
    """The body is not JSON where JSON is required."""

    code = 415
    type = "unsupported_media_type"


class UpgradeRequired(DevicehooksError):
    """websocket-connect without the upgrade headers."""

    code = 426
    type = "upgrade_required"
