"""marshmallow schemas of the NotificationMessage and its six item kinds (Connect API v2).

Tolerant of what real senders send: unknown fields are kept (``extra``); ``original-ep`` (the name
the device registered with, which the Kafka connector's fixtures show on notifications too) is read on
every kind that carries it; ``max-age`` and
``status`` arrive as int or string, paths may lack the leading ``/``, ``uid``/``timestamp``/
``original-ep``/``q`` are optional, de-registrations come as device-id strings (or objects with
``ep``). Each schema loads one item into the keyword arguments of an :class:`~workers.events.Event`.

These schemas are the contract. The hot path (notifications, most of every batch) goes through
``workers.fastpath``, which a property test keeps equal to these schemas on every input it accepts.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, post_load, pre_load

from app.paths import normalize_path

_INT_TEXT = re.compile(r"-?[0-9]+")
_MAX_INT_DIGITS = 4300  # Python's own limit on int(text); longer is no integer a sender means


def int_or_string(value: Any) -> int | None:
    """60 or "60" (surrounding blanks allowed) -> 60; anything else -> None."""
    if type(value) is int:
        return value
    if type(value) is str:
        text = value.strip()
        if len(text) <= _MAX_INT_DIGITS and _INT_TEXT.fullmatch(text):
            return int(text)
    return None


class IntOrString(fields.Field):  # type: ignore[type-arg,unused-ignore]
    """An integer sent as a JSON number or as a decimal string."""

    default_error_messages = {"invalid": "Not an integer or an integer string."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        """Accept 60 and "60"; reject booleans, floats and other text."""
        number = int_or_string(value)
        if number is None:
            raise self.make_error("invalid")
        return number


class IntOrText(fields.Field):  # type: ignore[type-arg,unused-ignore]
    """A timestamp: a JSON number (kept as int) or a string (kept as given)."""

    default_error_messages = {"invalid": "Not an integer or a string."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int | str:
        """Accept ints and strings."""
        if type(value) is not int and type(value) is not str:
            raise self.make_error("invalid")
        return value


class Path(fields.String):
    """A resource path, given its leading '/'."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        """Normalise after the string checks."""
        text = super()._deserialize(value, attr, data, **kwargs)
        if not text:
            raise ValidationError("Empty path.")
        return normalize_path(text)


class ItemSchema(Schema):
    """Base: unknown fields are kept and moved to ``extra``; ``original-ep`` read on every kind."""

    class Meta:
        unknown = INCLUDE

    original_ep = fields.String(data_key="original-ep", allow_none=True)

    @post_load
    def _collect_extra(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Move fields the schema does not declare into ``extra``."""
        declared = {f.attribute or name for name, f in self.fields.items()}
        extra = {k: data.pop(k) for k in list(data) if k not in declared}
        data["extra"] = extra
        return data


class NotificationSchema(ItemSchema):
    """NotificationData: a resource value change."""

    ep = fields.String(required=True)
    path = Path(required=True)
    ct = fields.String(allow_none=True)
    payload = fields.String(allow_none=True, attribute="payload_b64")
    max_age = IntOrString(data_key="max-age", allow_none=True)
    uid = fields.String(allow_none=True)
    timestamp = IntOrText(allow_none=True)


class ResourceSchema(Schema):
    """ResourcesData: one resource of a registration; unknown fields are kept in place."""

    class Meta:
        unknown = INCLUDE

    path = Path(required=True)
    rt = fields.String(allow_none=True)
    ct = fields.String(allow_none=True)
    obs = fields.Boolean(allow_none=True)
    if_ = fields.String(data_key="if", attribute="if", allow_none=True)


class EndpointSchema(ItemSchema):
    """EndpointData: registrations and reg-updates."""

    ep = fields.String(required=True)
    ept = fields.String(allow_none=True)
    q = fields.Boolean(allow_none=True)
    resources = fields.List(fields.Nested(ResourceSchema), allow_none=True)
    uid = fields.String(allow_none=True)
    timestamp = IntOrText(allow_none=True)


class DeviceIdSchema(ItemSchema):
    """de-registrations and registrations-expired: a device-id string (or an object with ``ep``)."""

    ep = fields.String(required=True)
    uid = fields.String(allow_none=True)
    timestamp = IntOrText(allow_none=True)

    @pre_load
    def _from_string(self, data: Any, **kwargs: Any) -> Any:
        """Turn the plain device-id string DM sends into ``{"ep": ...}``."""
        if isinstance(data, str):
            if not data:
                raise ValidationError("Empty device id.")
            return {"ep": data}
        return data


class AsyncResponseSchema(ItemSchema):
    """AsyncIDResponse: the answer to a device request. ``"error": null`` is not an error."""

    id = fields.String(required=True)
    status = IntOrString(allow_none=True)
    ct = fields.String(allow_none=True)
    payload = fields.String(allow_none=True, attribute="payload_b64")
    max_age = IntOrString(data_key="max-age", allow_none=True)
    error = fields.String(allow_none=True)
    ep = fields.String(allow_none=True)
    path = Path(allow_none=True)


SCHEMAS: dict[str, Schema] = {
    "notifications": NotificationSchema(),
    "registrations": EndpointSchema(),
    "reg-updates": EndpointSchema(),
    "de-registrations": DeviceIdSchema(),
    "registrations-expired": DeviceIdSchema(),
    "async-responses": AsyncResponseSchema(),
}


def load_item(kind: str, item: Any) -> dict[str, Any]:
    """Validate one item of ``kind``; return Event keyword arguments or raise ValidationError."""
    schema = SCHEMAS[kind]
    if not isinstance(item, dict | str) or (isinstance(item, str) and kind not in _STRING_KINDS):
        raise ValidationError(f"an item of {kind} must be an object")
    loaded: dict[str, Any] = schema.load(item)  # type: ignore[arg-type]
    return loaded


_STRING_KINDS = frozenset({"de-registrations", "registrations-expired"})
