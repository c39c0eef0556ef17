"""The Procfile's processes as a platform runs them, and the CLI (``devicehooks run``: test_devrunner.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from redis import Redis

from app.redis_server import free_port
from tests.conftest import HEADERS, SAMPLES, SECRET
from tests.integration.workers import ROOT, take, worker_env
from tests.support import stop, wait_until

pytestmark = pytest.mark.slow


def procfile_command(name: str) -> str:
    """The command of one Procfile process type."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} line in the Procfile")


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Poll url until it answers 200 (a bounded wait on a condition)."""
    wait_until(lambda: proc.poll() is None and _ok(url), timeout=timeout, what=f"{url} answering")


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_procfile_web_and_worker_deliver_a_put_batch_to_a_handler(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **worker_env(redis_url, "tests.fixtures.handlers:only_healthy"),
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "CALLBACK_HEADERS": json.dumps(HEADERS),
    }
    log = (tmp_path / "procs.log").open("wb")
    web = subprocess.Popen(
        ["bash", "-c", "exec " + procfile_command("web")], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    worker = subprocess.Popen(
        ["bash", "-c", "exec " + procfile_command("worker")], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", web)
        body = (SAMPLES / "batches" / "notifications.json").read_bytes()
        response = requests.put(f"http://127.0.0.1:{port}/notify", data=body, headers=HEADERS, timeout=5)
        assert response.status_code == 204
        assert response.headers["X-Request-ID"]
        received = take(redis, "healthy", 3)
        assert [r["value"] for r in received] == [23.5, 41.0, True]
        assert requests.put(f"http://127.0.0.1:{port}/notify", data=body, timeout=5).status_code == 401
    finally:
        assert stop(worker) == 0
        stop(web)
    log.close()
    assert SECRET.split()[1] not in (tmp_path / "procs.log").read_text()


def test_worker_with_a_broken_handler_module_refuses_to_start(redis_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "worker"],
        env=worker_env(redis_url, "tests.fixtures.no_such_module"), cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "HANDLERS: cannot import 'tests.fixtures.no_such_module'" in result.stderr


def test_worker_without_redis_url_names_the_variable() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "app", "worker"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "REDIS_URL" in result.stderr


def test_decode_prints_one_json_object_per_event() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "decode", str(SAMPLES / "batches" / "registrations.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    event = json.loads(line)
    assert event["kind"] == "registrations"
    assert event["original_ep"] == "my-device-123"


def test_decode_reads_stdin_and_reports_unreadable_input() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "app", "decode", "-"],
        input=b'{"de-registrations": ["a"]}', cwd=ROOT, capture_output=True, timeout=60,
    )  # fmt: skip
    assert json.loads(ok.stdout)["ep"] == "a"
    bad = subprocess.run(
        [sys.executable, "-m", "app", "decode", "-"], input=b"{", cwd=ROOT, capture_output=True, timeout=60
    )
    assert bad.returncode != 0
    assert b"not valid JSON" in bad.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "app", "decode", "/no/such/file.json"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert missing.returncode != 0
    assert b"cannot read /no/such/file.json" in missing.stderr
