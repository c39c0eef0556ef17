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
        """Register CALLBACK_URL with the simulator unless already done (the gunicorn hook also does).

        Temporary: app.dm.registration registers the callback from gunicorn's when_ready; this makes
        `devicehooks run` work regardless. The lead may remove it.
        """
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
