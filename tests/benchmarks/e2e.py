"""End-to-end benchmarks: the simulator PUTs to the web process (the Procfile's command), workers run a
handler that counts in Redis; everything is measured from the handler side.

    python -m tests.benchmarks.e2e [--quick]

1. notifications/s with 1 and 2 worker processes at 100 and 1,000-item batches (simulator load mode
   ``max``: it keeps two full batches queued, so it sends as fast as the web process acknowledges);
2. ack -> handler latency p50/p99 at a fixed 1,000 notifications/s: the handler's time.time() minus the
   batch job's ``enqueued_at``, which the web process stamps just before it answers 204 (the simulator's
   event ``timestamp`` would also count the time an event waits in the sender's queue, not ours);
3. resident memory (VmRSS) of the web and worker processes sampled across a long run.

Redis runs with ``appendonly yes`` (the production setting, README "Deploying").
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis
from rq import Queue, Worker

from app.dm.client import DMClient
from app.redis_server import RedisServer, free_port
from app.simulator import SimulatorConfig, SimulatorServer
from app.simulator.load import LoadRun
from tests import support
from tests.benchmarks.common import (
    SECRET_HEADERS,
    children,
    product_env,
    rss_kib,
    start_web,
    start_worker,
    tree_rss_kib,
    weighted_percentile,
)
from tests.benchmarks.counting_handler import COUNT_KEY, LATENCY_KEY
from tests.support import stop

logger = logging.getLogger(__name__)

API_KEY = "ak_simulator"
QUEUE = "bench"
POLL = 0.05  # s between checks of the handler's counter
Echo = Callable[[str], object]


@dataclass
class Product:
    """Redis, the web process and the worker processes of one measurement."""

    redis_server: RedisServer
    client: Redis
    env: dict[str, str]
    web: Any
    workers: list[Any]
    port: int
    logs: Path

    @property
    def callback_url(self) -> str:
        """Where the simulator PUTs."""
        return f"http://127.0.0.1:{self.port}/notify"

    def handled(self) -> int:
        """Notifications the handler counted so far."""
        return int(self.client.get(COUNT_KEY) or 0)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition until it holds; RuntimeError at the deadline (the suite reports those)."""
    try:
        support.wait_until(predicate, timeout, what, interval=POLL)
    except AssertionError as exc:
        raise RuntimeError(str(exc)) from None


@contextmanager
def running_product(handlers: str, workers: int, logs: Path) -> Iterator[Product]:
    """Redis (appendonly), the Procfile's web command and `workers` worker processes; stopped by pid."""
    server = RedisServer(directory=str(logs / "redis"), appendonly=True).start()
    client = Redis.from_url(server.url, socket_timeout=10)
    env = product_env(server.url, handlers, QUEUE)
    port = free_port()
    procs: list[Any] = []
    try:
        web = start_web(env, port, logs / "web.log")
        procs.append(web)
        started = [start_worker(env, logs / f"worker-{i}.log") for i in range(workers)]
        procs.extend(started)
        queue = Queue(QUEUE, connection=client)
        wait_until(lambda: Worker.count(queue=queue) >= workers, 30, f"{workers} worker(s) registering")
        yield Product(server, client, env, web, started, port, logs)
    finally:
        for proc in reversed(procs):
            stop(proc)
        client.close()
        server.stop()


@contextmanager
def simulator(batch_size: int, product: Product) -> Iterator[SimulatorServer]:
    """An in-process simulator whose callback is the product's web process."""
    config = SimulatorConfig(
        api_keys=(API_KEY,), devices=100, batch_size=batch_size, notification_interval=0,
        lifecycle=False, record_ids=False,
    )  # fmt: skip
    server = SimulatorServer(config).start()
    try:
        client = DMClient(server.url, API_KEY, timeout=10)
        client.put_callback(product.callback_url, json.loads(SECRET_HEADERS))
        client.close()
        yield server
    finally:
        server.stop()


