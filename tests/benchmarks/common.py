"""Shared by the benchmark scripts: private Redis, product processes, RSS, percentiles."""

from __future__ import annotations

import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import requests

from app.redis_server import RedisServer, find_redis_server

ROOT = Path(__file__).resolve().parents[2]

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


def weighted_percentile(samples: Sequence[tuple[float, int]], pct: float) -> float:
    """The pct-th percentile of values that each stand for `weight` observations (nearest rank)."""
    ordered = sorted(samples)
    total = sum(weight for _, weight in ordered)
    if not total:
        raise ValueError("no samples")
    rank = max(1, math.ceil(pct / 100 * total))
    seen = 0
    for value, weight in ordered:
        seen += weight
        if seen >= rank:
            return value
    return ordered[-1][0]


def procfile_command(role: str, root: Path = ROOT) -> list[str]:
    """The Procfile's command for `role` run by this interpreter (``gunicorn`` -> ``python -m gunicorn``)."""
    for line in (root / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() == role:
            args = shlex.split(command)
            modules = {"gunicorn": ["-m", "gunicorn"], "devicehooks": ["-m", "app"]}
            return [sys.executable, *modules.get(args[0], [args[0]]), *args[1:]]
    raise KeyError(f"no {role!r} process in the Procfile")


def start_logged(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a process from the repository root with stdout and stderr appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=out, cwd=ROOT)


def start_web(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """The Procfile's web command on 127.0.0.1:port (the command line overrides the config's 0.0.0.0 bind)."""
    args = [*procfile_command("web"), "--bind", f"127.0.0.1:{port}"]
    proc = start_logged(args, {**env, "PORT": str(port)}, log)
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    return proc


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """The Procfile's worker command (``devicehooks worker``)."""
    return start_logged(procfile_command("worker"), env, log)


def product_env(redis_url: str, handlers: str, queue: str = "bench", **extra: str) -> dict[str, str]:
    """Environment of the web and worker processes under benchmark."""
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "CALLBACK_HEADERS": SECRET_HEADERS,
        "HANDLERS": handlers,
        "DEVICEHOOKS_QUEUE": queue,
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        "WEB_CONCURRENCY": "2",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


def children(pid: int) -> list[int]:
    """Pids of the direct children of pid (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    tree: list[int] = []
    todo = [pid]
    while todo and len(tree) < 1000:
        current = todo.pop()
        tree.append(current)
        todo.extend(children(current))
    return tree


def rss_kib(pid: int) -> int:
    """Resident memory of one process (VmRSS in /proc/<pid>/status), KiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and its descendants, KiB."""
    return sum(rss_kib(p) for p in process_tree(pid))


def machine_info() -> dict[str, str]:
    """Cores, CPU model, Python, Redis and key library versions, and the date."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    redis_version = subprocess.run(
        [find_redis_server(), "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    version = next((w.split("=", 1)[1] for w in redis_version if w.startswith("v=")), "unknown")
    libs = ", ".join(f"{name} {_version(name)}" for name in ("flask", "gunicorn", "rq", "redis"))
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "redis-server": version,
        "libraries": libs,
        "load average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _version(name: str) -> str:
    """Installed version of a distribution."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
