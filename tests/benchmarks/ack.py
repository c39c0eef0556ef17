"""Ack benchmark: our callback route vs a bare Flask 204 route, same gunicorn settings, one run.

    python -m tests.benchmarks.ack [--seconds 5] [--rounds 3]

1. Throughput of 1-item batches (wrk, rounds alternate ours/bare; medians and their ratio).
2. Ack latency p50/p99 of 100, 1,000 and 10,000-item batches sent one at a time, as Device
   Management does (the next batch only after the ack).
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

from redis import Redis

from tests.benchmarks.common import gunicorn, median, percentile, private_redis, service_env
from tests.benchmarks.payloads import notification_batch

WRK_SCRIPT = """
wrk.method = "PUT"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer benchmark-secret"
"""


def wrk_rate(url: str, body: bytes, seconds: int, connections: int) -> float:
    """Requests/s that wrk sustained with non-2xx responses counted as failures."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT.format(body=json.dumps(body.decode())))
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "-s", script.name, url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    Path(script.name).unlink()
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx responses during the benchmark:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise RuntimeError(f"could not read wrk output:\n{out}")
    return float(match.group(1))


def put_latencies(url: str, body: bytes, count: int) -> list[float]:
    """Milliseconds per PUT, sent one after another on one connection, as Device Management does."""
    parsed = urlparse(url)
    latencies = []
    headers = {"Content-Type": "application/json", "Authorization": "Bearer benchmark-secret"}
    for _ in range(count):
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        start = time.perf_counter()
        conn.request("PUT", parsed.path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append((time.perf_counter() - start) * 1000)
        conn.close()
        if response.status != 204:
            raise RuntimeError(f"PUT answered {response.status}")
    return latencies


def main() -> None:
    """Run both parts and print a markdown report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5, help="duration of one wrk round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per route")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (WEB_CONCURRENCY)")
    parser.add_argument("--worker-class", default="sync")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--latency-count", type=int, default=200, help="PUTs per batch size")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")

    gargs = (args.workers, args.worker_class, args.threads)
    with private_redis() as redis_server:
        env = service_env(redis_server.url)
        client = Redis.from_url(redis_server.url)
        with (
            gunicorn("app:create_app()", env, *gargs) as ours,
            gunicorn("tests.benchmarks.bare_app:create_app()", env, *gargs) as bare,
        ):
            one = notification_batch(1)
            rates: dict[str, list[float]] = {"ours": [], "bare": []}
            for round_no in range(args.rounds):
                for name, base in (("ours", ours), ("bare", bare)):
                    rates[name].append(wrk_rate(base + "/notify", one, args.seconds, args.connections))
                    client.flushdb()
                last = {name: values[-1] for name, values in rates.items()}
                print(
                    f"round {round_no + 1}: ours {last['ours']:.0f}/s, bare {last['bare']:.0f}/s", flush=True
                )
            ours_rate, bare_rate = median(rates["ours"]), median(rates["bare"])
            print(
                f"\nsettings: gunicorn {args.workers} x {args.worker_class} (threads {args.threads}), wrk 1 "
                f"thread {args.connections} connections, {args.rounds} x {args.seconds} s rounds\n"
            )
            print("| route | 1-item PUT/s (median) |\n|---|---|")
            print(f"| bare Flask 204 | {bare_rate:.0f} |\n| devicehooks callback | {ours_rate:.0f} |")
            print(f"| **ratio** | **{ours_rate / bare_rate:.2f}** |\n")

            print("| batch items | body bytes | ours p50 ms | ours p99 ms | bare p50 ms | bare p99 ms |")
            print("|---|---|---|---|---|---|")
            for items in (100, 1_000, 10_000):
                body = notification_batch(items)
                count = args.latency_count if items < 10_000 else max(50, args.latency_count // 2)
                mine = put_latencies(ours + "/notify", body, count)
                client.flushdb()
                base_lat = put_latencies(bare + "/notify", body, count)
                cells = " | ".join(f"{percentile(v, p):.1f}" for v in (mine, base_lat) for p in (50, 99))
                print(f"| {items:,} | {len(body):,} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
