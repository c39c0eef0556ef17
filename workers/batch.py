"""A batch body -> Events and rejections. Pure: no Redis, no handlers.

Isolation inside a batch: an item that fails validation becomes a :class:`Rejection` with its
reason and every other item goes on; so does an item whose conversion raises anything at all (the
reason names the exception and where it was raised), so no value can fail a batch. A payload that
fails to decode still becomes an Event, with ``decode_error`` set and ``value`` None.

A key that is not one of the six kinds (Device Management's API conventions say to expect new ones)
becomes Events of that kind, one per element when it holds a list: the raw element in
``extra["item"]``, ``ep``/``path`` taken from it when it has them, delivered to handlers registered
for all kinds; it is logged once per kind per process. Events keep batch order: kinds in the order
the body lists them, items in order.

JSON-safe by construction, so every Event survives ``to_dict`` -> ``json.dumps`` -> ``json.loads`` ->
``from_dict`` (dead letters, retries and RQ's JSON serializer): the body's lone surrogates
(``"\\ud800"`` is valid JSON but not Unicode) are repaired to U+FFFD, and so are its bytes that are not
UTF-8 (a raw surrogate ``\\xed\\xa0\\x80`` too: websocket and pull bodies skip the web's UTF-8 check),
its NaN / Infinity literals and out-of-range numbers (1e999) become the strings 'NaN' / 'Infinity' /
'-Infinity', integers beyond Python's 4300-digit limit stay their text, and an item nested deeper than
``workers.decoding.limits.MAX_DEPTH`` in its unknown fields is rejected.
"""

from __future__ import annotations

import json
import logging
import traceback
from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError

from app import strictjson
from app.paths import normalize_path
from workers.decoding import DecodeError, ObjectModel, decode_value, shape_values
from workers.decoding.limits import check_tree
from workers.decoding.values import constant_text, finite_or_text, may_hold_surrogates, repair_surrogates
from workers.events import KINDS, Event
from workers.fastpath import fast_notification
from workers.schemas import load_item

log = logging.getLogger(__name__)
_KNOWN = frozenset(KINDS)
_LOGGED_KINDS: set[str] = set()
_LOGGED_KINDS_MAX = 256  # a hostile sender inventing keys cannot grow this set without bound


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


def _int_or_text(text: str) -> int | str:
    """An integer literal, or its text when Python refuses to convert it (more than 4300 digits)."""
    try:
        return int(text)
    except ValueError:
        return text


def _loads(body: bytes | str) -> Any:
    """json.loads with the JSON-safety rules of the module doc (the int hook only when needed: it is slow)."""
    try:
        return json.loads(body, parse_constant=constant_text, parse_float=finite_or_text)
    except json.JSONDecodeError:
        raise
    except ValueError:  # an integer literal beyond Python's digit limit
        return json.loads(
            body, parse_constant=constant_text, parse_float=finite_or_text, parse_int=_int_or_text
        )


def parse_body(body: bytes | str) -> dict[str, Any]:
    """Parse a body into the NotificationMessage object (JSON-safe, see module doc) or raise BatchError.

    The request path's strict parser first (orjson, ~3x json here); a body it refuses (only bodies the
    web checked structurally get here) is read by the tolerant rules above, so one NaN or lone surrogate
    costs its value's fidelity, not the batch's good items; what neither can read is quarantined.
    """
    try:
        message = strictjson.loads(body)
    except ValueError as strict_error:
        message = _tolerant_loads(body, strict_error)
    if not isinstance(message, dict):
        raise BatchError(f"the body is a JSON {type(message).__name__}, not an object")
    return message


def _text(body: bytes | str) -> str:
    """The body as text with U+FFFD for what is not Unicode: bytes that are not UTF-8 (a raw surrogate
    such as ``\\xed\\xa0\\x80`` included, which json's own decoding would let through) and a str's lone
    surrogates. The encoding is detected as json.loads does (a UTF-8 BOM, UTF-16, UTF-32)."""
    if isinstance(body, str):
        return str(repair_surrogates(body))
    return body.decode(json.detect_encoding(body), "replace")


