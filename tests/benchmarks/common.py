"""Process helpers shared by the benchmark scripts: private Redis, gunicorn apps, percentiles."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import requests

from app.redis_server import RedisServer, free_port

SECRET_HEADERS = '{"Authorization": "Bearer benchmark-secret"}'


def percentile(values: Sequence[float], pct: float) -> float:
    """The pct-th percentile (nearest rank) of values."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    """Median of values."""
    return statistics.median(values)


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Poll url until it answers or the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            requests.get(url, timeout=0.5)
            return
        except requests.RequestException:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@contextmanager
def gunicorn(
    app_spec: str, env: dict[str, str], workers: int, worker_class: str, threads: int
) -> Iterator[str]:
    """Run gunicorn serving app_spec on a free port; yield its base URL; stop it by pid."""
    port = free_port()
    args = [
        sys.executable, "-m", "gunicorn", app_spec,
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
        "--worker-class", worker_class, "--threads", str(threads),
        "--log-level", "warning", "--timeout", "30",
    ]  # fmt: skip
    full_env = {**os.environ, **env}
    proc = subprocess.Popen(args, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/", proc)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def private_redis() -> Iterator[RedisServer]:
    """A private redis-server for one benchmark run."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


def service_env(redis_url: str) -> dict[str, str]:
    """Environment for the devicehooks app under benchmark."""
    return {
        "REDIS_URL": redis_url,
        "CALLBACK_HEADERS": SECRET_HEADERS,
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        "DEVICEHOOKS_QUEUE": "bench",
    }