@dataclass
class Load:
    """A LoadRun in a background thread."""

    run: LoadRun
    stop: threading.Event = field(default_factory=threading.Event)
    summary: dict[str, Any] = field(default_factory=dict)
    thread: threading.Thread | None = None

    def start(self) -> Load:
        """Start generating."""
        self.thread = threading.Thread(target=self._run, name="bench-load", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        """Run to the end and keep the summary."""
        self.summary.update(self.run.run(self.stop))

    def finish(self, timeout: float = 60) -> dict[str, Any]:
        """Wait for the sender to settle (stop it at the deadline); return its summary."""
        if self.thread is not None:
            self.thread.join(timeout)
            if self.thread.is_alive():
                self.stop.set()
                self.thread.join(10)
        return self.summary


def start_load(sim: SimulatorServer, count: int, rate: float | None) -> Load:
    """Generate `count` notifications: as fast as acknowledged (rate None) or at `rate` per second."""
    return Load(LoadRun(sim.sim, count, rate, echo=lambda line: None)).start()


def wait_handled(
    product: Product, target: int, timeout: float, tick: Callable[[int], None] | None = None
) -> float:
    """Wait until the handler counted `target` notifications; return the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        handled = product.handled()
        if tick is not None:
            tick(handled)
        if handled >= target:
            return time.monotonic()
        for proc in [product.web, *product.workers]:
            if proc.poll() is not None:
                raise RuntimeError(f"process {proc.pid} exited with {proc.returncode}; see {product.logs}")
        time.sleep(POLL)
    raise RuntimeError(f"the handler counted {product.handled()} of {target} within {timeout:.0f} s")


# --- 1. throughput ----------------------------------------------------------------------------------


@dataclass
class ThroughputCell:
    """One throughput measurement."""

    workers: int
    batch: int
    count: int
    seconds: float
    ack_rate: float

    @property
    def rate(self) -> float:
        """Notifications/s counted by the handler, from the first generated to the last handled."""
        return self.count / self.seconds


def throughput(workers: int, batch: int, count: int, logs: Path, timeout: float = 600) -> ThroughputCell:
    """Send `count` notifications in `batch`-item batches as fast as acknowledged; time the handler side."""
    with (
        running_product("tests.benchmarks.counting_handler", workers, logs) as product,
        simulator(batch, product) as sim,
    ):
        start = time.monotonic()
        load = start_load(sim, count, None)
        done = wait_handled(product, count, timeout)
        summary = load.finish()
    return ThroughputCell(workers, batch, count, done - start, float(summary.get("rate", 0.0)))


def throughput_markdown(cells: list[ThroughputCell]) -> str:
    """The throughput table."""
    lines = [
        "| worker processes | batch items | notifications | seconds | handled/s | sender acked/s |",
        "|---|---|---|---|---|---|",
    ]
    for c in cells:
        head = f"| {c.workers} | {c.batch:,} | {c.count:,} | {c.seconds:.1f} |"
        lines.append(f"{head} **{c.rate:,.0f}** | {c.ack_rate:,.0f} |")
    return "\n".join(lines) + "\n"


# --- 2. latency -------------------------------------------------------------------------------------


@dataclass
class LatencyResult:
    """Ack -> handler latency at a fixed rate."""

    rate: float
    count: int
    samples: list[tuple[float, int]]

    def pct_ms(self, pct: float) -> float:
        """A percentile over notifications, in ms."""
        return weighted_percentile(self.samples, pct) * 1000


def latency(rate: float, seconds: float, batch: int, logs: Path) -> LatencyResult:
    """`rate` notifications/s for `seconds` to one worker; the timed handler's samples."""
    count = int(rate * seconds)
    with (
        running_product("tests.benchmarks.counting_handler:timed", 1, logs) as product,
        simulator(batch, product) as sim,
    ):
        load = start_load(sim, count, rate)
        wait_handled(product, count, seconds * 3 + 60)
        load.finish()
        raw = product.client.lrange(LATENCY_KEY, 0, -1)
    samples = []
    for line in raw:
        value, weight = line.split()
        samples.append((float(value), int(weight)))
    if sum(w for _, w in samples) != count:
        raise RuntimeError(f"latency samples cover {sum(w for _, w in samples)} of {count} notifications")
    return LatencyResult(rate, count, samples)


def latency_markdown(result: LatencyResult) -> str:
    """The latency table."""
    batches = len(result.samples)
    return (
        "| rate | notifications | batches | mean batch | p50 ms | p99 ms | max ms |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {result.rate:,.0f}/s | {result.count:,} | {batches:,} | {result.count / batches:.1f} | "
        f"{result.pct_ms(50):.1f} | {result.pct_ms(99):.1f} | {result.pct_ms(100):.1f} |\n"
    )


# --- 3. memory --------------------------------------------------------------------------------------


@dataclass
class RssSample:
    """Resident memory (KiB) at one moment, with the number of notifications handled by then."""

    handled: int
    web_master: int
    web_workers: int
    worker: int
    redis: int


@dataclass
class RssResult:
    """Samples across one long run."""

    count: int
    rate: float
    seconds: float
    samples: list[RssSample]


def sample_rss(product: Product, handled: int) -> RssSample:
    """One sample of every process of the product."""
    web = product.web.pid
    workers = children(web)
    return RssSample(
        handled=handled,
        web_master=rss_kib(web),
        web_workers=sum(tree_rss_kib(p) for p in workers),
        worker=sum(tree_rss_kib(p.pid) for p in product.workers),
        redis=rss_kib(product.redis_server.process.pid) if product.redis_server.process else 0,
    )


def memory(count: int, rate: float, batch: int, logs: Path, every: float = 1.0) -> RssResult:
    """`count` notifications at `rate`/s to one worker; RSS sampled every `every` seconds."""
    samples: list[RssSample] = []
    next_at = [0.0]
    with (
        running_product("tests.benchmarks.counting_handler", 1, logs) as product,
        simulator(batch, product) as sim,
    ):

        def tick(handled: int) -> None:
            now = time.monotonic()
            if now >= next_at[0]:
                samples.append(sample_rss(product, handled))
                next_at[0] = now + every

        start = time.monotonic()
        load = start_load(sim, count, rate)
        wait_handled(product, count, count / rate * 3 + 120, tick)
        seconds = time.monotonic() - start
        samples.append(sample_rss(product, product.handled()))
        load.finish()
    return RssResult(count, rate, seconds, samples)


def slope_per_100k(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of KiB against notifications handled, per 100,000 notifications."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if not var:
        return 0.0
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return cov / var * 100_000


def memory_markdown(result: RssResult) -> str:
    """Start / middle / end RSS per process and the slope after warm-up (10% of the run)."""
    samples = result.samples
    warm = [s for s in samples if s.handled >= result.count * 0.1] or samples
    start = warm[0]
    middle = next((s for s in samples if s.handled >= result.count / 2), samples[-1])
    end = samples[-1]
    lines = [
        f"{result.count:,} notifications at {result.rate:,.0f}/s (1,000-item batches at most), "
        f"{result.seconds:.0f} s, {len(samples)} samples; start = first sample after 10% handled\n",
        "| process | start MiB | middle MiB | end MiB | slope KiB per 100k notifications |",
        "|---|---|---|---|---|",
    ]
    for label, attr in (
        ("web: gunicorn master", "web_master"),
        ("web: 2 gunicorn workers (sum)", "web_workers"),
        ("worker (devicehooks worker + its scheduler)", "worker"),
        ("redis-server (context)", "redis"),
    ):
        values = [getattr(s, attr) / 1024 for s in (start, middle, end)]
        slope = slope_per_100k([(s.handled, getattr(s, attr)) for s in warm])
        lines.append(f"| {label} | {values[0]:.1f} | {values[1]:.1f} | {values[2]:.1f} | {slope:+.0f} |")
    return "\n".join(lines) + "\n"


# --- command line -----------------------------------------------------------------------------------


@dataclass
class E2ESettings:
    """Sizes of the end-to-end runs."""

    count: int = 200_000
    latency_rate: float = 1000.0
    latency_seconds: float = 30.0
    memory_count: int = 1_000_000
    memory_share: float = 0.8  # of the 1-worker, 1,000-item throughput

    @classmethod
    def quick(cls) -> E2ESettings:
        """Fewer notifications everywhere."""
        return cls(count=30_000, latency_seconds=10.0, memory_count=100_000)


@dataclass
class E2EResults:
    """Everything of one end-to-end run."""

    cells: list[ThroughputCell] = field(default_factory=list)
    latency: LatencyResult | None = None
    memory: RssResult | None = None


def run(cfg: E2ESettings, logs: Path, echo: Echo = print) -> E2EResults:
    """Throughput matrix, then latency, then memory at a rate the product sustains."""
    results = E2EResults()
    for workers in (1, 2):
        for batch in (100, 1_000):
            cell = throughput(workers, batch, cfg.count, logs / f"tp-{workers}w-{batch}")
            echo(f"e2e: {workers} worker(s), {batch}-item batches: {cell.rate:,.0f} notifications/s")
            results.cells.append(cell)
    results.latency = latency(cfg.latency_rate, cfg.latency_seconds, 1_000, logs / "latency")
    echo(f"e2e: latency p50 {results.latency.pct_ms(50):.1f} ms p99 {results.latency.pct_ms(99):.1f} ms")
    base = next(c.rate for c in results.cells if c.workers == 1 and c.batch == 1_000)
    rate = max(1000.0, round(base * cfg.memory_share, -3))
    results.memory = memory(cfg.memory_count, rate, 1_000, logs / "memory")
    echo(f"e2e: memory run done ({cfg.memory_count:,} notifications at {rate:,.0f}/s)")
    return results


def main() -> None:
    """Run the end-to-end benchmarks and print markdown tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer notifications")
    args = parser.parse_args()
    cfg = E2ESettings.quick() if args.quick else E2ESettings()
    logs = Path(tempfile.mkdtemp(prefix="devicehooks-e2e-"))
    results = run(cfg, logs, lambda line: print(line, flush=True))
    print("\n" + throughput_markdown(results.cells))
    if results.latency:
        print(latency_markdown(results.latency))
    if results.memory:
        print(memory_markdown(results.memory))
    print(f"(logs in {logs})")


if __name__ == "__main__":
    main()
