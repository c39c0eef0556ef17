"""Worker benchmark, side by side in one run:

    python -m tests.benchmarks.worker [--batches 30] [--items 1000] [--rounds 3] [--sdk]

1. parse + validate + decode per item (workers.batch.parse_batch) vs a plain json + base64 + float
   loop over the same bodies, and vs the marshmallow schema alone;
2. the whole worker path: RQ job -> parse -> validate -> decode -> dispatch to one no-op handler,
   by a real ``devicehooks worker --burst`` process on a private Redis, in notifications/s, beside
   the plain loop's rate in the same run;
3. with ``--sdk``: mbed-cloud-sdk 2.2.0's ``notify_webhook_received`` on the same bodies (sdk.py).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from app.batches import BatchQueue
from tests.benchmarks import sdk
from tests.benchmarks.common import median, private_redis
from tests.benchmarks.payloads import notification_batch
from tests.benchmarks.sdk import SdkResult
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


@dataclass
class WorkerResults:
    """Per-item costs (µs) and whole-worker rates of one run."""

    batches: int
    items: int
    rounds: int
    plain_us: float = 0.0
    ours_us: float = 0.0
    schema_us: float = 0.0
    worker_rate: float = 0.0
    jobs_rate: float = 0.0
    sdk: SdkResult | None = None


def measure_per_item(bodies: list[bytes], rounds: int) -> tuple[float, float, float]:
    """µs per item: plain loop, devicehooks parse + validate + decode, marshmallow alone."""
    default_object_model()
    plain = per_item_us(plain_loop, bodies, rounds)
    mine = per_item_us(ours, bodies, rounds)
    schema = per_item_us(marshmallow_only, bodies[:5], rounds)
    return plain, mine, schema


def measure_worker(bodies: list[bytes], rounds: int) -> tuple[float, float]:
    """Median notifications/s and batch jobs/s of a burst worker over the bodies."""
    with private_redis() as server:
        rates = [worker_rate(server.url, bodies) for _ in range(rounds)]
    return median([r[0] for r in rates]), median([r[1] for r in rates])


def run(batches: int = 30, items: int = 1000, rounds: int = 3, with_sdk: bool = False) -> WorkerResults:
    """Every part on the same bodies, in one run (the SDK only when asked)."""
    bodies = [notification_batch(items) for _ in range(batches)]
    results = WorkerResults(batches, items, rounds)
    results.plain_us, results.ours_us, results.schema_us = measure_per_item(bodies, rounds)
    if with_sdk:
        results.sdk = sdk.measure(bodies, rounds)
    results.worker_rate, results.jobs_rate = measure_worker(bodies, rounds)
    return results


def per_item_markdown(r: WorkerResults) -> str:
    """The per-item table (with the SDK row when it was measured)."""
    lines = [
        f"{r.batches} batches x {r.items:,} notifications, median of {r.rounds} rounds\n",
        "| per notification item | µs | vs plain loop |",
        "|---|---|---|",
        f"| plain json + base64 + float loop | {r.plain_us:.2f} | 1.00 |",
        f"| devicehooks parse + validate + decode | {r.ours_us:.2f} | {r.ours_us / r.plain_us:.2f} |",
        f"| marshmallow schema alone (validate only) | {r.schema_us:.2f} | {r.schema_us / r.plain_us:.2f} |",
    ]
    if r.sdk is not None:
        name = "mbed-cloud-sdk 2.2.0 `notify_webhook_received`"
        if r.sdk.sdk_us is None or r.sdk.plain_us is None:
            lines.append(f"| {name} | {r.sdk.error} | |")
        else:
            ratio = r.sdk.sdk_us / r.sdk.plain_us
            lines.append(f"| {name} (its own process) | {r.sdk.sdk_us:.2f} | {ratio:.2f} |")
            lines.append(f"| plain loop in the SDK's process | {r.sdk.plain_us:.2f} | 1.00 |")
    return "\n".join(lines) + "\n"


def worker_markdown(r: WorkerResults) -> str:
    """The whole-worker-path table."""
    plain_rate = 1e6 / r.plain_us
    return (
        "| whole worker path, 1 process, 1 no-op handler | notifications/s |\n|---|---|\n"
        f"| plain loop (same run) | {plain_rate:,.0f} |\n"
        f"| devicehooks worker (RQ job + parse + decode + dispatch) | {r.worker_rate:,.0f} |\n"
        f"| ratio | {r.worker_rate / plain_rate:.2f} |\n\n({r.jobs_rate:.0f} batch jobs/s)\n"
    )


def main() -> None:
    """Run every part and print markdown tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sdk", action="store_true", help="also time mbed-cloud-sdk 2.2.0 (venv in /tmp)")
    args = parser.parse_args()
    results = run(args.batches, args.items, args.rounds, with_sdk=args.sdk)
    print(per_item_markdown(results))
    print(worker_markdown(results))


if __name__ == "__main__":
    main()
