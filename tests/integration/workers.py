"""Real worker processes for integration tests: started with an environment, stopped by pid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from redis import Redis

from tests.fixtures.handlers import RECEIVED
from tests.support import stop

ROOT = Path(__file__).resolve().parents[2]


def worker_env(redis_url: str, handlers: str, queue: str = "test") -> dict[str, str]:
    """Environment for a worker process of the test suite."""
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "HANDLERS": handlers,
        "DEVICEHOOKS_QUEUE": queue,
        "LOG_LEVEL": "INFO",
        "PYTHONPATH": str(ROOT),
    }


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``devicehooks worker`` (as ``python -m app worker``)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app", "worker"], env=env, stdout=out, stderr=out, cwd=ROOT
        )


@contextmanager
def running_worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A worker for the duration of a with-block."""
    proc = start_worker(env, log)
    try:
        yield proc
    finally:
        stop(proc)


def take(redis: Redis, handler: str, count: int, timeout: float = 20) -> list[dict[str, object]]:
    """Wait (BLPOP) for ``count`` records from a fixture handler; fail with what arrived."""
    got: list[dict[str, object]] = []
    for _ in range(count):
        item = redis.blpop([RECEIVED + handler], timeout=timeout)
        if item is None:
            raise AssertionError(f"{handler} received {len(got)} of {count} within {timeout} s")
        got.append(json.loads(item[1]))
    return got


def wait_for_list(redis: Redis, key: str, timeout: float = 20) -> bytes:
    """BLPOP one item from key, or fail."""
    item = redis.blpop([key], timeout=timeout)
    if item is None:
        raise AssertionError(f"nothing arrived on {key} within {timeout} s")
    return bytes(item[1])