def _tolerant_loads(body: bytes | str, strict_error: ValueError) -> Any:
    """The body by the module doc's JSON-safety rules, or BatchError naming the strict parser's reason."""
    try:
        message = _loads(_text(body))
    except (ValueError, UnicodeDecodeError):
        raise BatchError(f"the body is not valid JSON: {strict_error}") from None
    except RecursionError:
        raise BatchError(f"the body is nested too deeply to parse: {strict_error}") from None
    if may_hold_surrogates(body):
        try:
            message = repair_surrogates(message)
        except RecursionError:
            raise BatchError("the body is nested too deeply to parse") from None
    return message


def _reason(exc: ValidationError) -> str:
    """A one-line reason from a marshmallow error."""
    messages = exc.messages
    if isinstance(messages, dict):
        return "; ".join(f"{key}: {' '.join(map(str, value))}" for key, value in messages.items())
    return " ".join(map(str, messages))


def _crash_reason(exc: Exception) -> str:
    """A one-line reason for an unexpected exception: its type, message and where it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 2)[-1]}:{frames[-1].lineno}" if frames else ""
    return f"could not turn the item into an Event: {type(exc).__name__}: {str(exc)[:500]}{where}"


def _event(kind: str, item: Any, model: ObjectModel) -> Event:
    """Validate and decode one item; raises ValidationError (or DecodeError for a too-deep item)."""
    loaded = fast_notification(item) if kind == "notifications" else None
    if loaded is None:
        loaded = load_item(kind, item)
    if loaded["extra"]:
        check_tree(loaded["extra"], "item")
    if loaded.get("resources"):
        check_tree(loaded["resources"], "item")
    event = Event(kind=kind, **loaded)
    if event.payload_b64:
        path = event.path or ""
        decoded, event.decode_error = decode_value(event.payload_b64, event.ct, path, model)
        event.value, event.values = shape_values(decoded, event.ct, path)
    return event


def _unknown_kind_event(kind: str, item: Any) -> Event:
    """An Event of a kind devicehooks does not know: the raw item in extra, ep/path when it has them."""
    check_tree(item, "item")
    event = Event(kind=kind, extra={"item": item})
    if isinstance(item, dict):
        ep, path = item.get("ep"), item.get("path")
        event.ep = ep if isinstance(ep, str) else None
        event.path = normalize_path(path) if isinstance(path, str) and path else None
    return event


def _log_unknown_kind(kind: str) -> None:
    """Say once per kind (per process) that a new kind arrived and where it goes."""
    if kind in _LOGGED_KINDS or len(_LOGGED_KINDS) >= _LOGGED_KINDS_MAX:
        return
    _LOGGED_KINDS.add(kind)
    log.warning(
        "batch key %r is not a kind devicehooks knows: its items become Events of kind %r for handlers "
        "registered for all kinds (logged once per kind)",
        kind,
        kind,
    )


def events_from_message(message: dict[str, Any], model: ObjectModel) -> ParsedBatch:
    """Turn a NotificationMessage into Events, recording each rejected item with its reason."""
    parsed = ParsedBatch()
    for kind, items in message.items():
        known = kind in _KNOWN
        if not known:
            _log_unknown_kind(kind)
            items = items if isinstance(items, list) else [items]
        elif not isinstance(items, list):
            parsed.rejections.append(Rejection(kind, None, f"{kind} must be a list", items))
            continue
        append = parsed.events.append
        for index, item in enumerate(items):
            try:
                append(_event(kind, item, model) if known else _unknown_kind_event(kind, item))
            except ValidationError as exc:
                parsed.rejections.append(Rejection(kind, index, _reason(exc), item))
            except DecodeError as exc:
                parsed.rejections.append(Rejection(kind, index, str(exc), _shallow(item)))
            except Exception as exc:
                parsed.rejections.append(Rejection(kind, index, _crash_reason(exc), _shallow(item)))
    return parsed


def _shallow(item: Any) -> Any:
    """The item for a rejection, or a note of its type when it is a container too deep to store as JSON."""
    try:
        check_tree(item, "item")
    except DecodeError as exc:
        return f"<{type(item).__name__} not kept: {exc}>"
    return item


def parse_batch(body: bytes | str, model: ObjectModel) -> ParsedBatch:
    """Body -> Events and rejections; raises BatchError when the body itself is unusable."""
    return events_from_message(parse_body(body), model)
