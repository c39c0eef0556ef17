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
from collections.abc import Callable
from dataclasses import dataclass, field
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
        conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=30)
        start = time.perf_counter()
        conn.request("PUT", parsed.path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append((time.perf_counter() - start) * 1000)
        conn.close()
        if response.status != 204:
            raise RuntimeError(f"PUT answered {response.status}")
    return latencies


@dataclass
class AckSettings:
    """How the ack benchmark runs (the defaults are what the README reports)."""

    seconds: int = 5
    rounds: int = 3
    connections: int = 8
    workers: int = 2
    worker_class: str = "sync"
    threads: int = 1
    latency_count: int = 200
    sizes: tuple[int, ...] = (100, 1_000, 10_000)


@dataclass
class AckResults:
    """Throughput rounds and latency rows of one run."""

    settings: AckSettings
    rates: dict[str, list[float]] = field(default_factory=lambda: {"ours": [], "bare": []})
    latency: list[tuple[int, int, list[float], list[float]]] = field(default_factory=list)


def throughput_rounds(
    results: AckResults, ours: str, bare: str, client: Redis, echo: Callable[[str], object]
) -> None:
    """Alternate wrk rounds of 1-item PUTs against both routes; append the rates to results."""
    cfg = results.settings
    one = notification_batch(1)
    for round_no in range(cfg.rounds):
        for name, base in (("ours", ours), ("bare", bare)):
            results.rates[name].append(wrk_rate(base + "/notify", one, cfg.seconds, cfg.connections))
            client.flushdb()
        last = {name: values[-1] for name, values in results.rates.items()}
        echo(f"round {round_no + 1}: ours {last['ours']:.0f}/s, bare {last['bare']:.0f}/s")


def latency_rows(results: AckResults, ours: str, bare: str, client: Redis) -> None:
    """PUT batches of each size one at a time to both routes; append (items, bytes, ours, bare) rows."""
    cfg = results.settings
    for items in cfg.sizes:
        body = notification_batch(items)
        count = cfg.latency_count if items < 10_000 else max(50, cfg.latency_count // 2)
        mine = put_latencies(ours + "/notify", body, count)
        client.flushdb()
        base_lat = put_latencies(bare + "/notify", body, count)
        results.latency.append((items, len(body), mine, base_lat))


def run(cfg: AckSettings, echo: Callable[[str], object] = print) -> AckResults:
    """Both parts against gunicorn serving our app and the bare app side by side, one private Redis."""
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is needed: apt-get install -y wrk")
    results = AckResults(cfg)
    gargs = (cfg.workers, cfg.worker_class, cfg.threads)
    with private_redis() as redis_server:
        env = service_env(redis_server.url)
        client = Redis.from_url(redis_server.url)
        with (
            gunicorn("app:create_app()", env, *gargs) as ours,
            gunicorn("tests.benchmarks.bare_app:create_app()", env, *gargs) as bare,
        ):
            throughput_rounds(results, ours, bare, client, echo)
            latency_rows(results, ours, bare, client)
        client.close()
    return results


def throughput_markdown(results: AckResults) -> str:
    """The 1-item throughput table."""
    cfg = results.settings
    ours_rate, bare_rate = median(results.rates["ours"]), median(results.rates["bare"])
    return (
        f"gunicorn {cfg.workers} x {cfg.worker_class} (threads {cfg.threads}) for both routes, wrk 1 thread "
        f"{cfg.connections} connections, {cfg.rounds} alternating rounds of {cfg.seconds} s\n\n"
        "| route | 1-item PUT/s (median) |\n|---|---|\n"
        f"| bare Flask 204 | {bare_rate:.0f} |\n| devicehooks callback | {ours_rate:.0f} |\n"
        f"| **ratio** | **{ours_rate / bare_rate:.2f}** |\n"
    )


def latency_markdown(results: AckResults) -> str:
    """The ack latency table by batch size."""
    lines = [
        "| batch items | body bytes | ours p50 ms | ours p99 ms | bare p50 ms | bare p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for items, size, mine, base_lat in results.latency:
        cells = " | ".join(f"{percentile(v, p):.1f}" for v in (mine, base_lat) for p in (50, 99))
        lines.append(f"| {items:,} | {size:,} | {cells} |")
    return "\n".join(lines) + "\n"


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
    cfg = AckSettings(
        seconds=args.seconds,
        rounds=args.rounds,
        connections=args.connections,
        workers=args.workers,
        worker_class=args.worker_class,
        threads=args.threads,
        latency_count=args.latency_count,
    )
    try:
        results = run(cfg, lambda line: print(line, flush=True))
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    print("\n" + throughput_markdown(results))
    print(latency_markdown(results))


if __name__ == "__main__":
    main()
