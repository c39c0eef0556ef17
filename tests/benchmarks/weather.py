"""How soon delivery resumes after Redis weather ends: a full Redis freed, a READONLY blip over.

    python -m tests.benchmarks.weather [--runs 5]

Each run starts a private redis-server (``noeviction``) and a real worker (``devicehooks worker``).
- full: a batch is in hand when Redis is filled (the handler's write fails under OOM, its retry must be
  stored); the time from freeing the fillers to the held event's delivery is measured;
- readonly: ``REPLICAOF`` a port nobody answers on, wait until the worker says so, ``REPLICAOF NO ONE``;
  the time from then to the delivery of a batch queued at that instant is measured;
- baseline: the first batch on a healthy Redis, queued to delivered (the worker's start included).
The limit beside them is the longest backoff between retries (``app.weather.WAIT_MAX``).
"""

from __future__ import annotations

import argparse
import base64
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from redis import Redis

from app import weather
from app.batches import BatchQueue
from app.redis_server import RedisServer, free_port
from tests.benchmarks.common import median, product_env, start_worker
from tests.fixtures.weather_handlers import ENTERED, GOT, HOLD
from tests.integration.test_weather import FILLER, fill
from tests.support import stop, wait_until

QUEUE = "bench"


def _batch(uid: str) -> bytes:
    """One notification with uid."""
    item = {"ep": "e", "path": "/3303/0/5700", "payload": base64.b64encode(b"1").decode(), "uid": uid}
    return json.dumps({"notifications": [item]}).encode()


def _delivered(redis: Redis, handler: str, uid: str) -> Callable[[], bool]:
    """Predicate: handler recorded uid."""
    return lambda: uid.encode() in redis.lrange(GOT + handler, 0, -1)


def one_run(directory: Path) -> dict[str, float]:
    """Baseline, full and readonly resume times of one run, in seconds."""
    server = RedisServer(directory=str(directory / "redis")).start()
    redis = Redis.from_url(server.url, socket_timeout=10)
    redis.config_set("maxmemory-policy", "noeviction")
    env = product_env(server.url, "tests.fixtures.weather_handlers:held", QUEUE)
    log = directory / "worker.log"
    proc = start_worker(env, log)
    batches = BatchQueue(redis, QUEUE)
    try:
        started = time.monotonic()
        batches.enqueue(_batch("base"), "base")
        wait_until(_delivered(redis, "hold", "base"), 30, "the baseline batch")
        baseline = time.monotonic() - started
        redis.set(HOLD, "1")
        batches.enqueue(_batch("full"), "full")
        wait_until(lambda: redis.llen(ENTERED) >= 1, 30, "the held batch")
        fill(redis)
        redis.delete(HOLD)
        wait_until(lambda: "delivery: Redis is unavailable" in log.read_text(), 30, "the outage")
        started = time.monotonic()
        redis.delete(*redis.keys(FILLER + "*"))
        wait_until(_delivered(redis, "hold", "full"), 60, "the held event")
        full = time.monotonic() - started
        redis.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        wait_until(lambda: "worker: Redis is unavailable" in log.read_text(), 30, "the blip")
        redis.execute_command("REPLICAOF", "NO", "ONE")
        started = time.monotonic()
        batches.enqueue(_batch("ro"), "ro")
        wait_until(_delivered(redis, "every", "ro"), 60, "the batch after the blip")
        readonly = time.monotonic() - started
        return {"baseline": baseline, "full": full, "readonly": readonly}
    finally:
        stop(proc)
        redis.close()
        server.stop()


def main() -> None:
    """Run, then print medians beside the backoff limit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = []
    for n in range(args.runs):
        with tempfile.TemporaryDirectory(prefix=f"weather-{n}-") as directory:
            runs.append(one_run(Path(directory)))
        print(json.dumps({k: round(v, 3) for k, v in runs[-1].items()}))
    limit = weather.WAIT_MAX
    for name in ("baseline", "full", "readonly"):
        values = [run[name] for run in runs]
        print(
            f"{name:>9}: median {median(values):.3f} s, max {max(values):.3f} s "
            f"(limit {limit:.1f} s: median/limit {median(values) / limit:.2f})"
        )


if __name__ == "__main__":
    main()
