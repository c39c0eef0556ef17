"""Callback registration against the simulator and the real receiver (which answers DM's check PUT)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from app import create_app
from app.config import ConfigError, Settings
from app.dm import registration
from app.dm.client import DMClient
from app.dm.registration import REGISTERED, UNCHANGED, Registrar, check_callback, load_presubscriptions
from app.errors import DMBadRequest
from app.redis_server import free_port
from app.simulator import SimulatorServer
from tests.conftest import HEADERS
from tests.dm.conftest import API_KEY
from tests.dm.helpers import serving
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
RULES = [{"endpoint-type": "sim-sensor", "resource-path": ["/3303/0/5700"]}]


def registrar(client: DMClient, redis: Redis, url: str, **kwargs: object) -> Registrar:
    return Registrar(client, redis, url, HEADERS, RULES, backoff=0.01, max_backoff=0.05, **kwargs)  # type: ignore[arg-type]


def test_registers_after_the_receivers_check_and_applies_presubscriptions(
    client: DMClient, redis: Redis, receiver: str, sim: SimulatorServer
) -> None:
    assert registrar(client, redis, receiver).ensure(force=True) == REGISTERED
    assert client.get_callback() == {"url": receiver, "headers": HEADERS}
    assert client.get_channel() == "CALLBACK"
    assert client.get_presubscriptions() == RULES
    assert redis.llen("rq:queue:test") == 0  # the check PUT was empty: nothing queued
    assert registrar(client, redis, receiver).ensure() == UNCHANGED


def test_wrong_headers_fail_the_check(client: DMClient, redis: Redis, receiver: str) -> None:
    bad = Registrar(client, redis, receiver, {"Authorization": "Bearer wrong"})
    with pytest.raises(DMBadRequest, match="401"):
        bad.ensure(force=True)
    assert client.get_callback() is None


@pytest.mark.parametrize("other", ["websocket", "pull"])
def test_another_channel_is_deleted_first(
    other: str, client: DMClient, redis: Redis, receiver: str, sim: SimulatorServer
) -> None:
    if other == "websocket":
        client.put_websocket()
    else:
        assert client.pull(wait=5) is None
    assert client.get_channel() in ("WEB_SOCKET", "LONG_POLLING")
    with pytest.raises(DMBadRequest, match="CHANNEL_EXISTS"):
        client.put_callback(receiver, HEADERS)
    assert registrar(client, redis, receiver).ensure(force=True) == REGISTERED
    assert client.get_channel() == "CALLBACK"
    assert client.get_websocket() is None


def test_registration_retries_until_the_receiver_answers(
    client: DMClient, redis: Redis, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}{settings.callback_path}"
    stop = threading.Event()
    thread = threading.Thread(target=registrar(client, redis, url).ensure_until_done, args=(stop, True))
    thread.start()
    try:
        wait_until(lambda: "callback registration failed" in caplog.text, what="a failed attempt")
        with serving(create_app({"SETTINGS": settings, "REDIS": redis}), port):
            wait_until(lambda: client.get_callback() is not None, what="a later attempt to succeed")
    finally:
        stop.set()
        thread.join(10)
    assert "not accessible" in caplog.text


@pytest.fixture
def running(client: DMClient, redis: Redis, receiver: str) -> Iterator[threading.Event]:
    """The registration loop (startup + a check every 50 ms) in a thread, stopped after the test."""
    stop = threading.Event()
    loop = registrar(client, redis, receiver, check_interval=0.05)
    thread = threading.Thread(target=loop.run, args=(stop, receiver, 10.0), daemon=True)
    thread.start()
    yield stop
    stop.set()
    thread.join(10)
    assert not thread.is_alive()


def test_periodic_check_re_registers_a_removed_or_changed_callback(
    running: threading.Event, client: DMClient, receiver: str, sim: SimulatorServer
) -> None:
    wait_until(lambda: client.get_callback() is not None, what="the startup registration")
    assert sim.sim.channel.delete_callback()  # Device Management removed it (24 h of failures)
    wait_until(lambda: client.get_callback() is not None, what="the re-registration")
    client.put_callback(receiver + "?registered-by=someone-else", HEADERS)
    wait_until(lambda: (client.get_callback() or {}).get("url") == receiver, what="our URL restored")


def test_lock_keeps_registration_to_one_process(client: DMClient, redis: Redis, receiver: str) -> None:
    lock = redis.lock(registration.LOCK_NAME, timeout=5)
    assert lock.acquire(blocking=False)
    try:
        assert (
            Registrar(client, redis, receiver, HEADERS, lock_wait=0.1).ensure(force=True) == registration.BUSY
        )
        assert client.get_callback() is None
    finally:
        lock.release()


def test_callback_settings_are_checked_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="CALLBACK_URL is not set"):
        check_callback(Settings())
    with pytest.raises(ConfigError, match="CALLBACK_URL must be an https"):
        check_callback(Settings(callback_url="http://example.com/notify"))
    url, headers = check_callback(Settings(callback_url="http://x/notify", allow_http_callback=True))
    assert (url, headers) == ("http://x/notify", {})
    with pytest.raises(ConfigError, match="400"):
        check_callback(Settings(callback_url="https://x/notify", callback_headers={"X-Secret": "s" * 400}))


def test_presubscriptions_file_is_validated(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(RULES))
    assert load_presubscriptions(str(good)) == RULES
    assert load_presubscriptions(None) is None
    for content, message in [
        ("{}", "JSON array"),
        ('[{"resource-path": []}]', "resource-path"),
        ('[{"endpoint": "x"}]', "unknown keys"),
        ("not json", "not valid JSON"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        with pytest.raises(ConfigError, match=rf"PRESUBSCRIPTIONS_FILE.*{message}"):
            load_presubscriptions(str(bad))
    with pytest.raises(ConfigError, match=r"PRESUBSCRIPTIONS_FILE.*cannot be read"):
        load_presubscriptions(str(tmp_path / "missing.json"))


def test_start_background_skips_cleanly_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    assert registration.start_background(Settings(callback_url="https://x/notify")) is None
    assert "DM_API_KEY is not set" in caplog.text
    assert registration.start_background(Settings(dm_api_key=API_KEY)) is None
    assert "CALLBACK_URL is not set" in caplog.text
    assert registration.start_background(Settings(dm_api_key=API_KEY, channel="websocket")) is None
    assert "DEVICEHOOKS_CHANNEL" in caplog.text
    http = Settings(dm_api_key=API_KEY, callback_url="http://x/notify")
    assert registration.start_background(http, redis=Redis()) is None
    assert "must be an https" in caplog.text
    assert API_KEY not in caplog.text


def test_start_background_registers(
    settings: Settings, redis: Redis, receiver: str, sim: SimulatorServer, client: DMClient
) -> None:
    configured = settings.with_overrides(
        dm_api_url=sim.url, dm_api_key=API_KEY, callback_url=receiver, allow_http_callback=True
    )
    started = registration.start_background(configured, redis=redis, local_url=receiver)
    assert started is not None
    thread, stop = started
    try:
        wait_until(lambda: client.get_callback() is not None, what="the background registration")
    finally:
        stop.set()
        thread.join(10)


def test_gunicorn_registers_on_startup(
    sim: SimulatorServer, redis_url: str, client: DMClient, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/notify"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "REDIS_URL": redis_url,
        "DEVICEHOOKS_QUEUE": "test",
        "DM_API_URL": sim.url,
        "DM_API_KEY": API_KEY,
        "CALLBACK_URL": url,
        "CALLBACK_HEADERS": json.dumps(HEADERS),
        "DEVICEHOOKS_ALLOW_HTTP_CALLBACK": "1",
        "LOG_LEVEL": "DEBUG",
    }
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "python:app.gunicorn_config", "app:create_app()"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=out,
        )
    try:
        wait_until(
            lambda: client.get_callback() is not None or proc.poll() is not None, timeout=30, what="gunicorn"
        )
        assert proc.poll() is None, log.read_text()
        assert client.get_callback() == {"url": url, "headers": HEADERS}
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text()
    assert "registered the callback" in text
    assert API_KEY not in text
