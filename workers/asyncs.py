"""Async-responses in the worker: settle each pending request once, decode once, call its handler once.

A request made through ``app.dm.asyncs.AsyncTracker`` may name a handler (a handler name of the
loaded router, e.g. ``mypackage.handlers:on_reading``). Settling the request queues that handler's
delivery job (``workers.jobs.deliver_async_result``) in the same Lua script, whether the request
settles through its async-response in a batch, its timeout (the sweeper), an early response matched by
``track()`` or a failed POST. The job gives the handler the request's Event (``ep``, ``path``, the
``value`` typed by the path with the worker's object model, ``LWM2M_OBJECTS`` included); a timed-out
request's Event has ``status`` 504 and ``error`` "TIMEOUT".

The call is made once per settled request: the job claims it in Redis before calling and records
``done`` after. A job that runs again after its worker died finds the claim and does not call again:
when the kill landed inside the handler call (or after it returned, before ``done``) the Event goes to
the dead letters with :data:`INTERRUPTED` as the error, for a person to replay or drop; a failure
before the call was made durable releases the claim, so the job's Retry calls the handler again.

Handlers registered for the ``async-responses`` kind get every async-response Device Management
delivers (at least once, like any kind); a named handler gets its request's result exactly once.
Register a handler with ``kinds=[]`` when it should only get the results addressed to it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import traceback
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from app.dm.asyncs import CALL_DONE, AsyncResult, AsyncTracker, Response, resource_of, sweep_forever
from app.weather import is_weather
from workers import faults
from workers.batch import Rejection
from workers.decoding import ObjectModel, decode_value, shape_values
from workers.events import Event
from workers.runtime import Runtime

logger = logging.getLogger(__name__)

SWEEP_INTERVAL = 2.0
SWEEPER_JOIN_TIMEOUT = 30.0
INTERRUPTED = (
    "interrupted: the worker died during this handler call (or right after it returned); "
    "not called again, so the handler sees this result at most once"
)
KIND = "async-responses"


def response_of(event: Event) -> Response:
    """The tracker's form of an async-responses Event (already normalised by the batch parser)."""
    return Response(
        id=event.id or "",
        status=event.status,
        payload_b64=event.payload_b64,
        ct=event.ct,
        error=event.error,
        max_age=event.max_age,
    )


def decode_into(event: Event, result: AsyncResult, model: ObjectModel) -> None:
    """Give an Event its request's ep and path, and its value decoded once, typed by that path."""
    event.ep, event.path = result.ep, result.path
    resource = resource_of(result.path)  # the request URI without its query
    value, event.decode_error = decode_value(result.payload_b64, result.ct, resource, model)
    event.value, event.values = shape_values(value, result.ct, resource)


def event_from_result(result: AsyncResult, model: ObjectModel) -> Event:
    """The async-responses Event of a settled request (resolved, timed out or failed)."""
    event = Event(
        kind=KIND,
        id=result.id,
        status=result.status,
        error=result.error,
        ct=result.ct,
        payload_b64=result.payload_b64,
        max_age=result.max_age,
    )
    decode_into(event, result, model)
    return event


def _body_indexes(parsed: Iterable[Rejection]) -> Iterator[int]:
    """The body indexes of the async-responses that became Events, in order: those the parser did not
    reject (each item of the list is one Event or one rejection, and Events keep batch order)."""
    skipped = {rejection.index for rejection in parsed if rejection.kind == KIND}
    return (index for index in itertools.count() if index not in skipped)


def resolve(
    tracker: AsyncTracker, events: list[Event], model: ObjectModel, parsed: Iterable[Rejection] = ()
) -> tuple[list[Event], list[Rejection]]:
    """Settle the batch's async-responses; return the events to dispatch and the items rejected.

    One item whose settling raises (an id Redis cannot encode, a record that is not JSON) becomes a
    rejection with the reason and its index in the body's list (``parsed``: the parser's rejections of
    this batch, so the index skips the items it rejected); the others go on. Redis weather
    (``app.weather.is_weather``: unreachable, loading, full, read-only, failing over) is the batch's:
    it propagates and the job retries whole.
    """
    kept: list[Event] = []
    rejected: list[Rejection] = []
    indexes = _body_indexes(parsed)
    for event in events:
        if event.kind != KIND:
            kept.append(event)
            continue
        index = next(indexes)
        try:
            result = tracker.resolve(response_of(event)) if event.id else None
            if result is not None and result.path:
                decode_into(event, result, model)
        except Exception as exc:
            if is_weather(exc):
                raise
            reason = f"async-response not resolved: {type(exc).__name__}: {exc}"
            logger.warning("%s\n%s", reason, traceback.format_exc())
            rejected.append(Rejection(KIND, index, reason, event.to_dict()))  # JSON escapes a lone surrogate
            continue
        kept.append(event)
    return kept, rejected


def deliver(rt: Runtime, async_id: str, source: str) -> dict[str, Any]:
    """Call the handler a settled request named, once: claim, call, record done (module docstring)."""
    tracker = rt.tracker
    result = tracker.get(async_id)
    if not result.settled or not result.handler:
        logger.warning("async %s: nothing to deliver (%s; expired?)", async_id, result.state)
        return {"async_id": async_id, "delivered": False, "state": result.state}
    event = event_from_result(result, rt.model)
    faults.reach(rt.settings, "async-before-call")
    token = f"{source}:{uuid.uuid4().hex}"
    holder = tracker.claim_call(async_id, token)
    if holder == CALL_DONE:
        logger.info("async %s: handler %s was already called; not again", async_id, result.handler)
        return {"async_id": async_id, "delivered": False, "already": True}
    if holder is not None:
        letter = rt.dispatcher.dead_letter(result.handler, [event.to_dict()], INTERRUPTED, "", 1, source)
        tracker.finish_call(async_id)
        logger.error("async %s: an earlier run (%s) died in its call to %s; dead letter %s",
                     async_id, holder, result.handler, letter)  # fmt: skip
        return {"async_id": async_id, "delivered": False, "interrupted": True}
    try:
        failed = rt.dispatcher.deliver_to(result.handler, [event], source)
    except BaseException:
        tracker.release_call(async_id, token)
        raise
    faults.reach(rt.settings, "async-after-call")
    tracker.finish_call(async_id)
    return {"async_id": async_id, "delivered": not failed, "handler": result.handler}


def start_sweeper(tracker: AsyncTracker, stop: threading.Event) -> threading.Thread:
    """Time out overdue requests every few seconds (their delivery jobs are queued as they settle)."""
    thread = threading.Thread(
        target=sweep_forever, args=(tracker, stop, SWEEP_INTERVAL), name="async-sweeper", daemon=True
    )
    thread.start()
    return thread


def stop_sweeper(thread: threading.Thread, stop: threading.Event) -> None:
    """Ask the sweeper to stop and wait for its pass in hand to finish (each timeout is atomic)."""
    stop.set()
    thread.join(SWEEPER_JOIN_TIMEOUT)
    if thread.is_alive():
        logger.warning("async sweeper still busy after %g s; leaving it", SWEEPER_JOIN_TIMEOUT)
