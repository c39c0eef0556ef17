"""The workers' counters, kept in Redis (one pipeline per batch) so that /metrics and the status page
see every worker, on whatever machine it runs. Shared core: no Flask, no prometheus-client here."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from app.redis_conn import text

logger = logging.getLogger(__name__)
COUNTERS = "devicehooks:metrics:counters"
MINUTE_PREFIX = "devicehooks:metrics:minute:"
MINUTE_TTL = 2 * 3600
LAST_BATCH = "last_batch_at"


def minute_key(now: float) -> str:
    """The per-minute counters of the minute holding ``now``."""
    return f"{MINUTE_PREFIX}{int(now // 60)}"


def count_dispatch(
    redis: Redis, events: Sequence[Any], work: Sequence[tuple[Any, Sequence[Any]]], failures: Sequence[Any]
) -> None:
    """Count one dispatched batch: events by kind, and per handler what was delivered and what failed.

    ``work`` pairs each handler with its events and ``failures`` have ``handler`` and ``events``, as in
    ``workers.dispatch`` (duck-typed: this module is shared with the web side, which never imports workers).
    """
    failed: dict[str, int] = {}
    for failure in failures:
        failed[failure.handler.name] = failed.get(failure.handler.name, 0) + len(failure.events)
    delivered = {handler.name: len(matched) - failed.get(handler.name, 0) for handler, matched in work}
    try:
        count_batch(redis, [event.kind for event in events], delivered, failed)
    except RedisError as exc:  # counting is best effort: failing the job would redeliver every event
        logger.warning("batch not counted: Redis unavailable (%s)", type(exc).__name__)


def count_batch(
    redis: Redis,
    kinds: Iterable[str],
    delivered: dict[str, int],
    failed: dict[str, int],
    now: float | None = None,
) -> None:
    """Count a batch in one pipeline: its events by kind, and per handler what was delivered and failed."""
    now = time.time() if now is None else now
    by_kind: dict[str, int] = {}
    for kind in kinds:
        by_kind[kind] = by_kind.get(kind, 0) + 1
    pipe = redis.pipeline(transaction=False)
    pipe.hincrby(COUNTERS, "batches", 1)
    for kind, count in by_kind.items():
        pipe.hincrby(COUNTERS, f"events:{kind}", count)
    for name, count in delivered.items():
        pipe.hincrby(COUNTERS, f"delivered:{name}", count)
    for name, count in failed.items():
        pipe.hincrby(COUNTERS, f"failed:{name}", count)
    pipe.hset(COUNTERS, LAST_BATCH, repr(now))
    minute = minute_key(now)
    pipe.hincrby(minute, "batches", 1)
    pipe.hincrby(minute, "events", sum(by_kind.values()))
    pipe.expire(minute, MINUTE_TTL)
    pipe.execute()


def count_settled(redis: Redis, failures: Sequence[Any], attempt: int) -> None:
    """Count handler failures as retries scheduled or dead letters (no I/O when there are none)."""
    pipe = None
    for failure in failures:
        if not failure.events:
            continue
        what = "dead_letters" if attempt >= failure.handler.policy.attempts else "retries"
        pipe = pipe or redis.pipeline(transaction=False)
        pipe.hincrby(COUNTERS, f"{what}:{failure.handler.name}", 1)
    if pipe is not None:
        try:
            pipe.execute()
        except RedisError as exc:  # best effort, as in count_dispatch
            logger.warning("retries and dead letters not counted: Redis unavailable (%s)", type(exc).__name__)


def worker_counters(redis: Redis) -> dict[str, str]:
    """Every worker counter, by field name."""
    return {text(k): text(v) for k, v in redis.hgetall(COUNTERS).items()}


def per_handler(counters: dict[str, str]) -> dict[str, dict[str, int]]:
    """handler -> {delivered, failed, retries, dead_letters}."""
    out: dict[str, dict[str, int]] = {}
    for field, value in counters.items():
        what, _, name = field.partition(":")
        if what in ("delivered", "failed", "retries", "dead_letters") and name:
            row = out.setdefault(name, {"delivered": 0, "failed": 0, "retries": 0, "dead_letters": 0})
            row[what] = int(value)
    return out


def minute_counts(redis: Redis, now: float | None = None) -> dict[str, dict[str, int]]:
    """Batches and events in the previous (complete) minute and in this minute so far."""
    now = time.time() if now is None else now
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(minute_key(now - 60))
    pipe.hgetall(minute_key(now))
    out = {}
    for name, raw in zip(("previous", "current"), pipe.execute(), strict=True):
        counts = {text(k): int(v) for k, v in raw.items()}
        out[name] = {"batches": counts.get("batches", 0), "events": counts.get("events", 0)}
    return out
