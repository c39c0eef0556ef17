"""Strict JSON: the one parser of received bodies, on the request path and in the worker.

Python's ``json`` accepts three things that are not JSON or that break later, far from the parse:
``NaN``/``Infinity`` (not JSON; other parsers and ``json.dumps(allow_nan=False)`` refuse them), lone
surrogate escapes (``"\\ud800"`` parses to a str that cannot be encoded to UTF-8, so writing it to
Redis or a log fails), and nesting deeper than the interpreter's recursion limit (``RecursionError``,
which is not a ``ValueError``: a 5,000-deep ``[[[…`` of 10 KB became a 500). Each is a ``ValueError``
here, with the reason.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _no_constant(name: str) -> Any:
    """json's hook for NaN, Infinity and -Infinity: refuse them."""
    raise ValueError(f"{name} is not a JSON number")


def _lone_surrogate(value: Any) -> bool:
    """True when any string (key or value) in a parsed document cannot be encoded to UTF-8."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return False


def loads(body: bytes | str) -> Any:
    """Parse JSON strictly; ValueError (with the reason) for anything that is not plain JSON text."""
    try:
        value = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"the body is not UTF-8 text: {exc}") from None
    # Only a body with a surrogate escape in it can hold one, so the walk is rare (a find costs ~µs).
    raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    if _SURROGATE_ESCAPE.search(raw) and _lone_surrogate(value):
        raise ValueError("the JSON has a lone UTF-16 surrogate escape (not a Unicode character)")
    return value
