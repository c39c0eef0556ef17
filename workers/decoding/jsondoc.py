"""application/json (ct 50): the parsed document.

The payload must be UTF-8 JSON. NaN and Infinity literals are rejected (the value must stay valid
JSON for `devicehooks decode`), as is nesting deep enough to exhaust the parser.
"""

import json
from typing import Any

from workers.decoding.errors import DecodeError
from workers.decoding.model import ObjectModel


def _reject_constant(name: str) -> Any:
    """Refuse the non-standard NaN / Infinity literals."""
    raise ValueError(f"non-standard JSON constant {name}")


def parse_json(raw: bytes, what: str = "JSON") -> Any:
    """Parse UTF-8 JSON bytes; raise DecodeError naming `what` on any problem."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what} payload is not valid UTF-8: byte offset {exc.start}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"{what} payload is not valid JSON: {exc.msg} at offset {exc.pos}") from None
    except ValueError as exc:
        raise DecodeError(f"{what} payload is not valid JSON: {exc}") from None
    except RecursionError:
        raise DecodeError(f"{what} payload is nested too deeply") from None


def decode_json(raw: bytes, path: str, model: ObjectModel) -> Any:
    """Decode an application/json payload to the parsed document."""
    return parse_json(raw)
