"""A timer thread: run callables after a delay, in due order, until stopped."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class Scheduler:
    """Runs scheduled callables on one background thread; a failing task is logged, not fatal."""

    def __init__(self, name: str = "simulator-scheduler") -> None:
        self._heap: list[tuple[float, int, Callable[[], Any]]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the timer thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; tasks not yet due are discarded."""
        with self._cond:
            self._stopping = True
            self._heap.clear()
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def call_later(self, delay: float, fn: Callable[[], Any]) -> None:
        """Run `fn` after `delay` wall-clock seconds."""
        with self._cond:
            if self._stopping:
                return
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), next(self._counter), fn))
            self._cond.notify_all()

    def every(self, interval: float, fn: Callable[[], Any]) -> None:
        """Run `fn` every `interval` seconds (first run after one interval); interval <= 0 never runs."""
        if interval <= 0:
            return

        def _repeat() -> None:
            try:
                fn()
            finally:
                self.call_later(interval, _repeat)

        self.call_later(interval, _repeat)

    def _next_due(self) -> Callable[[], Any] | None:
        """Wait for the next due task; None when stopping."""
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                if self._heap and self._heap[0][0] <= now:
                    return heapq.heappop(self._heap)[2]
                self._cond.wait(self._heap[0][0] - now if self._heap else None)
            return None

    def _run(self) -> None:
        """The timer loop."""
        while (task := self._next_due()) is not None:
            try:
                task()
            except Exception:
                logger.exception("simulator task failed")
