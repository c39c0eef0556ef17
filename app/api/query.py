"""List queries in Device Management's conventions: ``limit``/``after``/``order``/``include`` and
``field__op`` filters; pure functions over entities that are already ordered by ``id``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.errors import BadRequest
from app.state import parse_time

OPERATORS = ("eq", "neq", "in", "nin", "lte", "gte")
DEFAULT_LIMIT = 50
MIN_LIMIT = 2
MAX_LIMIT = 1000
STRING = "string"
DATE = "date-time"


def invalid(name: str, message: str) -> BadRequest:
    """A validation_error naming the bad parameter in ``fields``."""
    return BadRequest(f"invalid parameter {name}: {message}", [{"name": name, "message": message}])


@dataclass(frozen=True)
class Filter:
    """One ``field__op=value`` filter; ``values`` holds one value, or several for in/nin."""

    field: str
    op: str
    values: tuple[Any, ...]

    def matches(self, entity: Mapping[str, Any], kind: str) -> bool:
        """True when the entity passes this filter (a missing value passes only neq and nin)."""
        actual = entity.get(self.field)
        if kind == DATE:
            actual = parse_time(actual)
        if self.op == "eq":
            return actual == self.values[0]
        if self.op == "neq":
            return actual != self.values[0]
        if self.op == "in":
            return actual in self.values
        if self.op == "nin":
            return actual not in self.values
        if actual is None:
            return False
        return bool(actual <= self.values[0] if self.op == "lte" else actual >= self.values[0])


@dataclass(frozen=True)
class ListQuery:
    """A parsed list request."""

    limit: int = DEFAULT_LIMIT
    after: str | None = None
    order: str = "ASC"
    total_count: bool = False
    filters: tuple[Filter, ...] = ()
    kinds: Mapping[str, str] = field(default_factory=dict)

    @property
    def descending(self) -> bool:
        """DESC order."""
        return self.order == "DESC"

    def matches(self, entity: Mapping[str, Any]) -> bool:
        """True when the entity passes every filter."""
        return all(f.matches(entity, self.kinds[f.field]) for f in self.filters)


def _limit(raw: str | None) -> int:
    """Parse ``limit``: 2..1000, default 50."""
    if raw is None:
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise invalid("limit", f"must be an integer from {MIN_LIMIT} to {MAX_LIMIT}") from None
    if not MIN_LIMIT <= value <= MAX_LIMIT:
        raise invalid("limit", f"must be an integer from {MIN_LIMIT} to {MAX_LIMIT}")
    return value


def _filter_value(name: str, raw: str, kind: str) -> Any:
    """One filter value, a date parsed to epoch seconds."""
    if kind != DATE:
        return raw
    value = parse_time(raw)
    if value is None or raw.strip().lstrip("-").replace(".", "").isdigit():
        raise invalid(name, "must be a date-time in RFC 3339 (2016-11-30T16:25:12.1234Z) or 20161130T162512Z")
    return value


def parse_filter(name: str, raw: str, fields: Mapping[str, str]) -> Filter:
    """Parse ``field__op=value``; the field must be one of ``fields``."""
    field_name, _, op = name.rpartition("__")
    if field_name not in fields or op not in OPERATORS:
        raise invalid(
            name,
            f"unknown parameter; filters are {', '.join(sorted(fields))} with __{', __'.join(OPERATORS)}",
        )
    kind = fields[field_name]
    if op in ("in", "nin"):
        values = tuple(_filter_value(name, part.strip(), kind) for part in raw.split(",") if part.strip())
        if not values:
            raise invalid(name, "needs at least one comma-separated value")
        return Filter(field_name, op, values)
    return Filter(field_name, op, (_filter_value(name, raw, kind),))


def parse_list_query(args: Mapping[str, str], fields: Mapping[str, str]) -> ListQuery:
    """Parse the query string of a list request; a bad parameter raises a validation_error naming it."""
    order = args.get("order", "ASC").upper()
    if order not in ("ASC", "DESC"):
        raise invalid("order", "must be ASC or DESC")
    include = [part.strip() for part in args.get("include", "").split(",") if part.strip()]
    unknown_include = [part for part in include if part != "total_count"]
    if unknown_include:
        raise invalid("include", f"unsupported value {unknown_include[0]!r}; supported: total_count")
    after = args.get("after")
    if after is not None and not after:
        raise invalid("after", "must be an entity id")
    filters = []
    for name, raw in args.items():
        if name in ("limit", "after", "order", "include"):
            continue
        filters.append(parse_filter(name, raw, fields))
    return ListQuery(
        limit=_limit(args.get("limit")),
        after=after,
        order=order,
        total_count="total_count" in include,
        filters=tuple(filters),
        kinds=dict(fields),
    )


def page(entities: Iterable[dict[str, Any]], query: ListQuery, total: Callable[[], int]) -> dict[str, Any]:
    """A list response from entities already ordered (and started after ``after``) as the query asks.

    Reads one matching entity past the page to know ``has_more``; ``total`` counts every entity that
    passes the filters (whatever ``after`` says), called only for ``include=total_count``.
    """
    data: list[dict[str, Any]] = []
    has_more = False
    for entity in entities:
        if not query.matches(entity):
            continue
        if len(data) == query.limit:
            has_more = True
            break
        data.append(entity)
    body: dict[str, Any] = {
        "object": "list",
        "limit": query.limit,
        "after": query.after,
        "order": query.order,
        "has_more": has_more,
        "data": data,
    }
    if query.total_count:
        body["total_count"] = total()
    return body


def in_memory(entities: list[dict[str, Any]], query: ListQuery) -> dict[str, Any]:
    """A list response over a (bounded) list held in memory."""
    return page(after_filter(entities, query), query, lambda: sum(1 for e in entities if query.matches(e)))


def after_filter(entities: Iterable[dict[str, Any]], query: ListQuery) -> list[dict[str, Any]]:
    """Entities of an in-memory list ordered by id as the query asks, starting after ``after``."""
    ordered = sorted(entities, key=lambda e: e["id"], reverse=query.descending)
    if query.after is None:
        return ordered
    if query.descending:
        return [e for e in ordered if e["id"] < query.after]
    return [e for e in ordered if e["id"] > query.after]
