"""Events waiting for delivery: a FIFO bounded in bytes, and the batch document built from them."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from workers.events import KINDS


@dataclass(slots=True)
class Event:
    """One item of a NotificationMessage, with the key a receiver can count it by."""

    kind: str
    item: Any
    key: str
    size: int
    seq: int


def item_size(item: Any) -> int:
    """Bytes the item takes in a batch (JSON plus a separator); estimated for flat objects (fast path)."""
    if isinstance(item, dict) and all(isinstance(v, str | int | float) for v in item.values()):
        return 2 + sum(len(k) + len(str(v)) + 6 for k, v in item.items())
    return len(json.dumps(item, separators=(",", ":"))) + 1


class EventQueue:
    """FIFO of events that knows its size in bytes; the owner holds the lock."""

    def __init__(self) -> None:
        self._events: deque[Event] = deque()
        self.bytes = 0

    def __len__(self) -> int:
        """Number of queued events."""
        return len(self._events)

    def append(self, event: Event) -> None:
        """Queue one event at the end."""
        self._events.append(event)
        self.bytes += event.size

    def pop_oldest(self) -> Event:
        """Remove and return the oldest event."""
        event = self._events.popleft()
        self.bytes -= event.size
        return event

    def take(self, limit: int) -> list[Event]:
        """Remove and return up to `limit` oldest events."""
        return [self.pop_oldest() for _ in range(min(limit, len(self._events)))]

    def first_seq(self) -> int | None:
        """Sequence number of the oldest event, None when empty."""
        return self._events[0].seq if self._events else None

    def clear(self) -> int:
        """Drop everything; return how many events were dropped."""
        count = len(self._events)
        self._events.clear()
        self.bytes = 0
        return count


def build_batch(events: list[Event]) -> dict[str, list[Any]]:
    """The NotificationMessage for a batch: items grouped by kind, order kept within each kind."""
    batch: dict[str, list[Any]] = {}
    for event in events:
        batch.setdefault(event.kind, []).append(event.item)
    return {kind: batch[kind] for kind in KINDS if kind in batch}
