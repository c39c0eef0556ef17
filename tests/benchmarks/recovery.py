"""How long a job interrupted by a dead worker waits before it runs again (README, Delivery guarantees).

    python -m tests.benchmarks.recovery [--runs 5]

Each run: a private redis-server; a worker takes a one-notification batch whose handler blocks inside
the job (tests/fixtures/recovery_handlers.py); a second worker is idle; after a random 0-3 s (so the kill
falls anywhere between two recovery passes) the first is SIGKILLed with its scheduler child.
Pickup = the handler's second call minus the kill. Three cases, side by side with the limit each must meet:

- same host: the dead worker's pid is gone (limit 15 s);
- another machine: the dead worker runs in its own UTS namespace (``unshare --uts``, root), so its
  hostname differs and only its heartbeat expiring tells it is dead (limit 30 s);
- intermediate list: a job moved to ``rq:queue:NAME:intermediate`` by a worker that died before starting
  it; pickup counted from the moment a worker is started with it stuck (limit 15 s).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from redis import Redis

from app.batches import make_queue
from app.redis_server import RedisServer
from tests.fixtures.recovery_handlers import BLOCK
from tests.integration.test_recovery import HANDLERS, calls, enqueue, kill_tree, start_elsewhere
from tests.integration.workers import running_worker, start_worker, worker_env
from tests.support import stop, wait_until

LIMITS = {"same host": 15.0, "another machine": 30.0, "intermediate list": 15.0}


def _kill_case(redis: Redis, url: str, logs: Path, elsewhere: bool) -> float:
    """One kill mid-job; the pickup in seconds."""
    redis.flushdb()
    env = worker_env(url, HANDLERS)
    redis.set(BLOCK, 1)
    doomed = (
        start_elsewhere(env, logs / "doomed.log") if elsewhere else start_worker(env, logs / "doomed.log")
    )
    try:
        enqueue(redis)
        wait_until(lambda: calls(redis), 30, "the job to start")
        with running_worker(env, logs / "survivor.log"):
            wait_until(lambda: redis.scard("rq:workers") >= 2, 30, "the second worker")
            time.sleep(random.uniform(0, 3))  # a random phase against the 2 s recovery passes
            killed_at = kill_tree(doomed)
            wait_until(lambda: len(calls(redis)) == 2, 60, "the job running again")
            return float(calls(redis)[1]["t"]) - killed_at  # type: ignore[arg-type]
    finally:
        stop(doomed)


def _intermediate_case(redis: Redis, url: str, logs: Path) -> float:
    """A job stuck in the intermediate list; seconds from a worker's start to the job running."""
    redis.flushdb()
    queue = make_queue(redis, "test")
    enqueue(redis)
    redis.lmove(queue.key, queue.intermediate_queue_key)
    started = time.time()
    with running_worker(worker_env(url, HANDLERS), logs / "worker.log"):
        wait_until(lambda: calls(redis), 60, "the stuck job to run")
        return float(calls(redis)[0]["t"]) - started  # type: ignore[arg-type]


def main() -> None:
    """Run each case ``--runs`` times; print medians and maxima beside the limits."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="devicehooks-recovery-"))
    server = RedisServer(directory=str(logs / "redis")).start()
    redis = Redis.from_url(server.url, socket_timeout=None)
    cases: dict[str, Callable[[], float]] = {
        "same host": lambda: _kill_case(redis, server.url, logs, elsewhere=False),
        "another machine": lambda: _kill_case(redis, server.url, logs, elsewhere=True),
        "intermediate list": lambda: _intermediate_case(redis, server.url, logs),
    }
    try:
        print("| case | runs | median s | max s | limit s | median / limit |")
        print("|---|---|---|---|---|---|")
        for name, case in cases.items():
            pickups = [case() for _ in range(args.runs)]
            median = statistics.median(pickups)
            print(
                f"| {name} | {len(pickups)} | {median:.2f} | {max(pickups):.2f} | {LIMITS[name]:g} "
                f"| {median / LIMITS[name]:.2f} |",
                flush=True,
            )
    finally:
        redis.close()
        server.stop()


if __name__ == "__main__":
    main()
