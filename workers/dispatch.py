"""Fan-out with durability: deliver events to handlers, retry failures with backoff, then dead-letter.

A batch costs one RQ job however many events it has; each handler that fails costs one more
(a scheduled ``redeliver`` job carrying just that handler's failed events), so the number of
jobs per batch never grows with the number of events.

Containment: whatever goes wrong while settling one handler's failure (an event JSON refuses to
store, a bug) becomes a dead letter for that handler with the reason and the traceback; it never
escapes into the batch job, whose re-run would deliver the batch again to every other handler.
Redis weather (unreachable, full, read-only) while settling is waited out (``app.weather``).
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar, cast

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry

from app import counters, weather
from app.backoff import jittered
from app.dm.asyncs import FOLLOW_UP_RETRY_INTERVALS
from app.stores import StoreLimits
from workers.deadletters import DeadLetters
from workers.events import Event
from workers.handlers.delivery import Failure, Lanes
from workers.handlers.router import Handler, Router
from workers.storable import dumps, refusal

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_PREFIX = "devicehooks:retry:"
RETRY_TTL = 14 * 24 * 3600
REDELIVER_FUNC = "workers.jobs.redeliver"
WRITE_DEADLINE = 300.0  # s a settling write waits out Redis weather (half the batch job's timeout)


def follow_up_retry() -> Retry:
    """Retry for jobs that carry stored events (redeliveries, replays): a worker killed while running one
    leaves it to RQ's abandoned-job handling, which only re-runs jobs with a Retry. The async-result
    delivery jobs get the same intervals from ``app.dm.asyncs`` (the tracker queues them itself)."""
    return Retry(max=len(FOLLOW_UP_RETRY_INTERVALS), interval=FOLLOW_UP_RETRY_INTERVALS)


def backoff_delay(handler: Handler, attempt: int) -> float:
    """Seconds before delivery ``attempt`` (2 = the first retry) of a handler, by its policy."""
    return jittered(attempt - 2, handler.policy.backoff, handler.policy.max_backoff)


def split_storable(events: list[Event]) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str]]]:
    """Events as JSON-ready dicts: those JSON can store, and the others with the reason it refuses them."""
    payload = [event.to_dict() for event in events]
    if refusal(payload) is None:
        return payload, []
    storable: list[dict[str, Any]] = []
    refused: list[tuple[dict[str, Any], str]] = []
    for item in payload:
        reason = refusal(item)
        if reason is None:
            storable.append(item)
        else:
            refused.append((item, reason))
    return storable, refused


class Dispatcher:
    """Delivers events through the lanes and makes every failure durable before returning."""

    def __init__(
        self, router: Router, lanes: Lanes, redis: Redis, queue: Queue, limits: StoreLimits | None = None
    ) -> None:
        self.router = router
        self.lanes = lanes
        self.redis = redis
        self.queue = queue
        self.dead = DeadLetters(redis, limits)
        self.outage = weather.Outage(logger, "delivery")
        self._never = threading.Event()

    def dispatch(self, events: list[Event], source: str) -> list[Failure]:
        """First delivery of a batch's events to every matching handler."""
        work = self.router.matching(events)
        failures = self._deliver_and_settle(work, 1, source)
        counters.count_dispatch(self.redis, events, work, failures)
        return failures

    def deliver_to(self, handler_name: str, events: list[Event], source: str) -> int:
        """Deliver events to one named handler, whatever its filters; return how many failed."""
        return self._deliver_named(handler_name, events, 1, source, "is not loaded")

    def redeliver(self, handler_name: str, key: str, attempt: int, source: str) -> int:
        """Deliver stored events to one handler again; return how many failed."""
        raw = self.durably(lambda: self.redis.get(key))
        if raw is None:
            logger.warning("redelivery %s to %s: the events are gone (already delivered?)", key, handler_name)
            return 0
        events = [Event.from_dict(item) for item in json.loads(raw)]
        failed = self._deliver_named(handler_name, events, attempt, source, "is no longer loaded")
        self.durably(lambda: self.redis.delete(key))
        return failed

    def _deliver_named(self, name: str, events: list[Event], attempt: int, source: str, gone: str) -> int:
        """Deliver to the handler called ``name``, or dead-letter the events when it is not loaded."""
        handler = self.router.get(name)
        if handler is None:
            error = f"handler {name!r} {gone}"
            self.dead_letter(name, [e.to_dict() for e in events], error, "", attempt, source)
            return len(events)
        failures = self._deliver_and_settle([(handler, events)], attempt, source)
        return sum(len(f.events) for f in failures)

    def _deliver_and_settle(
        self, work: list[tuple[Handler, list[Event]]], attempt: int, source: str
    ) -> list[Failure]:
        """The one path of every delivery: call the handlers, then settle each failure on its own."""
        failures = self.lanes.deliver(work)
        for failure in failures:
            if failure.events:
                self._settle_contained(failure, attempt, source)
        counters.count_settled(self.redis, failures, attempt)
        return failures

    def _settle_contained(self, failure: Failure, attempt: int, source: str) -> None:
        """Settle one handler's failure; anything but Redis weather that goes wrong dead-letters it."""
        try:
            self.settle(failure, attempt, source)
        except RedisError as exc:
            if weather.is_weather(exc):
                raise
            self._contain(failure, attempt, source, exc)
        except Exception as exc:
            self._contain(failure, attempt, source, exc)

    def _contain(self, failure: Failure, attempt: int, source: str, exc: Exception) -> None:
        """Dead-letter a failure whose settling raised, with that error and traceback."""
        error = f"settling raised {type(exc).__name__}: {exc}; the handler failed: {failure.error}"
        events = [event.to_dict() for event in failure.events]
        self.dead_letter(failure.handler.name, events, error, traceback.format_exc(), attempt, source)

    def settle(self, failure: Failure, attempt: int, source: str) -> None:
        """Schedule a retry of one failure, or dead-letter it after the handler's last attempt.

        Events JSON cannot store are dead-lettered at once (a retry job could not carry them).
        """
        handler = failure.handler
        if attempt >= handler.policy.attempts:
            payload = [event.to_dict() for event in failure.events]
            self.dead_letter(handler.name, payload, failure.error, failure.traceback, attempt, source)
            return
        storable, refused = split_storable(failure.events)
        if storable:
            self.schedule(handler, storable, attempt + 1, source, failure.error)
        if refused:
            reasons = "; ".join(dict.fromkeys(reason for _, reason in refused))
            error = f"cannot be stored for a retry ({reasons}); the handler failed with: {failure.error}"
            items = [item for item, _ in refused]
            self.dead_letter(handler.name, items, error, failure.traceback, attempt, source)

    def schedule(
        self, handler: Handler, events: list[dict[str, Any]], attempt: int, source: str, error: str
    ) -> str:
        """Store the events and schedule one redeliver job for this handler; return the job id."""
        delay = backoff_delay(handler, attempt)
        key = RETRY_PREFIX + uuid.uuid4().hex
        encoded = dumps(events)
        self.durably(lambda: self.redis.set(key, encoded, ex=RETRY_TTL))
        job = self.durably(
            lambda: self.queue.enqueue_in(
                timedelta(seconds=delay),
                REDELIVER_FUNC,
                handler.name,
                key,
                attempt,
                source,
                retry=follow_up_retry(),
                description=f"redeliver {len(events)} event(s) to {handler.name} (attempt {attempt})",
            )
        )
        logger.warning(
            "handler %s failed on %d event(s): %s; attempt %d in %.1f s (job %s)",
            handler.name, len(events), error, attempt, delay, job.id,
        )  # fmt: skip
        return str(job.id)

    def dead_letter(
        self, handler: str, events: list[dict[str, Any]], error: str, trace: str, attempt: int, source: str
    ) -> str:
        """Record a dead letter (waiting out Redis weather) and log it; return its id."""
        letter = self.durably(lambda: self.dead.add(handler, events, error, trace, attempt, source))
        logger.error(
            "handler %s: %d event(s) dead-lettered after %d attempt(s): %s; dead letter %s",
            handler, len(events), attempt, error, letter,
        )  # fmt: skip
        return letter

    def durably(self, action: Callable[[], T]) -> T:
        """Run one Redis call, waiting out weather up to WRITE_DEADLINE (then the error propagates)."""
        return cast(T, weather.retry(action, self._never, self.outage, deadline=WRITE_DEADLINE))


def replay(redis: Redis, queue: Queue, letter_id: str) -> str:
    """Re-deliver exactly what a dead letter holds, to its handler only; return the job id.

    KeyError when there is no such letter, ValueError when it holds only a truncated copy.
    """
    dead = DeadLetters(redis)
    letter = dead.get(letter_id)
    if letter is None:
        raise KeyError(letter_id)
    if "truncated" in letter:
        raise ValueError(f"dead letter {letter_id} kept only a truncated copy of its events: no replay")
    key = RETRY_PREFIX + uuid.uuid4().hex
    redis.set(key, dumps(letter["events"]), ex=RETRY_TTL)
    job = queue.enqueue(
        REDELIVER_FUNC,
        letter["handler"],
        key,
        1,
        f"replay of {letter_id}",
        retry=follow_up_retry(),
        description=f"replay {letter_id} to {letter['handler']}",
    )
    dead.remove(letter_id)
    return str(job.id)
