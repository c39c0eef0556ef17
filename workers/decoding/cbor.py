"""application/cbor (ct 60): the decoded item, converted to JSON-safe values.

Conversion: byte strings -> canonical base64 text; floats -> numbers ('NaN', 'Infinity', '-Infinity'
as strings); arrays, sets -> lists; maps -> objects whose non-text keys are rendered as JSON text
(1 -> "1", [1, 2] -> "[1,2]", a byte string key -> its base64); tags cbor2 knows become their Python
value and then text (datetimes as ISO 8601, decimals, fractions, UUIDs, addresses via str()); other
tags are unwrapped to their content; undefined -> null; simple values -> their number.

The payload must hold exactly one CBOR item (trailing bytes are an error). Before decoding, the item
heads are walked without building anything: more than `limits.MAX_NODES` data items, more than
`limits.MAX_DEPTH` levels, or a length the payload cannot hold is an error, so the decoder never
allocates for a hostile count. Shared references can make a small payload expand enormously;
expansion beyond a budget proportional to the payload is an error, as is a cycle. An integer
(a bignum, tags 2 and 3) of more than `MAX_INT_BITS` bits cannot be represented in JSON everywhere
the Event goes, and is an error; smaller ones stay integers.
"""

import datetime
import io
import json
from collections.abc import Mapping
from typing import Any

import cbor2

from workers.decoding.b64 import encode_b64
from workers.decoding.errors import DecodeError
from workers.decoding.limits import check_cbor_bytes
from workers.decoding.model import ObjectModel
from workers.decoding.values import json_float

_BASE_BUDGET = 4096
_BUDGET_PER_BYTE = 8
MAX_INT_BITS = 4096  # about 1233 decimal digits, well inside Python's 4300-digit str(int) limit


def parse_cbor(raw: bytes, what: str = "CBOR", max_maps: int | None = None) -> Any:
    """Decode exactly one CBOR item from `raw` (at most `max_maps` maps when given); raise DecodeError
    naming `what` on any problem."""
    check_cbor_bytes(raw, what, max_maps=max_maps)
    stream = io.BytesIO(raw)
    try:
        item = cbor2.CBORDecoder(stream).decode()
    except RecursionError:
        raise DecodeError(f"{what} payload is nested too deeply") from None
    except Exception as exc:  # cbor2 raises several types (CBORDecodeError, ValueError, ...)
        raise DecodeError(f"{what} payload is not valid CBOR: {exc}") from None
    if stream.tell() != len(raw):
        raise DecodeError(f"{what} payload has {len(raw) - stream.tell()} bytes after the CBOR item")
    return item


def to_json_safe(item: Any, raw_size: int) -> Any:
    """Convert a decoded CBOR item to JSON-safe values (see module doc)."""
    return _Converter(_BASE_BUDGET + _BUDGET_PER_BYTE * raw_size).convert(item)


class _Converter:
    """Recursive conversion with a size budget and cycle detection."""

    def __init__(self, budget: int) -> None:
        """Start with `budget` units (one per node plus one per byte or character)."""
        self.budget = budget
        self.active: set[int] = set()

    def _spend(self, units: int) -> None:
        """Charge `units` against the budget."""
        self.budget -= units
        if self.budget < 0:
            raise DecodeError("CBOR payload expands too much (shared references?)")

    def convert(self, item: Any) -> Any:
        """Convert one item."""
        self._spend(1)
        if item is None or isinstance(item, bool):
            return item
        if isinstance(item, int):
            if item.bit_length() > MAX_INT_BITS:
                raise DecodeError(f"CBOR integer of {item.bit_length()} bits is too large to represent")
            return item
        if isinstance(item, str):
            self._spend(len(item))
            return item
        if isinstance(item, float):
            return json_float(item)
        if isinstance(item, bytes | bytearray | memoryview):
            self._spend(len(item))
            return encode_b64(bytes(item))
        if isinstance(item, list | tuple | set | frozenset | Mapping):
            return self._container(item)
        return self._scalar(item)

    def _container(self, item: Any) -> Any:
        """Convert an array, set or map, refusing cycles."""
        if id(item) in self.active:
            raise DecodeError("CBOR payload contains a reference cycle")
        self.active.add(id(item))
        try:
            if isinstance(item, Mapping):
                return {self._key(k): self.convert(v) for k, v in item.items()}
            return [self.convert(v) for v in item]
        finally:
            self.active.discard(id(item))

    def _key(self, key: Any) -> str:
        """Render a map key as text."""
        converted = self.convert(key)
        if isinstance(converted, str):
            return converted
        return json.dumps(converted, separators=(",", ":"))

    def _scalar(self, item: Any) -> Any:
        """Convert tags, simple values and the Python types cbor2 decodes semantic tags into."""
        if isinstance(item, cbor2.CBORTag):
            return self.convert(item.value)
        if isinstance(item, cbor2.CBORSimpleValue):
            return int(item.value)
        if item is cbor2.undefined:
            return None
        if isinstance(item, datetime.datetime | datetime.date):
            return item.isoformat()
        text = str(item)
        self._spend(len(text))
        return text


def decode_cbor(raw: bytes, path: str, model: ObjectModel) -> Any:
    """Decode an application/cbor payload to JSON-safe values."""
    return to_json_safe(parse_cbor(raw), len(raw))
