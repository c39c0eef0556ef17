"""Calling handlers: each in its own lane (a thread), bounded by its timeout, failures collected.

Isolation: handlers of one batch run concurrently, one lane per handler, so a handler that
raises or hangs neither delays nor blocks another. A call still running past its timeout leaves
its lane busy; until it returns, that handler's new events fail at once as "busy" (and are
retried later) instead of waiting. Python cannot kill a thread: a hung call keeps its thread.
Nothing here touches Redis; the job decides what to do with the failures (retry, dead letter).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from workers.events import Event
from workers.handlers.router import Handler

logger = logging.getLogger(__name__)


@dataclass
class Failure:
    """Events one handler did not take, with the error."""

    handler: Handler
    events: list[Event]
    error: str
    traceback: str = ""


@dataclass
class Progress:
    """How far a per-event handler got (so a timeout retries only what was not confirmed)."""

    done: int = 0
    failures: list[tuple[Event, str, str]] = field(default_factory=list)


def call_handler(handler: Handler, events: list[Event], progress: Progress) -> None:
    """Deliver events to one handler: a batch handler at once, a per-event one event by event."""
    if handler.batch:
        try:
            handler.func(list(events))
        except Exception as exc:
            progress.failures.extend((event, _describe(exc), traceback.format_exc()) for event in events)
        progress.done = len(events)
        return
    for event in events:
        try:
            handler.func(event)
        except Exception as exc:
            progress.failures.append((event, _describe(exc), traceback.format_exc()))
        progress.done += 1


def _describe(exc: BaseException) -> str:
    """One line naming the exception."""
    return f"{type(exc).__name__}: {exc}"


def _group(handler: Handler, failures: list[tuple[Event, str, str]]) -> list[Failure]:
    """At most one Failure per handler (so retries stay one job per handler, not per event)."""
    if not failures:
        return []
    errors = list(dict.fromkeys(error for _, error, _ in failures))
    summary = errors[0] if len(errors) == 1 else f"{errors[0]} (and {len(errors) - 1} other error(s))"
    return [Failure(handler, [event for event, _, _ in failures], summary, failures[0][2])]


def _merge(timed_out: Failure, earlier: list[Failure]) -> list[Failure]:
    """Fold failures seen before a timeout into the timeout's Failure."""
    for failure in earlier:
        timed_out.events = failure.events + timed_out.events
        timed_out.error = f"{timed_out.error}; earlier: {failure.error}"
        timed_out.traceback = failure.traceback
    return [timed_out]


class Lanes:
    """One single-thread executor per handler name, kept for the life of the worker process."""

    def __init__(self) -> None:
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._busy: dict[str, Future[None]] = {}
        self._lock = threading.Lock()

    def _executor(self, name: str) -> ThreadPoolExecutor:
        """The lane of one handler."""
        with self._lock:
            executor = self._executors.get(name)
            if executor is None:
                executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"handler-{name[:40]}")
                self._executors[name] = executor
            return executor

    def is_busy(self, name: str) -> bool:
        """True while a call that timed out is still running in this lane."""
        future = self._busy.get(name)
        if future is not None and future.done():
            del self._busy[name]
            return False
        return future is not None

    def deliver(self, work: list[tuple[Handler, list[Event]]]) -> list[Failure]:
        """Run every handler's delivery concurrently; return what failed, timed out or was refused."""
        started = time.monotonic()
        running: list[tuple[Handler, list[Event], Progress, Future[None]]] = []
        failures: list[Failure] = []
        for handler, events in work:
            if self.is_busy(handler.name):
                busy = "handler busy: an earlier call is still running past its timeout"
                failures.append(Failure(handler, events, busy))
                continue
            progress = Progress()
            # The lane runs in the job's context, so a handler sees rq.get_current_job() like any job code.
            context = contextvars.copy_context()
            future = self._executor(handler.name).submit(context.run, call_handler, handler, events, progress)
            running.append((handler, events, progress, future))
        for handler, events, progress, future in running:
            remaining = handler.policy.timeout - (time.monotonic() - started)
            try:
                future.result(timeout=max(remaining, 0))
            except FutureTimeout:
                self._busy[handler.name] = future
                pending = events[progress.done :]
                logger.error(
                    "handler %s timed out after %.1f s; %d event(s) will be retried",
                    handler.name, handler.policy.timeout, len(pending),
                )  # fmt: skip
                timed_out = Failure(handler, pending, f"timed out after {handler.policy.timeout:g} s")
                failures.extend(_merge(timed_out, _group(handler, list(progress.failures))))
                continue
            failures.extend(_group(handler, list(progress.failures)))
        return failures

    def shutdown(self) -> None:
        """Stop accepting work; do not wait for hung calls."""
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)
