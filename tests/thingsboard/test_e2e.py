"""End to end: simulator -> web -> worker (built-in handler) -> bridge -> broker -> fake ThingsBoard."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis

from app import create_app
from app.config import Settings
from app.dm.client import DMClient
from app.redis_server import RedisServer
from app.simulator import SimulatorConfig, SimulatorServer
from app.simulator.devices import LIGHT_TYPE
from app.thingsboard import stream
from tests.conftest import HEADERS
from tests.dm.helpers import serving
from tests.integration.workers import running_worker
from tests.support import stop, wait_until
from tests.thingsboard.broker import Mosquitto
from tests.thingsboard.conftest import bridge_env, start_bridge
from tests.thingsboard.fake import FakeThingsBoard

pytestmark = pytest.mark.slow
API_KEY = "ak_thingsboard"
TEMPERATURE = "3303/0/5700"
LIGHT = "3311/0/5850"


@dataclass
class System:
    """Everything one end-to-end test talks to."""

    sim: SimulatorServer
    redis: Redis
    tb: FakeThingsBoard
    bridge: subprocess.Popen[bytes]


@pytest.fixture
def system(
    mosquitto: Mosquitto, fake_tb: FakeThingsBoard, settings: Settings, tmp_path: Path
) -> Iterator[System]:
    """The simulator as Device Management; web, worker and bridge on a Redis of this test's own."""
    config = SimulatorConfig(
        api_keys=(API_KEY,), time_scale=0.01, devices=0, notification_interval=0, lifecycle=False,
        wake_interval=0, request_timeout=60_000,
    )  # fmt: skip
    sim = SimulatorServer(config).start()
    own = RedisServer(directory=str(tmp_path / "redis")).start()
    redis = Redis.from_url(own.url, socket_timeout=None)
    app_redis = Redis.from_url(own.url, socket_timeout=2, socket_connect_timeout=0.5)
    app = create_app({"SETTINGS": settings.with_overrides(redis_url=own.url), "REDIS": app_redis})
    client = DMClient(sim.url, API_KEY, timeout=5, max_retries=2, backoff=0.01, max_backoff=0.05)
    env = bridge_env(
        own.url,
        mosquitto.port,
        DM_API_URL=sim.url,
        DM_API_KEY=API_KEY,
        THINGSBOARD_RPC_TIMEOUT="2",
        HANDLERS="",
    )
    try:
        with serving(app) as base, running_worker(env, tmp_path / "worker.log"):
            client.put_callback(base + settings.callback_path, HEADERS)
            bridge = start_bridge(env, tmp_path / "bridge.log")
            try:
                yield System(sim, redis, fake_tb, bridge)
            finally:
                stop(bridge)
    finally:
        client.close()
        sim.stop()
        own.stop()


def resolved(redis: Redis) -> bool:
    """True once some async request resolved with a device answer."""
    results = [json.loads(redis.get(key) or "{}") for key in redis.keys("devicehooks:async:res:*")]
    return any(result.get("state") == "resolved" for result in results)


def connected(tb: FakeThingsBoard, name: str) -> bool:
    """True once ThingsBoard saw a connect for ``name``."""
    with tb.lock:
        return name in tb.seen.connected


def test_registration_notification_and_rpcs_round_trip(system: System) -> None:
    sim, tb = system.sim.sim, system.tb
    sensor = sim.register_device(name="kitchen", ept="Sensor")
    wait_until(lambda: connected(tb, sensor.ep), timeout=30, what="the registration as a connect")
    assert tb.seen.devices[sensor.ep] == "Sensor"
    sim.inject_notification(sensor.ep, "/3303/0/5700", 23.5)
    wait_until(lambda: 23.5 in tb.values(sensor.ep, TEMPERATURE), timeout=30, what="the notification")
    read = tb.rpc(sensor.ep, "read", {"path": TEMPERATURE})
    assert read == {"status": 200, "value": sim.device(sensor.ep).values["/3303/0/5700"]}

    light = sim.register_device(name="hall", ept=LIGHT_TYPE)
    wait_until(lambda: stream.device(system.redis, light.ep), timeout=30, what="the light's connect")
    before = sim.device(light.ep).values["/3311/0/5850"]
    written = tb.rpc(light.ep, "write", {"path": LIGHT, "value": not before})
    assert written["status"] == 200
    assert sim.device(light.ep).values["/3311/0/5850"] is (not before)
    tb.share(light.ep, {LIGHT: before, "colour": "red"})
    wait_until(
        lambda: sim.device(light.ep).values["/3311/0/5850"] is before, timeout=30, what="the attribute PUT"
    )
    assert tb.seen.violations == []
    assert tb.seen.implicit == []


def test_device_that_does_not_answer_in_time_gets_one_error_reply_and_its_late_answer_none(
    system: System,
) -> None:
    sim, tb, redis = system.sim.sim, system.tb, system.redis
    sleepy = sim.register_device(name="sleepy", ept="Sensor", queue_mode=True)
    wait_until(lambda: stream.device(redis, sleepy.ep), timeout=30, what="the connect")
    sim.sleep_device(sleepy.ep)
    reply = tb.rpc(sleepy.ep, "read", {"path": TEMPERATURE}, timeout=15)
    assert reply["status"] == 504
    assert "TIMEOUT" in reply["error"]
    sim.wake_device(sleepy.ep)  # the device answers now, after the bridge gave up
    wait_until(lambda: resolved(redis), timeout=30, what="the late answer to resolve")
    assert [len(r) for r in tb.seen.replies.values()] == [1]


def test_sigterm_lets_the_rpc_in_flight_finish_and_publish_its_reply(system: System) -> None:
    sim, tb, redis = system.sim.sim, system.tb, system.redis
    sleepy = sim.register_device(name="sleepy", ept="Sensor", queue_mode=True)
    wait_until(lambda: stream.device(redis, sleepy.ep), timeout=30, what="the connect")
    sim.sleep_device(sleepy.ep)
    rpc_id = tb.send_rpc(sleepy.ep, "read", {"path": TEMPERATURE})
    wait_until(lambda: redis.keys("devicehooks:async:rec:*"), timeout=15, what="the device request")
    system.bridge.send_signal(signal.SIGTERM)
    assert system.bridge.wait(timeout=20) == 0
    (reply,) = wait_until(lambda: tb.seen.replies.get(rpc_id), what="the reply published while draining")
    assert reply["data"]["status"] == 504
