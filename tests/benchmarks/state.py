"""State benchmark, side by side in one run:

    python -m tests.benchmarks.state [--seconds 5] [--rounds 3] [--devices 10000]
                                     [--parts ack,worker,api,memory]

1. Ack throughput of 1-item PUTs (wrk) with the state, API, metrics and status page on
   (``STATE=on``, ``MANAGEMENT_API_KEYS`` set) vs off (``STATE=off``, no keys), rounds alternating, and
   on again while a client lists 1,000 devices (seeded before the round) from the API once a second;
2. worker notifications/s (a burst ``devicehooks worker`` on the same queued batches) with the state
   handler on vs off, rounds alternating;
3. ``GET /api/v1/devices?limit=1000`` p50/p99 with ``--devices`` devices in the store;
4. Redis memory per device (registration with 3 resources, one value, two history entries) and per
   further history entry (``INFO memory`` deltas).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from app import state
from app.batches import BatchQueue
from app.redis_server import free_port
from tests.benchmarks.ack import wrk_rate
from tests.benchmarks.common import median, percentile, private_redis, product_env, start_web
from tests.benchmarks.payloads import notification_batch
from tests.support import stop
from workers.events import Event
from workers.handlers.state import StateWriter
from workers.testing import make_event

ROOT = Path(__file__).resolve().parents[2]
KEY = "benchmark-management-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
LISTED = 1000  # devices the on+api round's client lists, and seeds first


@dataclass
class StateResults:
    """Every figure of one run."""

    ack: dict[str, list[float]] = field(default_factory=dict)
    worker: dict[str, list[float]] = field(default_factory=dict)
    list_ms: list[float] = field(default_factory=list)
    deep_ms: list[float] = field(default_factory=list)
    bytes_per_device: float = 0.0
    bytes_per_entry: float = 0.0
    devices: int = 0


def web_env(redis_url: str, on: bool, metrics_dir: Path) -> dict[str, str]:
    """The web process with everything on, or with the state and keys off."""
    extra = {"STATE": "on", "MANAGEMENT_API_KEYS": KEY} if on else {"STATE": "off"}
    env = product_env(redis_url, "tests.benchmarks.noop_handler", LOG_LEVEL="WARNING", **extra)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    if not on:
        env.pop("MANAGEMENT_API_KEYS", None)
    return env


@dataclass
class Polls:
    """What the API client of an on+api round got: pages of 1,000 devices, and every failure."""

    listed: int = 0
    failures: list[str] = field(default_factory=list)


def poll_api(base: str, stop_event: threading.Event, polls: Polls) -> None:
    """List 1,000 devices once a second until stopped; a page without 1,000 devices is a failure."""
    while not stop_event.wait(1.0):
        try:
            response = requests.get(f"{base}/api/v1/devices?limit={LISTED}", headers=AUTH, timeout=10)
            response.raise_for_status()
            count = len(response.json()["data"])
        except Exception as exc:  # recorded: the round fails on it after wrk
            polls.failures.append(f"{type(exc).__name__}: {exc}")
            continue
        if count == LISTED:
            polls.listed += 1
        else:
            polls.failures.append(f"a page of {count} devices, not {LISTED}")


def ack_round(redis_url: str, label: str, seconds: int, tmp: Path) -> float:
    """One wrk round against a fresh web process in the given configuration."""
    on = label != "off"
    port = free_port()
    web = start_web(web_env(redis_url, on, tmp / f"metrics-{label}-{port}"), port, tmp / "web.log")
    poller_stop, polls = threading.Event(), Polls()
    poller = threading.Thread(
        target=poll_api, args=(f"http://127.0.0.1:{port}", poller_stop, polls), daemon=True
    )
    try:
        if label == "on+api":
            poller.start()
        rate = wrk_rate(f"http://127.0.0.1:{port}/notify", notification_batch(1), seconds, 8)[0]
    finally:
        poller_stop.set()
        if poller.is_alive():
            poller.join()
        stop(web)
    if label == "on+api" and (polls.failures or not polls.listed):
        raise RuntimeError(
            f"the API client listed {polls.listed} pages of {LISTED} devices; failures: {polls.failures}"
        )
    return rate


def worker_round(redis_url: str, bodies: list[bytes], on: bool) -> float:
    """Notifications/s of one burst worker over the bodies, state handler on or off."""
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    queue = BatchQueue(redis, "bench")
    ids = [queue.enqueue(body, f"bench-{i}") for i, body in enumerate(bodies)]
    env = {
        **product_env(redis_url, "tests.benchmarks.noop_handler", LOG_LEVEL="WARNING"),
        "STATE": "on" if on else "off",
    }
    subprocess.run([sys.executable, "-m", "app", "worker", "--burst"], env=env, check=True, cwd=ROOT)
    jobs = [Job.fetch(job_id, connection=redis, serializer=JSONSerializer) for job_id in ids]
    if any(job.get_status().value != "finished" for job in jobs):
        raise RuntimeError("not every benchmark job finished")
    if on and state.device_count(redis) == 0:
        raise RuntimeError("the state handler recorded nothing")
    started = min(job.started_at for job in jobs if job.started_at)
    ended = max(job.ended_at for job in jobs if job.ended_at)
    items = len(bodies) * 1000
    return items / (ended - started).total_seconds()


def seed(redis: Redis, devices: int) -> None:
    """``devices`` registered devices with three resources, one value and two history entries each."""
    writer = StateWriter(redis, state.Bounds())
    resources = [{"path": p, "obs": True} for p in ("/3303/0/5700", "/3304/0/5700", "/3/0/0")]
    for start in range(0, devices, 1000):
        eps = [f"dev-{i:06d}" for i in range(start, min(start + 1000, devices))]
        events = [
            Event(kind="registrations", ep=ep, ept="Sensor", q=False, resources=resources) for ep in eps
        ]
        events += [
            make_event(ep=ep, path="/3303/0/5700", ct="text/plain", payload="21.5", uid="u") for ep in eps
        ]
        writer.write(events)


def used_memory(redis: Redis) -> int:
    """Redis's used_memory."""
    return int(redis.info("memory")["used_memory"])


