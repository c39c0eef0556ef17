"""Fixtures of the Device Management tests: the simulator, a client, a real receiver, a tracker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis

from app import create_app
from app.config import Settings
from app.dm.asyncs import AsyncTracker
from app.dm.client import DMClient
from app.simulator import SimulatorConfig, SimulatorServer
from tests.dm.helpers import serving

API_KEY = "ak_simulator"


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    """A quiet simulator (no periodic notifications or lifecycle events), 100x faster than real time."""
    config = SimulatorConfig(
        api_keys=(API_KEY,),
        time_scale=0.01,
        devices=3,
        notification_interval=0,
        lifecycle=False,
        verify_timeout=5,
        http_timeout=5,
    )
    server = SimulatorServer(config).start()
    yield server
    server.stop()


@pytest.fixture
def client(sim: SimulatorServer) -> Iterator[DMClient]:
    """A client of the simulator with fast retries."""
    dm = DMClient(sim.url, API_KEY, timeout=5, max_retries=2, backoff=0.01, max_backoff=0.05)
    yield dm
    dm.close()


@pytest.fixture
def receiver(settings: Settings, redis: Redis) -> Iterator[str]:
    """The real callback app served on a free port; yields the callback URL."""
    app = create_app({"SETTINGS": settings, "REDIS": redis})
    with serving(app) as base:
        yield base + settings.callback_path


@pytest.fixture
def tracker(redis: Redis, settings: Settings) -> AsyncTracker:
    """A tracker on the test queue."""
    return AsyncTracker(redis, result_ttl=60, default_timeout=10, queue_name=settings.queue_name)


@pytest.fixture
def device(sim: SimulatorServer) -> str:
    """The id of a registered, responsive simulated device."""
    with sim.sim.lock:
        return sorted(sim.sim.devices)[0]
