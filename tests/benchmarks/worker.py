"""Worker benchmark, side by side in one run:

    python -m tests.benchmarks.worker [--batches 30] [--items 1000] [--rounds 3]

1. parse + validate + decode per item (workers.batch.parse_batch) vs a plain json + base64 + float
   loop over the same bodies, and vs the marshmallow schema alone;
2. the whole worker path: RQ job -> parse -> validate -> decode -> dispatch to one no-op handler,
   by a real ``devicehooks worker --burst`` process on a private Redis, in notifications/s, beside
   the plain loop's rate in the same run.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from app.batches import BatchQueue
from tests.benchmarks.common import median, private_redis
from tests.benchmarks.payloads import notification_batch
from workers.batch import parse_batch
from workers.decoding import default_object_model
from workers.events import Event
from workers.schemas import load_item

ROOT = Path(__file__).resolve().parents[2]


def plain_loop(bodies: list[bytes]) -> int:
    """The floor: json.loads, base64 and float per item, nothing else."""
    count = 0
    for body in bodies:
        for item in json.loads(body)["notifications"]:
            float(base64.b64decode(item["payload"]))
            count += 1
    return count


def ours(bodies: list[bytes]) -> int:
    """parse + validate + decode into Events."""
    model = default_object_model()
    return sum(len(parse_batch(body, model).events) for body in bodies)


def marshmallow_only(bodies: list[bytes]) -> int:
    """Validation by the marshmallow schema for every item (no fast path, no decoding)."""
    count = 0
    for body in bodies:
        for item in json.loads(body)["notifications"]:
            Event(kind="notifications", **load_item("notifications", item))
            count += 1
    return count


def per_item_us(func: object, bodies: list[bytes], rounds: int) -> float:
    """Median µs per item over rounds."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        items = func(bodies)  # type: ignore[operator]
        times.append((time.perf_counter() - start) / items * 1e6)
    return median(times)


def worker_rate(redis_url: str, bodies: list[bytes]) -> tuple[float, float]:
    """Notifications/s and jobs/s of one burst worker over the queued bodies (first start to last end)."""
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    queue = BatchQueue(redis, "bench")
    ids = [queue.enqueue(body, f"bench-{i}") for i, body in enumerate(bodies)]
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DEVICEHOOKS_QUEUE": "bench",
        "HANDLERS": "tests.benchmarks.noop_handler",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    subprocess.run([sys.executable, "-m", "app", "worker", "--burst"], env=env, check=True, cwd=ROOT)
    jobs = [Job.fetch(job_id, connection=redis, serializer=JSONSerializer) for job_id in ids]
    if any(job.get_status().value != "finished" for job in jobs):
        raise RuntimeError("not every benchmark job finished")
    started = min(job.started_at for job in jobs if job.started_at)
    ended = max(job.ended_at for job in jobs if job.ended_at)
    seconds = (ended - started).total_seconds()
    items = sum(len(json.loads(body)["notifications"]) for body in bodies)
    Queue("bench", connection=redis, serializer=JSONSerializer).empty()
    return items / seconds, len(bodies) / seconds


def main() -> None:
    """Run both parts and print markdown tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bodies = [notification_batch(args.items) for _ in range(args.batches)]
    default_object_model()

    plain = per_item_us(plain_loop, bodies, args.rounds)
    mine = per_item_us(ours, bodies, args.rounds)
    schema = per_item_us(marshmallow_only, bodies[:5], args.rounds)
    print(f"{args.batches} batches x {args.items:,} notifications, median of {args.rounds} rounds\n")
    print("| per notification item | µs | vs plain loop |\n|---|---|---|")
    print(f"| plain json + base64 + float loop | {plain:.2f} | 1.00 |")
    print(f"| devicehooks parse + validate + decode | {mine:.2f} | {mine / plain:.2f} |")
    print(f"| marshmallow schema alone (validate only) | {schema:.2f} | {schema / plain:.2f} |\n")

    with private_redis() as server:
        rates = [worker_rate(server.url, bodies) for _ in range(args.rounds)]
    items_rate = median([r[0] for r in rates])
    jobs_rate = median([r[1] for r in rates])
    plain_rate = 1e6 / plain
    print("| whole worker path, 1 process, 1 no-op handler | notifications/s |\n|---|---|")
    print(f"| plain loop (same run) | {plain_rate:,.0f} |")
    print(f"| devicehooks worker (RQ job + parse + decode + dispatch) | {items_rate:,.0f} |")
    print(f"| ratio | {items_rate / plain_rate:.2f} |\n")
    print(f"({jobs_rate:.0f} batch jobs/s)")


if __name__ == "__main__":
    main()