def measure_memory(redis: Redis, devices: int, results: StateResults) -> None:
    """Bytes per device, and per further history entry (100 more on each of 500 devices)."""
    redis.flushdb()
    before = used_memory(redis)
    seed(redis, devices)
    results.bytes_per_device = (used_memory(redis) - before) / devices
    writer = StateWriter(redis, state.Bounds())
    sample = [f"dev-{i:06d}" for i in range(min(devices, 500))]
    before = used_memory(redis)
    for round_ in range(100):
        value = f"{20 + round_ / 10:.1f}"
        writer.write(
            [make_event(ep=ep, path="/3303/0/5700", ct="text/plain", payload=value, uid="u") for ep in sample]
        )
    results.bytes_per_entry = (used_memory(redis) - before) / (100 * len(sample))


def measure_api(redis_url: str, count: int, results: StateResults, tmp: Path) -> None:
    """p50/p99 of the first page and of a deep page of 1,000 devices."""
    port = free_port()
    web = start_web(web_env(redis_url, True, tmp / "metrics-api"), port, tmp / "web.log")
    base = f"http://127.0.0.1:{port}/api/v1/devices?limit=1000"
    deep = f"{base}&after=dev-{results.devices - 1001:06d}"
    try:
        with requests.Session() as session:
            session.get(base, headers=AUTH, timeout=30).raise_for_status()
            for _ in range(count):
                for url, out in ((base, results.list_ms), (deep, results.deep_ms)):
                    started = time.perf_counter()
                    response = session.get(url, headers=AUTH, timeout=30)
                    out.append((time.perf_counter() - started) * 1000)
                    if len(response.json()["data"]) != 1000:
                        raise RuntimeError("the page does not hold 1,000 devices")
    finally:
        stop(web)


PARTS = ("ack", "worker", "api", "memory")


