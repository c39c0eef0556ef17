"""The websocket and long-poll channels against the simulator, feeding the callback's queue."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from redis import Redis

from app.batches import BatchQueue
from app.config import Settings
from app.dm.asyncs import AsyncTracker
from app.dm.channels import ChannelFatal, ChannelRunner, PullChannel, WebsocketChannel
from app.dm.client import DMClient
from app.simulator import SimulatorServer
from tests.conftest import HEADERS
from tests.dm.helpers import Pump
from tests.support import wait_until


@contextmanager
def running(runner: ChannelRunner) -> Iterator[threading.Thread]:
    """Run a channel in a thread; stop it and check it ended."""
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive()


def websocket_runner(client: DMClient, redis: Redis, settings: Settings) -> WebsocketChannel:
    batches = BatchQueue(redis, settings.queue_name)
    return WebsocketChannel(
        client, redis, batches, lock_ttl=3, backoff=0.01, max_backoff=0.05, poll_interval=0.05
    )


@pytest.fixture
def pump(redis: Redis, settings: Settings, tracker: AsyncTracker) -> Iterator[Pump]:
    with Pump(redis, settings.queue_name, tracker) as started:
        yield started


def notified(pump: Pump, value: str) -> bool:
    """Whether a notification carrying ``value`` (base64 of its text) reached the queue."""
    import base64

    payload = base64.b64encode(value.encode()).decode()
    return any(item.get("payload") == payload for item in pump.items("notifications"))


def test_websocket_replaces_the_callback_and_feeds_the_same_queue(
    client: DMClient,
    redis: Redis,
    settings: Settings,
    receiver: str,
    sim: SimulatorServer,
    device: str,
    pump: Pump,
    tracker: AsyncTracker,
) -> None:
    client.put_callback(receiver, HEADERS)
    runner = websocket_runner(client, redis, settings)
    with running(runner):
        wait_until(runner.connected.is_set, what="the websocket")
        assert client.get_channel() == "WEB_SOCKET"
        assert client.get_callback() is None
        sim.sim.inject_notification(device, "/3303/0/5700", "22.5")
        wait_until(lambda: notified(pump, "22.5"), what="the notification")
        assert tracker.call(client, device, "GET", "/1/0/1", timeout=10).ok
        assert pump.sources() == {"websocket"}
        client.delete_websocket()  # closes the socket (1001): the runner registers and reconnects
        wait_until(
            lambda: client.get_websocket() == {"status": "connected", "queueSize": 0}, what="a reconnect"
        )
        sim.sim.inject_notification(device, "/3303/0/5700", "23.5")
        wait_until(lambda: notified(pump, "23.5"), what="the notification after the reconnect")


def test_only_one_process_runs_the_channel(
    client: DMClient, redis: Redis, settings: Settings, sim: SimulatorServer
) -> None:
    first, second = websocket_runner(client, redis, settings), websocket_runner(client, redis, settings)
    with running(first):
        wait_until(first.connected.is_set, what="the first channel")
        with running(second):
            assert not second.connected.wait(0.3)  # standing by on the lock
            assert sim.sim.channel.websocket_status() == {"status": "connected", "queueSize": 0}
    with running(second):
        wait_until(second.connected.is_set, what="the second channel taking over")


def test_a_refused_key_stops_the_channel(sim: SimulatorServer, redis: Redis, settings: Settings) -> None:
    bad = DMClient(sim.url, "ak_wrong", max_retries=0)
    runner = websocket_runner(bad, redis, settings)
    with pytest.raises(ChannelFatal, match="refused"):
        runner.run(threading.Event())
    assert redis.get("devicehooks:dm:channel:lock") is None


def test_long_poll_feeds_the_same_queue(
    client: DMClient, redis: Redis, settings: Settings, sim: SimulatorServer, device: str, pump: Pump
) -> None:
    client.put_websocket()
    runner = PullChannel(
        client,
        redis,
        BatchQueue(redis, settings.queue_name),
        wait=5,
        lock_ttl=3,
        backoff=0.01,
        max_backoff=0.05,
    )
    with running(runner):
        wait_until(runner.connected.is_set, what="the first poll")
        assert client.get_channel() == "LONG_POLLING"
        sim.sim.inject_notification(device, "/3303/0/5700", "19.5")
        wait_until(lambda: notified(pump, "19.5"), what="the notification")
    assert pump.sources() == {"pull"}
