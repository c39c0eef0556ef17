"""A batch body -> Events and rejections. Pure: no Redis, no handlers.

Isolation inside a batch: an item that fails validation becomes a :class:`Rejection` with its
reason and every other item goes on; a payload that fails to decode still becomes an Event, with
``decode_error`` set and ``value`` None. An unknown top-level key is rejected whole (visible, not
dropped). Events keep batch order: kinds in the order the body lists them, items in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError

from app import strictjson
from workers.decoding import ObjectModel, decode_value, shape_values
from workers.events import KINDS, Event
from workers.fastpath import fast_notification
from workers.schemas import load_item


class BatchError(ValueError):
    """The body as a whole is unusable (not JSON, not an object)."""


@dataclass
class Rejection:
    """One item (or key) of a batch that was not turned into an Event, and why."""

    kind: str
    index: int | None
    reason: str
    item: Any

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"kind": self.kind, "index": self.index, "reason": self.reason, "item": self.item}


@dataclass
class ParsedBatch:
    """The Events of one batch, in batch order, and what was rejected."""

    events: list[Event] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Events per kind."""
        counts: dict[str, int] = {}
        for event in self.events:
            counts[event.kind] = counts.get(event.kind, 0) + 1
        return counts


def parse_body(body: bytes | str) -> dict[str, Any]:
    """Parse a body into the NotificationMessage object or raise BatchError."""
    try:
        message = strictjson.loads(body)  # the request path's parser: no NaN, deep nesting, lone surrogate
    except ValueError as exc:
        raise BatchError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise BatchError(f"the body is a JSON {type(message).__name__}, not an object")
    return message


def _reason(exc: ValidationError) -> str:
    """A one-line reason from a marshmallow error."""
    messages = exc.messages
    if isinstance(messages, dict):
        return "; ".join(f"{key}: {' '.join(map(str, value))}" for key, value in messages.items())
    return " ".join(map(str, messages))


def _event(kind: str, item: Any, model: ObjectModel) -> Event:
    """Validate and decode one item; raises ValidationError."""
    loaded = fast_notification(item) if kind == "notifications" else None
    if loaded is None:
        loaded = load_item(kind, item)
    event = Event(kind=kind, **loaded)
    if event.payload_b64:
        decoded, event.decode_error = decode_value(event.payload_b64, event.ct, event.path or "", model)
        event.value, event.values = shape_values(decoded, event.ct, event.path or "")
    return event


def events_from_message(message: dict[str, Any], model: ObjectModel) -> ParsedBatch:
    """Turn a NotificationMessage into Events, recording each rejected item with its reason."""
    parsed = ParsedBatch()
    for kind, items in message.items():
        if kind not in KINDS:
            parsed.rejections.append(Rejection(kind, None, f"unknown kind {kind!r}", items))
            continue
        if not isinstance(items, list):
            parsed.rejections.append(Rejection(kind, None, f"{kind} must be a list", items))
            continue
        append = parsed.events.append
        for index, item in enumerate(items):
            try:
                append(_event(kind, item, model))
            except ValidationError as exc:
                parsed.rejections.append(Rejection(kind, index, _reason(exc), item))
    return parsed


def parse_batch(body: bytes | str, model: ObjectModel) -> ParsedBatch:
    """Body -> Events and rejections; raises BatchError when the body itself is unusable."""
    return events_from_message(parse_body(body), model)
