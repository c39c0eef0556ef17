"""Async-responses in the worker: resolve each pending request once, enrich its Event, run its handler.

A request made through ``app.dm.asyncs.AsyncTracker`` may name a handler (a handler name of the
loaded router, e.g. ``mypackage.handlers:on_reading``). That handler gets the async-responses Event
of its request, with ``ep``, ``path`` and a ``value`` typed by the path, through the same lanes,
retries and dead letters as any delivery. Requests that time out (``expire_overdue``) reach their
handler as an Event with ``status`` 504 and ``error`` "TIMEOUT".

Handlers registered for the ``async-responses`` kind get every async-response Device Management
delivers (at least once, like any kind); a named handler gets its request's result exactly once.
Register a handler with ``kinds=[]`` when it should only get the results addressed to it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from app.dm.asyncs import AsyncResult, AsyncTracker, sweep_forever
from workers.decoding import shape_values
from workers.dispatch import follow_up_retry
from workers.events import Event

logger = logging.getLogger(__name__)

SWEEP_INTERVAL = 2.0
DELIVER_FUNC = "workers.jobs.deliver_async_result"


def raw_item(event: Event) -> dict[str, Any]:
    """The async-responses item an Event came from (as AsyncTracker.resolve takes it)."""
    return {
        "id": event.id,
        "status": event.status,
        "payload": event.payload_b64,
        "ct": event.ct,
        "error": event.error,
        "max-age": event.max_age,
    }


def event_from_result(result: AsyncResult) -> Event:
    """The async-responses Event of a result (resolved or timed out)."""
    value, values = shape_values(result.value, result.ct, result.path or "")
    return Event(
        kind="async-responses",
        id=result.id,
        ep=result.ep,
        path=result.path,
        status=result.status,
        error=result.error,
        ct=result.ct,
        payload_b64=result.payload_b64,
        value=value,
        values=values,
        max_age=result.max_age,
        decode_error=result.decode_error,
    )


def resolve(tracker: AsyncTracker, events: list[Event], owner: str = "") -> list[tuple[str, Event]]:
    """Resolve the batch's async-responses; enrich their Events; return (handler, event) to deliver.

    ``owner`` is the job id: until the job confirms the hand-off (``tracker.confirm_handoff``), the same
    job running again after a crash gets its named deliveries back instead of losing them.
    """
    named: list[tuple[str, Event]] = []
    for event in events:
        if event.kind != "async-responses" or not event.id:
            continue
        result = tracker.resolve(raw_item(event), owner=owner)
        if result is None:
            continue
        event.ep, event.path = result.ep, result.path
        if result.path and result.payload_b64:
            event.value, event.decode_error = result.value, result.decode_error
        if result.handler:
            named.append((result.handler, event))
    return named


def start_sweeper(tracker: AsyncTracker, enqueue: Any, stop: threading.Event) -> threading.Thread:
    """Time out overdue requests every few seconds; queue a delivery job for each named handler."""

    def on_timeout(result: AsyncResult) -> None:
        logger.warning("async request %s to %s %s timed out", result.id, result.ep, result.path)
        if not result.handler:
            return
        try:
            event = event_from_result(result).to_dict()
            enqueue(DELIVER_FUNC, result.handler, event, retry=follow_up_retry())
        except Exception:
            logger.exception("async request %s: queueing its handler %s failed", result.id, result.handler)

    thread = threading.Thread(
        target=sweep_forever,
        args=(tracker, stop, SWEEP_INTERVAL, on_timeout),
        name="async-sweeper",
        daemon=True,
    )
    thread.start()
    return thread