def run(seconds: int, rounds: int, devices: int, tmp: Path, parts: tuple[str, ...] = PARTS) -> StateResults:
    """The chosen parts (every one by default), in one run, on one private Redis."""
    results = StateResults(devices=devices)
    bodies = [notification_batch(1000) for _ in range(20)]
    with private_redis() as server:
        labels = ["on", "off", "on+api"]
        for index in range(rounds):  # the order rotates, so no configuration always goes first
            for label in labels[index % 3 :] + labels[: index % 3] if "ack" in parts else ():
                Redis.from_url(server.url).flushdb()
                if label == "on+api":  # a real store to list, not an empty one
                    seed(Redis.from_url(server.url), LISTED)
                results.ack.setdefault(label, []).append(ack_round(server.url, label, seconds, tmp))
            for on in ((True, False) if index % 2 == 0 else (False, True)) if "worker" in parts else ():
                rate = worker_round(server.url, bodies, on)
                results.worker.setdefault("on" if on else "off", []).append(rate)
        redis = Redis.from_url(server.url)
        if "memory" in parts:
            measure_memory(redis, devices, results)
        if "api" in parts:
            redis.flushdb()
            seed(redis, devices)
            measure_api(server.url, 50, results, tmp)
    return results


def ack_table(r: StateResults, seconds: int, rounds: int) -> list[str]:
    """The ack table."""
    ack_on, ack_off, ack_api = (median(r.ack[k]) for k in ("on", "off", "on+api"))
    return [
        "Ack: gunicorn 2 x gthread 32 (Procfile web), wrk 1 thread 8 connections, "
        f"{rounds} alternating rounds of {seconds} s",
        "",
        "| configuration | 1-item PUT/s (median) | vs off |",
        "|---|---|---|",
        f"| state, API, metrics, status page off | {ack_off:,.0f} | 1.00 |",
        *(f"| (every round: {k}) | {', '.join(f'{v:,.0f}' for v in r.ack[k])} | |" for k in r.ack),
        f"| all on | {ack_on:,.0f} | {ack_on / ack_off:.2f} |",
        f"| all on, API listing 1,000 devices every second | {ack_api:,.0f} | {ack_api / ack_off:.2f} |",
        "",
    ]


def worker_table(r: StateResults, rounds: int) -> list[str]:
    """The worker table."""
    w_on, w_off = median(r.worker["on"]), median(r.worker["off"])
    return [
        "Worker: one burst worker, 20 batches x 1,000 notifications, one no-op handler, "
        f"{rounds} alternating rounds",
        "",
        "| state handler | notifications/s (median) | vs off |",
        "|---|---|---|",
        f"| off | {w_off:,.0f} | 1.00 |",
        f"| on | {w_on:,.0f} | {w_on / w_off:.2f} |",
        *(f"| (every round: {k}) | {', '.join(f'{v:,.0f}' for v in r.worker[k])} | |" for k in r.worker),
        "",
    ]


def api_table(r: StateResults) -> list[str]:
    """The API latency table."""
    p50, p99 = percentile(r.list_ms, 50), percentile(r.list_ms, 99)
    deep50, deep99 = percentile(r.deep_ms, 50), percentile(r.deep_ms, 99)
    return [
        f"API with {r.devices:,} devices, {len(r.list_ms)} sequential requests each",
        "",
        "| request | p50 ms | p99 ms |",
        "|---|---|---|",
        f"| `GET /api/v1/devices?limit=1000` | {p50:.1f} | {p99:.1f} |",
        f"| same, `after=` the last page | {deep50:.1f} | {deep99:.1f} |",
        "",
    ]


def memory_table(r: StateResults) -> list[str]:
    """The Redis memory table."""
    return [
        "| Redis memory | bytes |",
        "|---|---|",
        f"| per device (registration, 3 resources, 1 value, 2 history entries) | {r.bytes_per_device:,.0f} |",
        f"| per further history entry | {r.bytes_per_entry:,.0f} |",
        "",
    ]


def markdown(r: StateResults, seconds: int, rounds: int, parts: tuple[str, ...] = PARTS) -> str:
    """The tables of the parts that ran."""
    tables = {
        "ack": lambda: ack_table(r, seconds, rounds),
        "worker": lambda: worker_table(r, rounds),
        "api": lambda: api_table(r),
        "memory": lambda: memory_table(r),
    }
    return "\n".join(line for part in PARTS if part in parts for line in tables[part]())


def main() -> None:
    """Run and print markdown."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated, of " + ",".join(PARTS))
    args = parser.parse_args()
    parts = tuple(part for part in args.parts.split(",") if part)
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"devicehooks-state-bench-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    results = run(args.seconds, args.rounds, args.devices, tmp, parts)
    print(markdown(results, args.seconds, args.rounds, parts))


if __name__ == "__main__":
    main()
