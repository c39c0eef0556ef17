"""Handlers for the end-to-end benchmarks: a batch handler that counts in Redis (nearly free).

``router``: INCRBY ``bench:handled`` by the number of events, one round trip per batch.
``timed``: the same, plus one latency sample per batch: time.time() at the call minus the batch job's
``enqueued_at`` (set by the web process just before it answers 204), weighted by the events it carries.
"""

from __future__ import annotations

import time
from datetime import UTC

from rq import get_current_job

from workers import runtime
from workers.events import Event
from workers.handlers import Router

COUNT_KEY = "bench:handled"
LATENCY_KEY = "bench:latency"

router = Router()
timed = Router()


@router.register("notifications", batch=True, name="count")
def count(events: list[Event]) -> None:
    """Add the batch's size to the counter."""
    runtime.current().redis.incrby(COUNT_KEY, len(events))


@timed.register("notifications", batch=True, name="count-timed")
def count_timed(events: list[Event]) -> None:
    """Add the batch's size to the counter and record its ack -> handler latency."""
    called = time.time()
    job = get_current_job()
    pipe = runtime.current().redis.pipeline(transaction=False)
    pipe.incrby(COUNT_KEY, len(events))
    if job is not None and job.enqueued_at is not None:
        enqueued = job.enqueued_at
        if enqueued.tzinfo is None:
            enqueued = enqueued.replace(tzinfo=UTC)
        pipe.rpush(LATENCY_KEY, f"{called - enqueued.timestamp():.6f} {len(events)}")
    pipe.execute()
