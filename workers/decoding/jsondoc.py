"""application/json (ct 50): the parsed document, made JSON-safe.

The payload must be UTF-8 JSON. What Python's parser accepts but JSON cannot carry onwards is made
safe, so the value always survives `json.dumps` and UTF-8 (Redis, dead letters, `devicehooks decode`):
numbers beyond float range (1e999) become the strings 'Infinity', '-Infinity' (as the other formats
render non-finite floats), while the non-standard NaN / Infinity literals are refused; lone surrogates
(\\ud800 escapes) become U+FFFD. More than `limits.MAX_NODES` values or `limits.MAX_DEPTH` levels of
nesting is an error, as is an integer of more than 4300 digits (Python's own limit).
"""

import json
from typing import Any

from workers.decoding.errors import DecodeError
from workers.decoding.limits import check_json_bytes, check_tree
from workers.decoding.model import ObjectModel
from workers.decoding.values import finite_or_text, may_hold_surrogates, repair_surrogates


def _reject_constant(name: str) -> Any:
    """Refuse the non-standard NaN / Infinity literals."""
    raise ValueError(f"non-standard JSON constant {name}")


def parse_json(raw: bytes, what: str = "JSON") -> Any:
    """Parse UTF-8 JSON bytes into JSON-safe values; raise DecodeError naming `what` on any problem."""
    check_json_bytes(raw, what)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what} payload is not valid UTF-8: byte offset {exc.start}") from None
    try:
        doc = json.loads(text, parse_constant=_reject_constant, parse_float=finite_or_text)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"{what} payload is not valid JSON: {exc.msg} at offset {exc.pos}") from None
    except ValueError as exc:
        raise DecodeError(f"{what} payload is not valid JSON: {exc}") from None
    except RecursionError:
        raise DecodeError(f"{what} payload is nested too deeply") from None
    check_tree(doc, what)
    return repair_surrogates(doc) if may_hold_surrogates(text) else doc


def decode_json(raw: bytes, path: str, model: ObjectModel) -> Any:
    """Decode an application/json payload to the parsed document."""
    return parse_json(raw)
