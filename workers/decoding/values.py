"""Small value helpers shared by the formats: JSON-safe floats, float32 rendering, raw-bytes rendering."""

import math
import struct
from typing import Any

from workers.decoding.b64 import encode_b64

_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}
_WHITESPACE_CONTROLS = str.maketrans("", "", "\t\n\r")
_F32 = struct.Struct(">f")


def json_float(value: float) -> float | str:
    """Return `value`, or 'NaN' / 'Infinity' / '-Infinity' when not finite (JSON has no such numbers)."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else _NON_FINITE[value]


def float32_value(raw: bytes) -> float | str:
    """Decode 4 big-endian bytes as a float32, rendered as the shortest decimal that maps back to them."""
    (value,) = _F32.unpack(raw)
    if not math.isfinite(value):
        return json_float(value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        try:
            if _F32.pack(candidate) == raw:
                return candidate
        except OverflowError:
            continue
    return float(value)  # pragma: no cover - 9 significant digits always round-trip a float32


def is_float32_exact(value: float) -> bool:
    """Return True when `value` survives encoding as float32 and decoding with `float32_value`."""
    try:
        packed = _F32.pack(value)
    except OverflowError:
        return False
    return math.isfinite(value) and float32_value(packed) == value


def raw_text_or_b64(raw: bytes) -> str:
    """Render bytes of unknown type: the text when valid printable UTF-8, else canonical base64."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return encode_b64(raw)
    if text.isprintable() or text.translate(_WHITESPACE_CONTROLS).isprintable():
        return text
    return encode_b64(raw)


def utf8_or_b64(raw: bytes) -> str:
    """Decode a string resource: its UTF-8 text, or canonical base64 when it is not valid UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return encode_b64(raw)


def coerce_number(value: Any, rtype: str | None) -> Any:
    """Adjust a number parsed from JSON/CBOR to the resource's LwM2M type when that loses nothing."""
    if rtype is None or isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if rtype == "float" and isinstance(value, int):
        return float(value)
    if rtype in ("integer", "unsigned", "time") and isinstance(value, float) and value.is_integer():
        return int(value)
    if rtype == "boolean" and value in (0, 1):
        return bool(value)
    return value
