"""The simulator in `devicehooks run`: started as a child process when DM_API_KEY is unset."""

from __future__ import annotations

import logging
import sys
import time
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

    def configure(self, env: MutableMapping[str, str], settings: Settings) -> None:
        """Point DM_API_URL/DM_API_KEY at the simulator and CALLBACK_URL at the local web process."""
        callback_url = f"http://127.0.0.1:{settings.port}{settings.callback_path}"
        env.update(
            DM_API_URL=self.url,
            DM_API_KEY=self.api_key,
            DEVICEHOOKS_ALLOW_HTTP_CALLBACK="1",
            CALLBACK_URL=callback_url,
        )

    def registered(self, settings: Settings) -> bool:
        """True when the simulator holds settings' callback URL and headers."""
        headers = {"Authorization": f"Bearer {self.api_key}"}
        current = requests.get(f"{self.url}/v2/notification/callback", headers=headers, timeout=5)
        wanted = {"url": settings.callback_url, "headers": dict(settings.callback_headers)}
        return current.status_code == 200 and current.json() == wanted

    def wait_registered(
        self, settings: Settings, check: Callable[[], None] = lambda: None, timeout: float = 30.0
    ) -> None:
        """Wait for the web process's own registration (gunicorn's when_ready) instead of making a second.

        The runner used to register the callback itself as well: the simulator saw two
        registrations, each with its verification PUT, at every start. ``check`` raises when a child died.
        """
        deadline = time.monotonic() + timeout
        while not self.registered(settings):
            check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the web process did not register its callback within {timeout:g} s")
            time.sleep(0.1)

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
