"""text/plain (and a missing content type): UTF-8 text, typed by the object model.

The resource at `path` decides the type: integer, unsigned and time -> int; float -> float; boolean
("1", "0", "true", "false", any case) -> bool; every other type, an unknown resource, or a path that is
not a resource -> the text itself. When the text does not parse as the resource's type ("abc" for a
float, "1.5" for an integer, "nan", "1e999", "1_000") the value is the text, unchanged, and there is no
decode_error: the text is exactly what the device sent and `decode_error` is reserved for payloads
that yield no value at all. Bytes that are not UTF-8 raise DecodeError.

This is the hot path (one call per notification of a sensor value): the path is parsed once per
distinct path (LRU cache) and typing is two dict lookups and one conversion.
"""

import math
from collections.abc import Callable
from typing import Any

from workers.decoding.errors import DecodeError
from workers.decoding.model import ObjectModel
from workers.decoding.paths import resource_key

_TRUE = frozenset({"1", "true"})
_FALSE = frozenset({"0", "false"})


def _to_int(text: str) -> int | str:
    """Parse a decimal integer, or return the text unchanged."""
    if text.isascii() and "_" not in text:
        try:
            return int(text)
        except ValueError:
            pass
    return text


def _to_unsigned(text: str) -> int | str:
    """Parse a non-negative decimal integer, or return the text unchanged."""
    value = _to_int(text)
    return value if isinstance(value, str) or value >= 0 else text


def _to_float(text: str) -> float | str:
    """Parse a finite decimal number as float, or return the text unchanged."""
    if text.isascii() and "_" not in text:
        try:
            value = float(text)
        except ValueError:
            return text
        if math.isfinite(value):
            return value
    return text


def _to_bool(text: str) -> bool | str:
    """Parse '1'/'0'/'true'/'false' (any case, surrounding whitespace allowed), or return the text."""
    key = text.strip().lower()
    if key in _TRUE:
        return True
    if key in _FALSE:
        return False
    return text


TEXT_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "integer": _to_int,
    "time": _to_int,
    "unsigned": _to_unsigned,
    "float": _to_float,
    "boolean": _to_bool,
}


def decode_text(raw: bytes, path: str, model: ObjectModel) -> Any:
    """Decode UTF-8 text and type it by the resource at `path`; raise DecodeError when not UTF-8."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(
            f"text/plain payload is not valid UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        ) from None
    key = resource_key(path)
    if key is None:
        return text
    rdef = model.resource_by_key(key)
    if rdef is None:
        return text
    convert = TEXT_CONVERTERS.get(rdef.type)
    return text if convert is None else convert(text)
