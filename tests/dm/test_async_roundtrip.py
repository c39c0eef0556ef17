"""Device requests end to end: client -> simulator -> callback PUT -> the real receiver -> Redis queue ->
a stand-in worker resolving async-responses -> AsyncTracker.wait, plus the legacy early-arrival race."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from redis import Redis

from app.config import Settings
from app.dm.asyncs import RESOLVED, TIMEOUT, AsyncTracker
from app.dm.client import DMClient
from app.simulator import SimulatorConfig, SimulatorServer
from tests.conftest import HEADERS
from tests.dm.conftest import API_KEY
from tests.dm.helpers import Pump
from tests.support import wait_until


def b64(text: str) -> str:
    """A payload as Device Management sends it."""
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def pump(redis: Redis, settings: Settings, tracker: AsyncTracker) -> Iterator[Pump]:
    with Pump(redis, settings.queue_name, tracker) as running:
        yield running


@pytest.fixture
def wired(client: DMClient, receiver: str, pump: Pump) -> DMClient:
    """The callback registered with the simulator; a pump resolves what arrives."""
    client.put_callback(receiver, HEADERS)
    return client


def test_read_write_execute_round_trips(
    wired: DMClient, tracker: AsyncTracker, device: str, pump: Pump
) -> None:
    written = tracker.call(wired, device, "PUT", "/1/0/1", "120", "text/plain", timeout=10)
    assert (written.state, written.status, written.ok) == (RESOLVED, 200, True)
    read = tracker.call(wired, device, "GET", "/1/0/1", timeout=10)
    assert (read.payload_b64, read.ct, read.ep, read.path) == (b64("120"), "text/plain", device, "/1/0/1")
    executed = tracker.call(wired, device, "POST", "/3/0/4", timeout=10)
    assert executed.ok
    refused = tracker.call(wired, device, "PUT", "/3/0/0", "nope", "text/plain", timeout=10)
    assert (refused.status, refused.error, refused.ok) == (405, "METHOD_NOT_ALLOWED", False)
    assert pump.sources() == {"callback"}


def test_handler_name_comes_back_once_to_the_worker(
    wired: DMClient, tracker: AsyncTracker, device: str, pump: Pump
) -> None:
    async_id = tracker.request(wired, device, "GET", "/3/0/0", handler="myapp.handlers:on_model")
    result = tracker.wait(async_id, 10)
    assert result.ok
    assert result.payload_b64
    wait_until(lambda: pump.handlers_of(async_id), what="the delivery job")
    assert pump.handlers_of(async_id) == ["myapp.handlers:on_model"]


def test_refused_post_marks_the_record_failed(wired: DMClient, tracker: AsyncTracker) -> None:
    with pytest.raises(Exception, match="DEVICE_NOT_FOUND"):
        tracker.request(wired, "no-such-device", "GET", "/3/0/0", async_id="refused-1")
    result = tracker.wait("refused-1", 1)
    assert (result.state, result.status) == ("failed", 404)


def test_unanswered_request_times_out_and_the_late_504_is_ignored(
    redis: Redis, receiver: str, settings: Settings, tracker: AsyncTracker
) -> None:
    config = SimulatorConfig(
        api_keys=(API_KEY,),
        time_scale=0.01,
        devices=1,
        timeout_fraction=1.0,
        notification_interval=0,
        lifecycle=False,
    )
    with SimulatorServer(config) as sim, Pump(redis, settings.queue_name, tracker) as pump:
        client = DMClient(sim.url, API_KEY, max_retries=0)
        client.put_callback(receiver, HEADERS)
        (silent,) = sim.sim.devices
        async_id = tracker.request(client, silent, "GET", "/3/0/0", timeout=0.01)
        wait_until(lambda: tracker.expire_overdue(), what="the record to expire")
        result = tracker.wait(async_id, 1)
        assert (result.state, result.timed_out, result.status, result.error) == (
            TIMEOUT,
            True,
            504,
            "TIMEOUT",
        )
        wait_until(
            lambda: any(i["id"] == async_id for i in pump.items("async-responses")), what="the late 504"
        )
        assert [r.id for r in pump.resolved] == []
        client.close()


def test_early_async_response_of_the_legacy_api_is_matched_once(
    redis: Redis, receiver: str, settings: Settings, tracker: AsyncTracker
) -> None:
    config = SimulatorConfig(
        api_keys=(API_KEY,),
        time_scale=0.01,
        devices=1,
        early_async=True,
        notification_interval=0,
        lifecycle=False,
    )
    with SimulatorServer(config) as sim, Pump(redis, settings.queue_name, tracker) as pump:
        client = DMClient(sim.url, API_KEY, max_retries=0)
        client.put_callback(receiver, HEADERS)
        (ep,) = sim.sim.devices
        reply = client.resource_request("GET", ep, "/3/0/0")
        assert reply.status == 202
        assert reply.async_id
        # The simulator delivered the answer before its 202: the pump saw it before anyone knew the id.
        wait_until(lambda: redis.exists(f"devicehooks:async:early:{reply.async_id}"), what="the early record")
        tracker.track(reply.async_id, ep, "GET", "/3/0/0", handler="h")
        result = tracker.wait(reply.async_id, 10)
        assert result.ok
        assert result.payload_b64
        assert result.handler == "h"
        wait_until(lambda: pump.handlers_of(reply.async_id), what="the delivery job")
        assert pump.handlers_of(reply.async_id) == ["h"]
        assert [r.id for r in pump.resolved] == []  # kept as early, settled by track()
        assert pump.sources() == {"callback"}  # no forged batch
        client.close()
