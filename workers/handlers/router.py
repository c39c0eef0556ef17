"""The handler API: a small router (after gidgethub's) that maps event filters to functions.

    router = Router()

    @router.register("notifications", path="/3303/*/5700")
    def on_temperature(event): ...

    @router.register(["registrations", "reg-updates"], ept="Light", batch=True)
    def on_lights(events): ...

Filters: ``kinds`` (one, several, all when omitted, or none: ``[]`` makes a handler that only gets
the results of async requests that name it, see ``workers.asyncs``), ``ep`` and ``path`` patterns (``*``
matches within one path segment, ``**`` across segments; an ``ep`` pattern is one segment), and
``ept``. A path filter matches an event's ``path``, or for registrations and reg-updates any of
its resources' paths. Routers compose: ``Router(other, another)`` or ``router.include(other)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from app.paths import normalize_path
from workers.events import ALL_KINDS, KINDS, Event

HandlerFunc = Callable[..., Any]


class HandlerError(ValueError):
    """A handler was registered wrongly (unknown kind, duplicate name, bad policy)."""


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Glob -> regex: ``*`` within a segment, ``**`` across segments, ``?`` one character."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def _normalise_path_pattern(pattern: str) -> str:
    """Path patterns are written with or without the leading '/'."""
    return normalize_path(pattern)


@dataclass(frozen=True)
class Policy:
    """How a handler's failures are retried."""

    attempts: int = 5
    timeout: float = 30.0
    backoff: float = 2.0
    max_backoff: float = 300.0


@dataclass
class Handler:
    """One registered function with its filters and delivery policy."""

    name: str
    func: HandlerFunc
    kinds: frozenset[str]
    ep: str | None = None
    path: str | None = None
    ept: str | None = None
    batch: bool = False
    policy: Policy = field(default_factory=Policy)
    _matches_path: dict[str, bool] = field(default_factory=dict, repr=False)

    def _path_ok(self, path: str | None) -> bool:
        """Match one path, cached per distinct path."""
        if path is None or self.path is None:
            return path is not None
        hit = self._matches_path.get(path)
        if hit is None:
            if len(self._matches_path) > 10_000:
                self._matches_path.clear()
            hit = self._matches_path[path] = compile_pattern(self.path).fullmatch(path) is not None
        return hit

    def matches(self, event: Event) -> bool:
        """True when the event passes every filter."""
        if event.kind not in self.kinds:
            return False
        if self.ep is not None and (event.ep is None or not compile_pattern(self.ep).fullmatch(event.ep)):
            return False
        if self.ept is not None and (event.ept is None or not compile_pattern(self.ept).fullmatch(event.ept)):
            return False
        if self.path is None:
            return True
        if self._path_ok(event.path):
            return True
        return any(self._path_ok(r.get("path")) for r in event.resources or ())

    def describe(self) -> dict[str, Any]:
        """The handler's filters and policy, for ``devicehooks handlers``."""
        return {
            "name": self.name,
            "kinds": sorted(self.kinds),
            "ep": self.ep,
            "path": self.path,
            "ept": self.ept,
            "batch": self.batch,
            "attempts": self.policy.attempts,
            "timeout": self.policy.timeout,
        }


def _kinds(kinds: str | Iterable[str] | None) -> frozenset[str]:
    """Validate the kinds a handler subscribes to."""
    if kinds is None:
        return ALL_KINDS
    chosen = frozenset([kinds] if isinstance(kinds, str) else kinds)
    unknown = chosen - set(KINDS)
    if unknown:
        raise HandlerError(f"unknown event kind(s) {sorted(unknown)}; choose from {', '.join(KINDS)}")
    return chosen


class Router:
    """Handlers registered with filters; routers compose."""

    def __init__(self, *others: Router) -> None:
        self._handlers: dict[str, Handler] = {}
        for other in others:
            self.include(other)

    @property
    def handlers(self) -> list[Handler]:
        """Every handler, in registration order."""
        return list(self._handlers.values())

    def include(self, other: Router) -> None:
        """Add every handler of another router."""
        for handler in other.handlers:
            self._add(handler)

    def _add(self, handler: Handler) -> None:
        """Add one handler; names are unique (they key retries and dead letters)."""
        existing = self._handlers.get(handler.name)
        if existing is not None and existing.func is not handler.func:
            raise HandlerError(f"two handlers are named {handler.name!r}; pass name=... to one of them")
        self._handlers[handler.name] = handler

    def add(
        self,
        func: HandlerFunc,
        kinds: str | Iterable[str] | None = None,
        *,
        ep: str | None = None,
        path: str | None = None,
        ept: str | None = None,
        batch: bool = False,
        attempts: int = 5,
        timeout: float = 30.0,
        backoff: float = 2.0,
        name: str | None = None,
    ) -> Handler:
        """Register ``func`` for events passing the filters."""
        if attempts < 1 or timeout <= 0 or backoff < 0:
            raise HandlerError("attempts must be >= 1, timeout > 0 and backoff >= 0")
        handler = Handler(
            name=name or f"{func.__module__}:{func.__qualname__}",
            func=func,
            kinds=_kinds(kinds),
            ep=ep,
            path=_normalise_path_pattern(path) if path else None,
            ept=ept,
            batch=batch,
            policy=Policy(attempts=attempts, timeout=timeout, backoff=backoff),
        )
        self._add(handler)
        return handler

    def register(
        self, kinds: str | Iterable[str] | None = None, **options: Any
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        """Decorator form of :meth:`add`."""

        def decorator(func: HandlerFunc) -> HandlerFunc:
            self.add(func, kinds, **options)
            return func

        return decorator

    def get(self, name: str) -> Handler | None:
        """The handler with this name."""
        return self._handlers.get(name)

    def matching(self, events: Iterable[Event]) -> list[tuple[Handler, list[Event]]]:
        """Each handler with its matching events, in batch order; handlers with none are left out."""
        events = list(events)
        out = []
        for handler in self._handlers.values():
            matched = [event for event in events if handler.matches(event)]
            if matched:
                out.append((handler, matched))
        return out
