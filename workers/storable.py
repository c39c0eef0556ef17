"""Events as stored JSON (retry jobs, dead letters), and a lossy copy for the values JSON refuses.

``json.dumps`` refuses an int past 4,300 digits (a 2,000-byte CBOR bignum is ~4,800), objects it does not
know, non-string keys it cannot convert, and nesting past the recursion limit; a lone surrogate and NaN are
accepted (escaped as ``\\ud800``, written as ``NaN``) and read back as they were.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64
MAX_REPR = 200


def dumps(value: Any) -> str:
    """Compact ASCII JSON (a lone surrogate is escaped, so any Redis client can store it)."""
    return json.dumps(value, separators=(",", ":"))


def refusal(value: Any) -> str | None:
    """Why ``json.dumps`` refuses value, or None when it is storable."""
    try:
        dumps(value)
    except (ValueError, TypeError, RecursionError, OverflowError) as exc:
        return f"{type(exc).__name__}: {exc}"[:MAX_REPR]
    return None


def json_safe(value: Any, depth: int = 0) -> Any:
    """A copy JSON accepts: what it refuses becomes a short description (for a dead letter to show)."""
    if depth > MAX_DEPTH:
        return "<nested too deep to store>"
    if value is None or isinstance(value, bool | float | str):
        return value
    if isinstance(value, int):
        try:
            str(value)
        except ValueError:  # past sys.get_int_max_str_digits()
            return f"<int of {value.bit_length()} bits, too large to store>"
        return value
    if isinstance(value, dict):
        return {_key(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item, depth + 1) for item in value]
    return f"<{type(value).__name__}: {repr(value)[:MAX_REPR]}>"


def _key(key: Any) -> str:
    """A dict key as JSON stores it."""
    return key if isinstance(key, str) else str(json_safe(key))


def dumps_safe(value: Any) -> str:
    """``dumps`` when JSON accepts value, else ``dumps`` of its :func:`json_safe` copy."""
    try:
        return dumps(value)
    except (ValueError, TypeError, RecursionError, OverflowError):
        return dumps(json_safe(value))
