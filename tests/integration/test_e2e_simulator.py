"""The simulator against the product end to end: real web app, real worker process, real Redis."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from app import create_app
from app.config import Settings
from app.dm.asyncs import AsyncTracker
from app.dm.client import DMClient
from app.redis_server import RedisServer
from app.simulator import SimulatorConfig, SimulatorServer
from tests.conftest import HEADERS
from tests.dm.helpers import serving
from tests.integration.workers import running_worker, take, worker_env
from tests.support import wait_until

pytestmark = pytest.mark.slow
API_KEY = "ak_simulator"


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    """A quiet simulator, 100x faster than real time."""
    config = SimulatorConfig(
        api_keys=(API_KEY,), time_scale=0.01, devices=4, notification_interval=0, lifecycle=False,
        batch_size=500, request_timeout=50,
    )  # fmt: skip
    server = SimulatorServer(config).start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, with persistence on, to stop and restart."""
    server = RedisServer(directory=str(tmp_path / "redis"), appendonly=True).start()
    yield server
    server.stop()


@pytest.fixture
def product(
    sim: SimulatorServer, own_redis: RedisServer, settings: Settings, tmp_path: Path
) -> Iterator[tuple[Redis, DMClient, AsyncTracker]]:
    """The callback app and a worker on own_redis, registered as the simulator's callback."""
    redis = Redis.from_url(own_redis.url, socket_timeout=None)
    app_redis = Redis.from_url(own_redis.url, socket_timeout=2, socket_connect_timeout=0.5)
    app = create_app({"SETTINGS": settings.with_overrides(redis_url=own_redis.url), "REDIS": app_redis})
    client = DMClient(sim.url, API_KEY, timeout=5, max_retries=2, backoff=0.01, max_backoff=0.05)
    env = worker_env(own_redis.url, "tests.fixtures.handlers:with_async")
    with serving(app) as base, running_worker(env, tmp_path / "worker.log"):
        client.put_callback(base + settings.callback_path, HEADERS)
        yield redis, client, AsyncTracker(redis, queue_name=settings.queue_name, default_timeout=20)
    client.close()


def test_handler_receives_every_notification_the_simulator_sent(
    sim: SimulatorServer, product: tuple[Redis, DMClient, AsyncTracker]
) -> None:
    redis, _, _ = product
    devices = [d["id"] for d in sim.sim.directory()]
    sent = {sim.sim.inject_notification(devices[i % 4], "/3303/0/5700", 20 + i / 10) for i in range(300)}
    received = take(redis, "healthy", 300)
    assert {r["uid"] for r in received} == sent
    wait_until(lambda: sim.sim.stats()["acknowledged"] >= 300, what="the simulator to see every ack")


def test_async_read_resolves_and_reaches_the_named_handler(
    sim: SimulatorServer, product: tuple[Redis, DMClient, AsyncTracker]
) -> None:
    redis, client, tracker = product
    device = sim.sim.directory()[0]["id"]
    async_id = tracker.request(client, device, "GET", "/3/0/0", handler="async-result")
    result = tracker.wait(async_id, timeout=20)
    assert result.state == "resolved"
    assert result.status == 200
    (seen,) = take(redis, "async", 1)
    assert seen["id"] == async_id
    assert seen["ep"] == device
    assert seen["path"] == "/3/0/0"
    assert seen["value"] == base64.b64decode(result.payload_b64 or "").decode()  # a string resource


def test_legacy_read_answered_before_its_202_still_resolves_once(
    sim: SimulatorServer, product: tuple[Redis, DMClient, AsyncTracker]
) -> None:
    redis, client, tracker = product
    sim.sim.config.early_async = True
    device = sim.sim.directory()[0]["id"]
    reply = client.resource_request("GET", device, "/3303/0/5700")
    async_id = reply.async_id
    assert async_id
    tracker.track(async_id, device, "GET", "/3303/0/5700", handler="async-result")
    result = tracker.wait(async_id, timeout=20)
    assert result.state == "resolved"
    (seen,) = take(redis, "async", 1)
    assert seen["id"] == async_id
    assert isinstance(seen["value"], float)  # typed by the record's path
    assert redis.blpop(["test:received:async"], timeout=1) is None  # exactly once


def test_receiver_503_is_retried_by_the_sender_and_nothing_is_lost(
    sim: SimulatorServer, own_redis: RedisServer, product: tuple[Redis, DMClient, AsyncTracker]
) -> None:
    redis, _, _ = product
    devices = [d["id"] for d in sim.sim.directory()]
    first = {sim.sim.inject_notification(devices[0], "/3303/0/5700", 1.0) for _ in range(50)}
    assert {r["uid"] for r in take(redis, "healthy", 50)} == first
    own_redis.stop()  # the web app now answers 503; the simulator keeps the batch and retries
    during = {sim.sim.inject_notification(devices[1], "/3303/0/5700", 2.0) for _ in range(50)}
    wait_until(lambda: sim.sim.stats()["retried"] >= 1, what="a retried PUT")
    own_redis.start()  # same port and directory; appendonly kept what was queued before
    received = take(redis, "healthy", 50, timeout=30)
    assert {r["uid"] for r in received} == during
    assert json.loads(json.dumps(sim.sim.stats()))["dropped"] == 0


def test_request_that_never_answers_times_out_to_its_named_handler(
    product: tuple[Redis, DMClient, AsyncTracker],
) -> None:
    redis, _, tracker = product
    async_id = tracker.create("dev-lost", "GET", "/3/0/0", handler="async-result", timeout=0.5)
    (seen,) = take(redis, "async", 1, timeout=30)
    assert seen["id"] == async_id
    assert seen["status"] == 504
    assert seen["error"] == "TIMEOUT"
    assert tracker.wait(async_id, timeout=1).state == "timeout"


def test_tlv_notifications_as_mbed_cloud_client_sends_them_reach_handlers_as_the_scalar(
    sim: SimulatorServer, product: tuple[Redis, DMClient, AsyncTracker]
) -> None:
    redis, _, _ = product
    device = sim.sim.directory()[0]["id"]
    readings = [23.5, 21.5, 24.611110687, -7.0]  # text floats in TLV: 4 bytes, 4 bytes, 12 bytes, 4 bytes
    uids = [
        sim.sim.inject_notification(device, "/3303/0/5700", v, ct="application/vnd.oma.lwm2m+tlv")
        for v in readings
    ]
    received = {r["uid"]: r["value"] for r in take(redis, "healthy", len(readings))}
    assert [received[uid] for uid in uids] == readings
