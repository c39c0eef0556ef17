"""Ack benchmark: our callback route beside the floor and the bare route, same gunicorn settings, one run.

    python -m tests.benchmarks.ack [--seconds 5] [--rounds 3] [--models sync:1,gthread:32]

Every app is served by the Procfile's gunicorn config (``app/gunicorn_config.py``), the worker model
overridden per row on the command line:

- bare: a Flask route that reads the body and answers 204;
- floor: the same route plus one redis-py ``SET`` of the body (the least any durable ack can do);
- wsgi floor: the same ``SET`` from a plain WSGI callable, no Flask (devicehooks answers its callback
  ahead of Flask, so this is the floor it is up against);
- ours: the devicehooks callback route (and how many PUTs each of its enqueue script calls carried,
  from Redis ``INFO commandstats``: group commit, ``app.groupcommit``).

1. Throughput of 1-item batches per worker model (wrk, rounds alternate bare/floor/ours; medians and
   ratios).
2. Ack latency p50/p99 of 1, 100, 1,000 and 10,000-item batches sent one at a time, as Device
   Management does (the next batch only after the ack), ours beside the floor (the first model).
3. With 20 slow clients open (headers sent a byte at a time, never finished): valid PUTs and
   /healthz one at a time, how many were answered within 2 s and the p50/p99 of those answered.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from redis import Redis

from app.redis_server import free_port
from tests.benchmarks.common import (
    ROOT,
    median,
    percentile,
    private_redis,
    process_tree,
    service_env,
    wait_http,
)
from tests.benchmarks.payloads import notification_batch
from tests.integration.test_web_tier import SlowClients
from tests.support import stop

ROUTES = ("bare", "floor", "wsgi floor", "ours")
APPS = {
    "bare": "tests.benchmarks.bare_app:create_app()",
    "floor": "tests.benchmarks.bare_app:create_floor_app()",
    "wsgi floor": "tests.benchmarks.bare_app:create_wsgi_floor_app()",
    "ours": "app:create_app()",
}
WRK_SCRIPT = """
wrk.method = "PUT"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer benchmark-secret"
"""
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer benchmark-secret"}


def ensure_wrk() -> str:
    """The wrk binary; installed with apt-get when missing (so the ack section never goes missing)."""
    found = shutil.which("wrk")
    if found:
        return found
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "wrk"]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
            subprocess.run(install, env=env, capture_output=True, check=False)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("the ack benchmark needs wrk and could not install it: apt-get install -y wrk")
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used (Linux /proc, clock ticks)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def wrk_rate(url: str, body: bytes, seconds: int, connections: int) -> tuple[float, int]:
    """Requests/s that wrk sustained and how many it made; any non-2xx response fails the run."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT.format(body=json.dumps(body.decode())))
    out = subprocess.run(
        [ensure_wrk(), "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "-s", script.name, url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    Path(script.name).unlink()
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx responses during the benchmark:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not match or not total:
        raise RuntimeError(f"could not read wrk output:\n{out}")
    return float(match.group(1)), int(total.group(1))


def timed_request(url: str, method: str, body: bytes | None, timeout: float) -> float | None:
    """Milliseconds for one request on a new connection; None when it was not answered in time."""
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=timeout)
    start = time.perf_counter()
    try:
        conn.request(method, parsed.path, body=body, headers=HEADERS)
        response = conn.getresponse()
        response.read()
    except OSError:
        return None
    finally:
        conn.close()
    if response.status >= 300:
        raise RuntimeError(f"{method} {parsed.path} answered {response.status}")
    return (time.perf_counter() - start) * 1000


def put_latencies(url: str, body: bytes, count: int) -> list[float]:
    """Milliseconds per PUT, sent one after another, as Device Management does."""
    latencies = []
    for _ in range(count):
        elapsed = timed_request(url, "PUT", body, 30)
        if elapsed is None:
            raise RuntimeError("a PUT was not answered within 30 s")
        latencies.append(elapsed)
    return latencies


@dataclass(frozen=True)
class Model:
    """A gunicorn worker model: class and threads per worker (2 workers)."""

    worker_class: str
    threads: int

    @property
    def label(self) -> str:
        """How the report names it."""
        return f"{self.worker_class} x {self.threads}" if self.worker_class == "gthread" else "sync"

    def args(self) -> list[str]:
        """gunicorn command-line overrides of the config file."""
        return [
            "--worker-class", self.worker_class, "--threads", str(self.threads),
            "--worker-connections", str(max(self.threads, 1)),
        ]  # fmt: skip


def parse_models(text: str) -> tuple[Model, ...]:
    """``sync:1,gthread:32`` -> models."""
    models = []
    for part in text.split(","):
        worker_class, _, threads = part.partition(":")
        models.append(Model(worker_class.strip(), int(threads or 1)))
    return tuple(models)


@dataclass
class AckSettings:
    """How the ack benchmark runs (the defaults are what the README reports)."""

    seconds: int = 5
    rounds: int = 3
    connections: int = 8
    workers: int = 2
    models: tuple[Model, ...] = (Model("gthread", 32), Model("sync", 1))
    latency_count: int = 200
    sizes: tuple[int, ...] = (1, 100, 1_000, 10_000)
    slow_clients: int = 20
    slow_requests: int = 40
    slow_timeout: float = 2.0


@dataclass
class SlowRow:
    """Requests made while slow clients held connections open."""

    model: Model
    put_ms: list[float | None] = field(default_factory=list)
    health_ms: list[float | None] = field(default_factory=list)
    still_open: int = 0  # slow connections the server had not closed when the requests were done


@dataclass
class AckResults:
    """Throughput rounds, latency rows and slow-client rows of one run."""

    settings: AckSettings
    rates: dict[Model, dict[str, list[float]]] = field(default_factory=dict)
    cpu_us: dict[Model, dict[str, list[float]]] = field(default_factory=dict)  # per PUT, web + redis
    puts_per_call: dict[Model, list[float]] = field(default_factory=dict)  # ours: PUTs / EVALSHA calls
    latency: list[tuple[int, int, list[float], list[float]]] = field(default_factory=list)
    slow: list[SlowRow] = field(default_factory=list)


@dataclass(frozen=True)
class Served:
    """One app under gunicorn: its base URL and master pid."""

    base: str
    pid: int


@contextmanager
def served(app: str, env: dict[str, str], model: Model, workers: int) -> Iterator[Served]:
    """gunicorn with the product's config file serving app, the model on top."""
    port = free_port()
    args = [
        sys.executable, "-m", "gunicorn", "--config", "python:app.gunicorn_config", app,
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--log-level", "warning", *model.args(),
    ]  # fmt: skip
    full_env = {**os.environ, **env, "PORT": str(port), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        args, env=full_env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/", proc)
        yield Served(base, proc.pid)
    finally:
        stop(proc, timeout=15)


@contextmanager
def serving_all(env: dict[str, str], model: Model, workers: int) -> Iterator[dict[str, Served]]:
    """The apps side by side under one model: route name -> base URL."""
    with ExitStack() as stack:
        yield {name: stack.enter_context(served(APPS[name], env, model, workers)) for name in ROUTES}


def script_calls(client: Redis) -> int:
    """EVALSHA calls Redis has counted since its last CONFIG RESETSTAT."""
    return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def throughput_rounds(
    results: AckResults,
    model: Model,
    apps: dict[str, Served],
    client: Redis,
    redis_pid: int,
    echo: Callable[[str], object],
) -> None:
    """Alternate wrk rounds of 1-item PUTs against the routes; record rates, CPU per PUT, group sizes."""
    cfg = results.settings
    one = notification_batch(1)
    rates = results.rates.setdefault(model, {name: [] for name in ROUTES})
    cpu = results.cpu_us.setdefault(model, {name: [] for name in ROUTES})
    grouped = results.puts_per_call.setdefault(model, [])
    for round_no in range(cfg.rounds):
        for name in ROUTES:
            pids = [*process_tree(apps[name].pid), redis_pid]
            client.config_resetstat()
            before = cpu_seconds(pids)
            rate, total = wrk_rate(apps[name].base + "/notify", one, cfg.seconds, cfg.connections)
            rates[name].append(rate)
            cpu[name].append((cpu_seconds(pids) - before) / total * 1e6)
            if name == "ours":
                grouped.append(total / max(1, script_calls(client)))
            client.flushdb()
        last = ", ".join(f"{name} {rates[name][-1]:.0f}/s" for name in ROUTES)
        echo(f"{model.label} round {round_no + 1}: {last}")


def latency_rows(results: AckResults, apps: dict[str, Served], client: Redis) -> None:
    """PUT batches of each size one at a time to ours and the floor, alternating in blocks of 10."""
    cfg = results.settings
    for items in cfg.sizes:
        body = notification_batch(items)
        count = cfg.latency_count if items < 10_000 else max(50, cfg.latency_count // 2)
        mine: list[float] = []
        floor: list[float] = []
        for _ in range(0, count, 10):
            mine += put_latencies(apps["ours"].base + "/notify", body, 10)
            floor += put_latencies(apps["floor"].base + "/notify", body, 10)
        client.flushdb()
        results.latency.append((items, len(body), mine, floor))


def slow_row(results: AckResults, model: Model, base: str) -> None:
    """Valid PUTs and /healthz, one at a time, while slow clients hold connections open."""
    cfg = results.settings
    row = SlowRow(model)
    body = notification_batch(1)
    slow = SlowClients(urlparse(base).port or 80, cfg.slow_clients)
    try:
        for _ in range(cfg.slow_requests):
            row.put_ms.append(timed_request(base + "/notify", "PUT", body, cfg.slow_timeout))
            row.health_ms.append(timed_request(base + "/healthz", "GET", None, cfg.slow_timeout))
        row.still_open = slow.still_open()  # the server held them all the while, or the row means nothing
    finally:
        slow.close()
    results.slow.append(row)


def run(cfg: AckSettings, echo: Callable[[str], object] = print) -> AckResults:
    """Every part, for every model, against one private Redis."""
    ensure_wrk()
    results = AckResults(cfg)
    with private_redis() as redis_server:
        env = service_env(redis_server.url)
        client = Redis.from_url(redis_server.url)
        for index, model in enumerate(cfg.models):
            assert redis_server.process is not None
            with serving_all(env, model, cfg.workers) as apps:
                throughput_rounds(results, model, apps, client, redis_server.process.pid, echo)
                if index == 0:
                    latency_rows(results, apps, client)
                    echo(f"{model.label}: latency rows done")
                slow_row(results, model, apps["ours"].base)
                client.flushdb()
                echo(f"{model.label}: slow clients done")
        client.close()
    return results


def throughput_markdown(results: AckResults) -> str:
    """The 1-item throughput table, one row per worker model."""
    cfg = results.settings
    lines = [
        f"gunicorn {cfg.workers} workers, the Procfile's config for every app, wrk 1 thread "
        f"{cfg.connections} connections, {cfg.rounds} alternating rounds of {cfg.seconds} s; medians\n",
        "| worker model | bare PUT/s | floor PUT/s | wsgi floor PUT/s | ours PUT/s | ours / floor "
        "| ours / wsgi floor | ours / bare | floor / bare | PUTs per enqueue call |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, rates in results.rates.items():
        bare, floor, wsgi_floor, ours = (median(rates[name]) for name in ROUTES)
        lines.append(
            f"| {model.label} | {bare:.0f} | {floor:.0f} | {wsgi_floor:.0f} | {ours:.0f} | "
            f"**{ours / floor:.2f}** | {ours / wsgi_floor:.2f} | **{ours / bare:.2f}** | "
            f"{floor / bare:.2f} | {median(results.puts_per_call[model]):.2f} |"
        )
    lines += [
        "\nCPU per PUT (µs; the app's gunicorn processes plus redis-server, from /proc, same rounds; "
        "the figure a noisy shared machine disturbs least):\n",
        "| worker model | bare | floor | wsgi floor | ours | ours - floor | floor / ours "
        "| wsgi floor / ours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, cpu in results.cpu_us.items():
        bare, floor, wsgi_floor, ours = (median(cpu[name]) for name in ROUTES)
        lines.append(
            f"| {model.label} | {bare:.0f} | {floor:.0f} | {wsgi_floor:.0f} | {ours:.0f} | "
            f"{ours - floor:+.0f} | **{floor / ours:.2f}** | {wsgi_floor / ours:.2f} |"
        )
    return "\n".join(lines) + "\n"


def latency_markdown(results: AckResults) -> str:
    """The ack latency table by batch size, ours beside the floor."""
    model = results.settings.models[0]
    lines = [
        f"{model.label}; each PUT on a new connection, one at a time, ours and the floor alternating\n",
        "| batch items | body bytes | ours p50 ms | ours p99 ms | floor p50 ms | floor p99 ms "
        "| p50 ours - floor |",
        "|---|---|---|---|---|---|---|",
    ]
    for items, size, mine, floor in results.latency:
        cells = " | ".join(f"{percentile(v, p):.2f}" for v in (mine, floor) for p in (50, 99))
        gap = percentile(mine, 50) - percentile(floor, 50)
        lines.append(f"| {items:,} | {size:,} | {cells} | {gap:+.2f} |")
    return "\n".join(lines) + "\n"


def _answered(values: list[float | None]) -> str:
    """'answered/total, p50, p99' of timed requests (None = not answered in time)."""
    done = [v for v in values if v is not None]
    if not done:
        return f"0/{len(values)} | - | -"
    return f"{len(done)}/{len(values)} | {percentile(done, 50):.1f} | {percentile(done, 99):.1f}"


def slow_markdown(results: AckResults) -> str:
    """The slow-clients table, one row per worker model."""
    cfg = results.settings
    lines = [
        f"{cfg.slow_clients} connections sending headers a byte at a time, held open; meanwhile "
        f"{cfg.slow_requests} valid PUTs and {cfg.slow_requests} GET /healthz, one at a time, each "
        f"on a new connection, {cfg.slow_timeout:.0f} s timeout\n",
        "| worker model | slow clients still open at the end | PUTs answered | PUT p50 ms | PUT p99 ms "
        "| healthz answered | healthz p50 ms | healthz p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results.slow:
        lines.append(
            f"| {row.model.label} | {row.still_open}/{cfg.slow_clients} | {_answered(row.put_ms)} "
            f"| {_answered(row.health_ms)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run every part and print a markdown report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5, help="duration of one wrk round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per route")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (WEB_CONCURRENCY)")
    parser.add_argument("--models", default="gthread:32,sync:1", help="worker models, the first one chosen")
    parser.add_argument("--latency-count", type=int, default=200, help="PUTs per batch size")
    args = parser.parse_args()
    cfg = AckSettings(
        seconds=args.seconds,
        rounds=args.rounds,
        connections=args.connections,
        workers=args.workers,
        models=parse_models(args.models),
        latency_count=args.latency_count,
    )
    results = run(cfg, lambda line: print(line, flush=True))
    print("\n" + throughput_markdown(results))
    print(latency_markdown(results))
    print(slow_markdown(results))


if __name__ == "__main__":
    main()
