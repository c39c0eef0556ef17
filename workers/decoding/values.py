"""Small value helpers shared by the formats: JSON-safe floats, float32 rendering, raw-bytes rendering."""

import math
import re
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


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def may_hold_surrogates(json_text: str | bytes) -> bool:
    """True when JSON text has a \\uD800-\\uDFFF escape, the only way parsed JSON gets a lone surrogate."""
    if isinstance(json_text, bytes):
        return _SURROGATE_ESCAPE_BYTES.search(json_text) is not None
    return _SURROGATE_ESCAPE.search(json_text) is not None


def repair_surrogates(doc: Any) -> Any:
    """Replace lone surrogates (valid JSON escapes, not Unicode: UTF-8 cannot encode them, so Redis,
    logs and `devicehooks decode` would fail on them) by U+FFFD in every string and key of `doc`.
    Paired escapes were already joined by the parser."""
    if isinstance(doc, str):
        return _SURROGATES.sub("\ufffd", doc)
    if isinstance(doc, list):
        return [repair_surrogates(item) for item in doc]
    if isinstance(doc, dict):
        return {repair_surrogates(key): repair_surrogates(value) for key, value in doc.items()}
    return doc


def finite_or_text(text: str) -> float | str:
    """JSON's parse_float: the float, or for a literal beyond float range (1e999) its JSON-safe text."""
    return json_float(float(text))


def constant_text(name: str) -> str:
    """JSON's parse_constant: the non-standard NaN / Infinity / -Infinity literals kept as their text."""
    return name
