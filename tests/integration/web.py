"""The Procfile's web process for web-tier tests: started on a free port, its workers, stopped by pid."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from app.redis_server import free_port
from tests.benchmarks.common import children
from tests.conftest import HEADERS
from tests.integration.workers import ROOT
from tests.support import stop, wait_until


def procfile_web() -> str:
    """The Procfile's web command."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no web line in the Procfile")


def web_env(redis_url: str, port: int, **extra: str) -> dict[str, str]:
    """Environment of a web process on the test queue."""
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "CALLBACK_HEADERS": json.dumps(HEADERS),
        "DEVICEHOOKS_QUEUE": "test",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "LOG_LEVEL": "INFO",
        "PYTHONPATH": str(ROOT),
        **extra,
    }
    env.pop("DM_API_KEY", None)
    env.pop("FORWARDED_ALLOW_IPS", None)
    return env


def answers(url: str, **kwargs: object) -> bool:
    """True when url answers 200."""
    try:
        return requests.get(url, timeout=1, **kwargs).status_code == 200  # type: ignore[arg-type]
    except requests.RequestException:
        return False


@contextmanager
def running_web(
    redis_url: str,
    log: Path,
    scheme: str = "http",
    health_kwargs: dict[str, object] | None = None,
    **extra: str,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The Procfile's web command on a free port: yields (base URL, master process); stopped by pid."""
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["bash", "-c", "exec " + procfile_web()],
            env=web_env(redis_url, port, **extra),
            cwd=ROOT,
            stdout=out,
            stderr=out,
        )
    base = f"{scheme}://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: proc.poll() is None and answers(base + "/healthz", **(health_kwargs or {})),
            timeout=30,
            what=f"{base}/healthz answering",
        )
        yield base, proc
    finally:
        stop(proc)


def worker_pids(master: int) -> set[int]:
    """The pids of gunicorn's worker processes (children of the master, Linux /proc)."""
    return set(children(master))
