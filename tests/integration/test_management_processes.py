"""The Procfile's web (gunicorn, two workers) and worker with the state, the API and /metrics."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from app.redis_server import free_port
from tests.conftest import HEADERS
from tests.integration.test_processes import procfile_command, wait_http
from tests.integration.workers import ROOT, worker_env
from tests.support import stop, wait_until

pytestmark = pytest.mark.slow
KEY = "mk-process-test-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


def scrape(base: str) -> dict[str, float]:
    """Every unlabelled sample and labelled ones as name{k=v}."""
    text = requests.get(f"{base}/metrics", headers=AUTH, timeout=5).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def notification(ep: str, value: str) -> bytes:
    payload = base64.b64encode(value.encode()).decode()
    return json.dumps(
        {"notifications": [{"ep": ep, "path": "/3303/0/5700", "ct": "text/plain", "payload": payload}]}
    ).encode()


def test_two_gunicorn_workers_and_a_worker_count_into_one_scrape_and_serve_the_state(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    metrics_dir = tmp_path / "metrics"
    env = {
        **worker_env(redis_url, "tests.fixtures.handlers:only_healthy"),
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "WEB_THREADS": "1",  # a worker takes one connection at a time: the held PUT pins one of the two
        "CALLBACK_HEADERS": json.dumps(HEADERS),
        "MANAGEMENT_API_KEYS": KEY,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    log = (tmp_path / "procs.log").open("wb")
    web = subprocess.Popen(
        ["bash", "-c", "exec " + procfile_command("web")], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    worker = subprocess.Popen(
        ["bash", "-c", "exec " + procfile_command("worker")], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    try:
        wait_http(f"{base}/readyz", web)
        # Hold one gunicorn worker on a half-sent PUT, so that the other serves the next ones; then let
        # the first finish: each worker has counted, so only a scrape that adds both up shows the total.
        body = notification("dev-0", "0")
        held = socket.create_connection(("127.0.0.1", port), timeout=10)
        head = f"PUT /notify HTTP/1.1\r\nHost: x\r\nAuthorization: {HEADERS['Authorization']}\r\n"
        held.sendall(f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body[:10])
        for i in range(1, 20):
            with requests.Session() as fresh:
                response = fresh.put(
                    f"{base}/notify", data=notification(f"dev-{i % 4}", str(i)), headers=HEADERS, timeout=5
                )
                assert response.status_code == 204
        held.sendall(body[10:])
        assert held.recv(100).startswith(b"HTTP/1.1 204")
        held.close()
        assert requests.put(f"{base}/notify", data=b"{}", timeout=5).status_code == 401
        assert len(list(metrics_dir.glob("counter_*.db"))) == 2  # one file per gunicorn worker
        for _ in range(6):  # whichever worker serves the scrape sees every worker's counts
            samples = scrape(base)
            assert samples["devicehooks_callback_puts_total{status=204}"] == 20
            assert samples["devicehooks_callback_puts_total{status=401}"] == 1
            assert samples["devicehooks_ack_seconds_count"] == 21
        wait_until(
            lambda: scrape(base).get("devicehooks_batches_total") == 20,
            timeout=30,
            what="the worker's counts",
        )
        samples = scrape(base)
        assert samples["devicehooks_events_total{kind=notifications}"] == 20
        assert samples["devicehooks_handler_delivered_total{handler=devicehooks.state}"] == 20
        assert samples["devicehooks_store_size{store=devices}"] == 4
        assert samples["devicehooks_workers"] == 1
        listed = requests.get(f"{base}/api/v1/devices?include=total_count", headers=AUTH, timeout=5).json()
        assert ([d["id"] for d in listed["data"]], listed["total_count"]) == (
            ["dev-0", "dev-1", "dev-2", "dev-3"],
            4,
        )
        history = requests.get(f"{base}/api/v1/devices/dev-3/events", headers=AUTH, timeout=5).json()
        assert [e["value"] for e in history["data"]] == [3.0, 7.0, 11.0, 15.0, 19.0]
        assert requests.get(f"{base}/metrics", timeout=5).status_code == 401
    finally:
        worker_exit = stop(worker)
        stop(web)
        log.close()
    assert worker_exit == 0
    assert KEY not in (tmp_path / "procs.log").read_text()


def test_the_web_process_never_imports_the_workers_package(redis_url: str) -> None:
    code = f"""
import sys
from app import create_app
from app.config import Settings
settings = Settings(redis_url={redis_url!r}, insecure_no_auth=True, management_api_keys=({KEY!r},))
client = create_app({{"SETTINGS": settings}}).test_client()
urls = ["/api/v1/devices", "/api/v1/async-requests", "/api/v1/dead-letters", "/api/v1/rejections"]
for url in [*urls, "/metrics", "/status/login"]:
    assert client.get(url, headers={AUTH!r}).status_code == 200, url
loaded = sorted(name for name in sys.modules if name == "workers" or name.startswith("workers."))
assert not loaded, loaded
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
