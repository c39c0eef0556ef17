"""The Device Management commands of ``devicehooks`` against the simulator, the receiver and Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from redis import Redis

from app.cli import main
from app.config import Settings
from app.dm.asyncs import AsyncTracker
from app.simulator import SimulatorServer
from tests.conftest import HEADERS
from tests.dm.conftest import API_KEY
from tests.dm.helpers import Pump
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(sim: SimulatorServer, redis_url: str, receiver: str, settings: Settings) -> dict[str, str]:
    return {
        "DM_API_URL": sim.url,
        "DM_API_KEY": API_KEY,
        "REDIS_URL": redis_url,
        "DEVICEHOOKS_QUEUE": settings.queue_name,
        "CALLBACK_URL": receiver,
        "CALLBACK_HEADERS": json.dumps(HEADERS),
        "DEVICEHOOKS_ALLOW_HTTP_CALLBACK": "1",
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def run(env: dict[str, str]) -> CliRunner:
    return CliRunner(env=env)


@pytest.fixture
def pump(redis: Redis, settings: Settings, tracker: AsyncTracker) -> Iterator[Pump]:
    with Pump(redis, settings.queue_name, tracker) as started:
        yield started


def test_register_show_and_delete_the_callback(run: CliRunner, receiver: str) -> None:
    result = run.invoke(main, ["register"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"callback": receiver, "outcome": "registered"}
    shown = json.loads(run.invoke(main, ["callback"]).output)
    assert shown == {
        "channel": "CALLBACK",
        "callback": {"url": receiver, "headers": {"Authorization": "***"}},
    }
    assert json.loads(run.invoke(main, ["callback", "delete"]).output) == {"deleted": True}


def test_get_put_post_wait_for_the_worker(run: CliRunner, device: str, pump: Pump) -> None:
    assert run.invoke(main, ["register"]).exit_code == 0
    put = run.invoke(main, ["put", device, "/1/0/1", "300"])
    assert put.exit_code == 0, put.output
    assert json.loads(put.output)["status"] == 200
    got = run.invoke(main, ["get", device, "/1/0/1", "--timeout", "10"])
    assert (got.exit_code, json.loads(got.output)) == (0, 300)
    assert run.invoke(main, ["post", device, "/3/0/4"]).exit_code == 0
    refused = run.invoke(main, ["put", device, "/3/0/0", "x"])
    assert refused.exit_code == 1
    assert "status=405 error=METHOD_NOT_ALLOWED" in refused.output


def test_errors_print_the_message_and_request_id(run: CliRunner, env: dict[str, str]) -> None:
    assert run.invoke(main, ["register"]).exit_code == 0
    missing = run.invoke(main, ["get", "no-such-device", "/3/0/0"])
    assert missing.exit_code == 1
    assert "DEVICE_NOT_FOUND" in missing.output
    assert "request_id=" in missing.output
    no_key = CliRunner(env={**env, "DM_API_KEY": ""}).invoke(main, ["callback"])
    assert no_key.exit_code == 1
    assert "DM_API_KEY" in no_key.output
    not_a_channel = run.invoke(main, ["channel"])
    assert not_a_channel.exit_code == 1
    assert "DEVICEHOOKS_CHANNEL" in not_a_channel.output


def test_subscribe_and_presubscriptions(run: CliRunner, device: str, tmp_path: Path) -> None:
    subscribed = run.invoke(main, ["subscribe", device, "/3303/0/5700"])
    assert subscribed.exit_code == 0
    assert json.loads(subscribed.output)["subscribed"] is True
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"endpoint-name": device, "resource-path": ["/3/0/9"]}]))
    assert json.loads(run.invoke(main, ["presubscriptions", "set", str(rules)]).output) == {"set": 1}
    shown = json.loads(run.invoke(main, ["presubscriptions"]).output)
    assert shown == [{"endpoint-name": device, "resource-path": ["/3/0/9"]}]
    rules.write_text("{}")
    bad = run.invoke(main, ["presubscriptions", "set", str(rules)])
    assert bad.exit_code == 1
    assert "JSON array" in bad.output


def test_channel_command_runs_until_sigterm(
    env: dict[str, str], sim: SimulatorServer, tmp_path: Path
) -> None:
    log = tmp_path / "channel.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "channel", "--mode", "websocket"],
            env={**os.environ, **env, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "DEBUG"},
            stdout=out,
            stderr=out,
            cwd=ROOT,
        )
    try:
        wait_until(
            lambda: (
                (sim.sim.channel.websocket_status() or {}).get("status") == "connected"
                or proc.poll() is not None
            ),
            timeout=20,
            what="the channel process to connect",
        )
        assert proc.poll() is None, log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert proc.returncode == 0, log.read_text()
    assert API_KEY not in log.read_text()
