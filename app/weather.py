"""Redis weather: an unreachable, full (``OOM``) or read-only Redis is waited out, never a crash.

Measured on Redis 7 with ``maxmemory-policy noeviction``: every write that may grow memory answers
``OOM command not allowed`` while reads and ``DEL`` still work, so a ``PING`` says nothing about whether
work can resume; a replica (or a failover in progress) answers ``READONLY``; ``REPLICAOF`` unblocks a
blocked ``BLMOVE`` with ``UNBLOCKED``. Each of these passes on its own; a process that treats one as fatal
turns a minute of weather into an outage. :class:`Outage` says so once per outage (not once per retry)
and says when it is over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from redis import Redis
from redis.exceptions import (
    ConnectionError,
    ExecAbortError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TimeoutError,
)

from app.backoff import jittered

T = TypeVar("T")

WEATHER_ERRORS: tuple[type[RedisError], ...] = (
    ConnectionError,  # includes BusyLoadingError (Redis loading its dataset after a restart)
    TimeoutError,
    OutOfMemoryError,
    ReadOnlyError,
    ExecAbortError,  # a MULTI whose queued write was refused (OOM, READONLY)
)
_TRANSIENT_REPLIES = ("UNBLOCKED", "MASTERDOWN", "LOADING", "TRYAGAIN", "OOM", "READONLY")
PROBE_KEY = "devicehooks:weather:probe"
WAIT_BASE = 0.25  # s before the first retry
WAIT_MAX = 5.0  # s between retries at most


def is_weather(exc: BaseException) -> bool:
    """True for Redis errors that pass on their own: unreachable, loading, full, read-only, unblocked."""
    if isinstance(exc, WEATHER_ERRORS):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(_TRANSIENT_REPLIES)


class Outage:
    """Logs the start of a Redis outage once, and its end once, however many retries happen in between."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger = logger
        self.what = what
        self.since: float | None = None
        self.retries = 0

    def failed(self, exc: BaseException) -> None:
        """Note one failed attempt; the first of an outage is logged."""
        self.retries += 1
        if self.since is None:
            self.since = time.monotonic()
            self.logger.warning(
                "%s: Redis is unavailable (%s: %s); backing off and retrying until it is back",
                self.what, type(exc).__name__, exc,
            )  # fmt: skip

    def recovered(self) -> None:
        """Note a success; the first after an outage is logged."""
        if self.since is None:
            return
        self.logger.warning(
            "%s: Redis is back after %.1f s (%d retries); resuming",
            self.what, time.monotonic() - self.since, self.retries,
        )  # fmt: skip
        self.since = None
        self.retries = 0


def wait_until_writable(redis: Redis, stop: threading.Event, outage: Outage) -> bool:
    """Write a probe key with backoff until Redis takes writes again; False when a stop was requested."""
    return retry(lambda: bool(redis.set(PROBE_KEY, "1", ex=60)), stop, outage) is not None


def retry(
    action: Callable[[], T], stop: threading.Event, outage: Outage, deadline: float | None = None
) -> T | None:
    """Run ``action`` until it succeeds, backing off on weather errors; None when ``stop`` is set.

    Past ``deadline`` seconds the last weather error propagates; any other error propagates at once.
    """
    started = time.monotonic()
    attempt = 0
    while not stop.is_set():
        try:
            value = action()
        except RedisError as exc:
            if not is_weather(exc):
                raise
            outage.failed(exc)
            if deadline is not None and time.monotonic() - started >= deadline:
                raise
            stop.wait(jittered(attempt, WAIT_BASE, WAIT_MAX))
            attempt += 1
            continue
        outage.recovered()
        return value
    return None
