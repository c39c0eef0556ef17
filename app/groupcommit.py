"""Group commit: the items that a process's threads submit while a write is in flight go out together.

A gthread web worker answers several PUTs at once, and each waited for its own round trip to Redis:
one send, one reply, one script call, one wake-up of its thread. Here the first thread to submit
writes its item at once; items submitted meanwhile queue up, and when that write returns ONE of their
threads is woken to write them all in one call, while the others sleep until it is done. Nothing waits
for a timer: alone, a submit writes at once, as before; under load, a group is whatever arrived during
the previous write (measured: README, "Performance").

Each submit returns only after its own item was written (or raises what the write raised), so an ack
still means the batch is in Redis. The writer decides what a group may hold (``max_items``); this
module holds no I/O of its own.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")


class _Slot(Generic[Item]):
    """One submitted item: whether it was written, what the write raised, and its thread's wake-up."""

    __slots__ = ("done", "error", "item", "wake")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = False
        self.error: BaseException | None = None
        self.wake = threading.Lock()
        self.wake.acquire()  # released once: "your item is written" or "you write the next group"


class GroupCommit(Generic[Item]):
    """Writes submitted items through ``write``, grouping those that arrive while a write is in flight."""

    def __init__(self, write: Callable[[Sequence[Item]], None], max_items: int = 32) -> None:
        self._write = write
        self._max_items = max_items
        self._lock = threading.Lock()
        self._waiting: list[_Slot[Item]] = []
        self._writing = False
        self.groups = 0  # writes made (tests read these two)
        self.items = 0  # items written in them

    def submit(self, item: Item) -> None:
        """Write item, alone or with others; return once it is written, or raise what the write raised."""
        slot = _Slot(item)
        with self._lock:
            self._waiting.append(slot)
            leads = not self._writing
            self._writing = True
        if not leads:
            slot.wake.acquire()  # the GIL is released while a thread sleeps here
        if not slot.done:
            self._write_group()
        if slot.error is not None:
            raise slot.error

    def _write_group(self) -> None:
        """Write the waiting items (this thread's first), wake their threads, hand on the next group."""
        with self._lock:
            group = self._waiting[: self._max_items]
            del self._waiting[: self._max_items]
        try:
            self._write([slot.item for slot in group])
        except BaseException as exc:  # every submitter of the group gets the error, none is lost
            for index, slot in enumerate(group):
                slot.error = exc if index == 0 else copy.copy(exc)
        self.groups += 1
        self.items += len(group)
        for slot in group:
            slot.done = True
        with self._lock:
            following = self._waiting[0] if self._waiting else None
            if following is None:
                self._writing = False
        for slot in group[1:]:
            slot.wake.release()
        if following is not None:
            following.wake.release()  # it finds itself not done and writes the next group
