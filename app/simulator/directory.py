"""List paging and `__eq`-style filters in the Device Management conventions (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from app.simulator.errors import BadRequest

DEFAULT_LIMIT = 50
MIN_LIMIT, MAX_LIMIT = 2, 1000
OPERATORS = ("eq", "neq", "in", "nin")
RESERVED = ("limit", "after", "order", "include")


def _limit(raw: str | None) -> int:
    """Parse `limit` (2..1000, default 50)."""
    if raw is None:
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"limit must be an integer, got {raw!r}") from None
    if not MIN_LIMIT <= value <= MAX_LIMIT:
        raise BadRequest(f"limit must be between {MIN_LIMIT} and {MAX_LIMIT}, got {value}")
    return value


def _text(value: Any) -> str:
    """A field value as filters compare it (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def legacy_filter(raw: str) -> dict[str, str]:
    """The legacy `filter` argument (an encoded query string, 'state=registered&name__neq=x') as
    `field__op` arguments; a field without an operator means `__eq`."""
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise BadRequest(
            f"filter must be an encoded query string such as state%3Dregistered, got {raw!r}"
        ) from None
    return {key if "__" in key else f"{key}__eq": value for key, value in pairs}


def _filters(args: Mapping[str, str], fields: set[str]) -> list[tuple[str, str, set[str]]]:
    """Parse `field__op=value` arguments (and the legacy `filter`); reject unknown fields or operators."""
    parsed = []
    merged = {k: v for k, v in args.items() if k != "filter"}
    if "filter" in args:
        merged.update(legacy_filter(args["filter"]))
    for key, value in merged.items():
        if key in RESERVED:
            continue
        field, sep, op = key.rpartition("__")
        if not sep or op not in OPERATORS or field not in fields:
            raise BadRequest(f"unsupported filter {key!r}")
        parsed.append((field, op, set(value.split(",")) if op in ("in", "nin") else {value}))
    return parsed


def _keep(entry: Mapping[str, Any], filters: list[tuple[str, str, set[str]]]) -> bool:
    """True when the entry passes every filter."""
    for field, op, values in filters:
        inside = _text(entry.get(field)) in values
        if inside != (op in ("eq", "in")):
            return False
    return True


def list_page(entries: list[dict[str, Any]], args: Mapping[str, str]) -> dict[str, Any]:
    """One page of `entries` (in creation order) per limit/after/order/include and filters."""
    limit = _limit(args.get("limit"))
    order = (args.get("order") or "ASC").upper()
    if order not in ("ASC", "DESC"):
        raise BadRequest(f"order must be ASC or DESC, got {order!r}")
    fields = set().union(*(entry.keys() for entry in entries)) if entries else set()
    selected = [e for e in entries if _keep(e, _filters(args, fields or {"id"}))]
    if order == "DESC":
        selected.reverse()
    after = args.get("after")
    start = 0
    if after:
        ids = [e.get("id") for e in selected]
        if after not in ids:
            raise BadRequest(f"after: no entity with id {after!r}")
        start = ids.index(after) + 1
    page: dict[str, Any] = {
        "object": "list",
        "limit": limit,
        "after": after,
        "order": order,
        "has_more": start + limit < len(selected),
        "data": selected[start : start + limit],
    }
    if "total_count" in (args.get("include") or "").split(","):
        page["total_count"] = len(selected)
    return page
