"""The simulator in `devicehooks run`: started as a child process when DM_API_KEY is unset."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

import requests

from app.config import Settings
from app.redis_server import free_port
from app.simulator.config import DEFAULT_API_KEY

logger = logging.getLogger(__name__)
DEMO_PATHS = ["/3303/*", "/3304/*", "/3311/*"]


class DevSimulator:
    """Where the dev runner's simulator listens and how the other processes reach it."""

    def __init__(self, port: int | None = None, api_key: str = DEFAULT_API_KEY) -> None:
        self.port = port or free_port()
        self.api_key = api_key

    @property
    def url(self) -> str:
        """The simulator's base URL (DM_API_URL)."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The child process: `python -m app simulate` on our port and key."""
        return [sys.executable, "-m", "app", "simulate", "--port", str(self.port), "--api-key", self.api_key]

    def configure(
        self, env: MutableMapping[str, str], settings: Settings, echo: Callable[[str], Any]
    ) -> None:
        """Point DM_API_URL/DM_API_KEY at the simulator and CALLBACK_URL at the local web process."""
        callback_url = f"http://127.0.0.1:{settings.port}{settings.callback_path}"
        env.update(
            DM_API_URL=self.url,
            DM_API_KEY=self.api_key,
            DEVICEHOOKS_ALLOW_HTTP_CALLBACK="1",
            CALLBACK_URL=callback_url,
        )
        echo(
            f"DM_API_KEY is not set: using the Device Management simulator at {self.url} "
            f"(API key {self.api_key}); callback {callback_url}"
        )

    def register_with_simulator(self, settings: Settings, timeout: float = 30.0) -> bool:
        """Register CALLBACK_URL with the simulator unless the gunicorn hook already did."""
        headers = {"Authorization": f"Bearer {self.api_key}"}
        base = f"{self.url}/v2/notification/callback"
        current = requests.get(base, headers=headers, timeout=timeout)
        wanted = {"url": settings.callback_url, "headers": dict(settings.callback_headers)}
        if current.status_code == 200 and current.json() == wanted:
            return False
        response = requests.put(base, json=wanted, headers=headers, timeout=timeout)
        if response.status_code != 204:
            raise RuntimeError(f"registering the callback with the simulator failed: {response.text}")
        logger.info("callback registered with the simulator")
        return True

    def demo(self, settings: Settings, echo: Callable[[str], Any], wait: float = 15.0) -> None:
        """Make events flow at once: subscribe to every sensor, re-register the devices, read one resource."""
        from app.dm.asyncs import AsyncTracker
        from app.dm.client import DMClient
        from app.redis_conn import connect

        client = DMClient(self.url, self.api_key)
        client.put_presubscriptions([{"endpoint-name": "*", "resource-path": DEMO_PATHS}])
        devices = requests.get(f"{self.url}/sim/devices", timeout=10).json()
        for device in devices:
            requests.post(f"{self.url}/sim/devices/{device['id']}/register", timeout=10)
        paths = ", ".join(DEMO_PATHS)
        echo(f"simulator: {len(devices)} devices registered, notifications of {paths} every few s")
        if not devices or not settings.redis_url:
            return
        tracker = AsyncTracker(
            connect(settings.redis_url, socket_timeout=None), queue_name=settings.queue_name
        )
        async_id = tracker.request(client, devices[0]["id"], "GET", "/3/0/0")
        result = tracker.wait(async_id, timeout=wait)
        echo(
            f"async read of {devices[0]['id']}/3/0/0 through the simulator: state={result.state} "
            f"status={result.status} ct={result.ct} payload={result.payload_b64!r}"
        )
