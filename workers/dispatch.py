"""Fan-out with durability: deliver events to handlers, retry failures with backoff, then dead-letter.

A batch costs one RQ job however many events it has; each handler that fails costs one more
(a scheduled ``redeliver`` job carrying just that handler's failed events), so the number of
jobs per batch never grows with the number of events.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from datetime import timedelta
from typing import Any

from redis import Redis
from rq import Queue, Retry

from app import counters
from workers.deadletters import DeadLetters
from workers.events import Event
from workers.handlers.delivery import Failure, Lanes
from workers.handlers.router import Handler, Router

logger = logging.getLogger(__name__)

RETRY_PREFIX = "devicehooks:retry:"
RETRY_TTL = 14 * 24 * 3600
REDELIVER_FUNC = "workers.jobs.redeliver"
FOLLOW_UP_RETRY_INTERVALS = [5, 30, 120]


def follow_up_retry() -> Retry:
    """Retry for jobs that carry stored events (redeliveries, replays, async results): a worker killed
    while running one leaves it to RQ's abandoned-job handling, which only re-runs jobs with a Retry."""
    return Retry(max=len(FOLLOW_UP_RETRY_INTERVALS), interval=FOLLOW_UP_RETRY_INTERVALS)


def backoff_delay(handler: Handler, attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: base * 2**(attempt-1), between half and all of it, capped."""
    policy = handler.policy
    ceiling = min(policy.max_backoff, policy.backoff * 2 ** max(attempt - 1, 0))
    return (rng or random).uniform(ceiling / 2, ceiling)


class Dispatcher:
    """Delivers events through the lanes and makes every failure durable before returning."""

    def __init__(self, router: Router, lanes: Lanes, redis: Redis, queue: Queue) -> None:
        self.router = router
        self.lanes = lanes
        self.redis = redis
        self.queue = queue
        self.dead = DeadLetters(redis)

    def dispatch(self, events: list[Event], source: str) -> list[Failure]:
        """First delivery of a batch's events to every matching handler."""
        work = self.router.matching(events)
        failures = self.lanes.deliver(work)
        self.settle(failures, attempt=1, source=source)
        counters.count_dispatch(self.redis, events, work, failures)
        return failures

    def deliver_to(self, handler_name: str, events: list[Event], source: str) -> int:
        """Deliver events to one named handler, whatever its filters; return how many failed."""
        handler = self.router.get(handler_name)
        if handler is None:
            error = f"handler {handler_name!r} is not loaded"
            self.dead.add(handler_name, [e.to_dict() for e in events], error, "", 1, source)
            logger.error("%s; %d event(s) dead-lettered", error, len(events))
            return len(events)
        failures = self.lanes.deliver([(handler, events)])
        self.settle(failures, attempt=1, source=source)
        return sum(len(f.events) for f in failures)

    def settle(self, failures: list[Failure], attempt: int, source: str) -> None:
        """Schedule a retry for each failure, or dead-letter it after the handler's last attempt."""
        for failure in failures:
            if not failure.events:
                continue
            payload = [event.to_dict() for event in failure.events]
            if attempt >= failure.handler.policy.attempts:
                letter = self.dead.add(
                    failure.handler.name, payload, failure.error, failure.traceback, attempt, source
                )
                logger.error(
                    "handler %s failed %d time(s) on %d event(s): %s; dead letter %s",
                    failure.handler.name, attempt, len(payload), failure.error, letter,
                )  # fmt: skip
            else:
                self.schedule(failure.handler, payload, attempt + 1, source, failure.error)
        counters.count_settled(self.redis, failures, attempt)

    def schedule(
        self, handler: Handler, events: list[dict[str, Any]], attempt: int, source: str, error: str
    ) -> str:
        """Store the events and schedule one redeliver job for this handler; return the job id."""
        delay = backoff_delay(handler, attempt - 1)
        key = RETRY_PREFIX + uuid.uuid4().hex
        self.redis.set(key, json.dumps(events), ex=RETRY_TTL)
        job = self.queue.enqueue_in(
            timedelta(seconds=delay),
            REDELIVER_FUNC,
            handler.name,
            key,
            attempt,
            source,
            retry=follow_up_retry(),
            description=f"redeliver {len(events)} event(s) to {handler.name} (attempt {attempt})",
        )
        logger.warning(
            "handler %s failed on %d event(s): %s; attempt %d in %.1f s (job %s)",
            handler.name, len(events), error, attempt, delay, job.id,
        )  # fmt: skip
        return str(job.id)

    def redeliver(self, handler_name: str, key: str, attempt: int, source: str) -> int:
        """Deliver stored events to one handler again; return how many failed."""
        raw = self.redis.get(key)
        if raw is None:
            logger.warning("redelivery %s to %s: the events are gone (already delivered?)", key, handler_name)
            return 0
        events = [Event.from_dict(item) for item in json.loads(raw)]
        handler = self.router.get(handler_name)
        if handler is None:
            error = f"handler {handler_name!r} is no longer loaded"
            self.dead.add(handler_name, json.loads(raw), error, "", attempt, source)
            self.redis.delete(key)
            logger.error("redelivery: %s; %d event(s) dead-lettered", error, len(events))
            return len(events)
        failures = self.lanes.deliver([(handler, events)])
        self.settle(failures, attempt, source)
        self.redis.delete(key)
        return sum(len(f.events) for f in failures)


def replay(redis: Redis, queue: Queue, letter_id: str) -> str:
    """Re-deliver exactly what a dead letter holds, to its handler only; return the job id."""
    dead = DeadLetters(redis)
    letter = dead.get(letter_id)
    if letter is None:
        raise KeyError(letter_id)
    key = RETRY_PREFIX + uuid.uuid4().hex
    redis.set(key, json.dumps(letter["events"]), ex=RETRY_TTL)
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
