"""``devicehooks run``: Redis (embedded when REDIS_URL is unset), web and worker, stopped together."""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import requests

from app import config as config_module
from app.redis_server import RedisServer

logger = logging.getLogger(__name__)

STATE_DIR = Path(".devicehooks")
LOG_HANDLER = "workers.handlers.log"


class DevRunner:
    """Owns every process the development runner starts."""

    def __init__(self, env: dict[str, str], echo: Callable[[str], Any] = print) -> None:
        self.env = env
        self.echo = echo
        self.redis: RedisServer | None = None
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.simulator: Any = None  # app.simulator.devrun.DevSimulator when DM_API_KEY is unset
        self.made_up_key: str | None = None  # MANAGEMENT_API_KEYS for this run when none was configured

    def prepare(self) -> config_module.Settings:
        """Fill in what is missing for local use: Redis, a callback secret; validate the rest."""
        settings = config_module.from_env(self.env)
        if not settings.redis_url:
            self.redis = RedisServer(directory=str(STATE_DIR / "redis"), appendonly=True).start()
            self.env["REDIS_URL"] = self.redis.url
            self.echo(f"embedded Redis: {self.redis.url} (data in {STATE_DIR / 'redis'})")
        if not settings.callback_headers and not settings.insecure_no_auth:
            secret = secrets.token_urlsafe(24)
            self.env["CALLBACK_HEADERS"] = json.dumps({"Authorization": f"Bearer {secret}"})
            self.echo(f"no CALLBACK_HEADERS set: generated a callback secret for this run: Bearer {secret}")
        self.env.setdefault("WEB_CONCURRENCY", "1")
        if not settings.management_api_keys:
            self.env["MANAGEMENT_API_KEYS"] = self.made_up_key = secrets.token_urlsafe(24)
        if not settings.dm_api_key:
            from app.simulator.devrun import DevSimulator

            self.simulator = DevSimulator()
            self.simulator.configure(self.env, settings, self.echo)
        handlers = [h for h in self.env.get("HANDLERS", "").split(",") if h.strip()]
        if LOG_HANDLER not in handlers:
            self.env["HANDLERS"] = ",".join([LOG_HANDLER, *handlers])
            self.echo(f"events are logged by the built-in handler {LOG_HANDLER}")
        return config_module.from_env(self.env)

    def spawn(self, name: str, args: list[str]) -> None:
        """Start one child process with the runner's environment."""
        proc = subprocess.Popen(args, env=self.env)
        self.children[name] = proc
        self.echo(f"started {name} (pid {proc.pid})")

    def wait_http(self, url: str, timeout: float = 20.0) -> None:
        """Poll ``url`` until it answers 200 or a child exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_children()
            try:
                if requests.get(url, timeout=0.5).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"{url} did not answer within {timeout} s")

    def check_children(self) -> None:
        """Raise when a child process has exited."""
        for name, proc in self.children.items():
            code = proc.poll()
            if code is not None:
                raise RuntimeError(f"{name} (pid {proc.pid}) exited with status {code}")

    def stop(self) -> None:
        """Stop every child by pid (SIGTERM, then SIGKILL after 10 s), then Redis."""
        for proc in self.children.values():
            if proc.poll() is None:
                proc.terminate()
        for name, proc in self.children.items():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.echo(f"{name} (pid {proc.pid}) did not stop in 10 s; killing it")
                proc.kill()
                proc.wait()
        if self.redis:
            self.redis.stop()
        self.echo("stopped everything devicehooks run started")

    def start(self) -> config_module.Settings:
        """Start Redis, web and worker; print where to PUT."""
        settings = self.prepare()
        python = sys.executable
        if self.simulator:
            self.spawn("simulator", self.simulator.command())
            self.wait_http(self.simulator.url + "/stats")
        self.spawn("worker", [python, "-m", "app", "worker"])
        if settings.thingsboard_host:
            self.spawn("thingsboard", [python, "-m", "app", "thingsboard"])
        self.spawn(
            "web", [python, "-m", "gunicorn", "--config", "python:app.gunicorn_config", "app:create_app()"]
        )
        base = f"http://127.0.0.1:{settings.port}"
        self.wait_http(base + "/readyz")
        self.announce(settings, base)
        if self.simulator:
            self.simulator.register_with_simulator(settings)
            self.simulator.demo(settings, self.echo)
        return settings

    def announce(self, settings: config_module.Settings, base: str) -> None:
        """Tell the user where to PUT and with which headers."""
        header_args = " ".join(f"-H '{k}: {v}'" for k, v in settings.callback_headers.items())
        self.echo(f"\ndevicehooks is up: PUT batches to {base}{settings.callback_path}")
        sample = (
            '{"notifications":[{"ep":"dev-1","path":"/3303/0/5700","ct":"text/plain","payload":"MjMuNQ=="}]}'
        )
        self.echo(
            f"  curl -X PUT {base}{settings.callback_path} {header_args} "
            f"-H 'Content-Type: application/json' -d '{sample}'"
        )
        key = self.made_up_key or "<a key from MANAGEMENT_API_KEYS>"
        self.echo(f"status page: {base}/status (log in with the management key {key})")
        self.echo(f"metrics: {base}/metrics and API: {base}/api/v1/ (Authorization: Bearer <that key>)")
        self.echo("Ctrl-C stops everything.\n")

    def serve(self) -> int:
        """Run until Ctrl-C / SIGTERM or a child dies; always stop everything."""

        def _on_signal(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _on_signal)
        try:
            self.start()
            while True:
                self.check_children()
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.echo("\nstopping ...")
            return 0
        except (RuntimeError, config_module.ConfigError) as exc:
            self.echo(f"devicehooks run: {exc}")
            return 1
        finally:
            self.stop()


def main() -> int:
    """Entry point of ``devicehooks run``."""
    return DevRunner(dict(os.environ)).serve()
