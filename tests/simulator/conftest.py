"""Fixtures of the simulator tests: a simulator on a free port, a recording receiver, an API client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from app.simulator import SimulatorConfig, SimulatorServer
from tests.support import wait_until

API_KEY = "ak_test"
FAST = SimulatorConfig(
    api_keys=(API_KEY,),
    devices=3,
    time_scale=0.01,
    notification_interval=0,
    lifecycle=False,
    wake_interval=0,
    http_timeout=5,
    verify_timeout=5,
)


@dataclass
class Put:
    """One PUT the receiver got."""

    at: float
    headers: dict[str, str]
    body: bytes
    status: int

    def batch(self) -> dict[str, Any]:
        """The body parsed (empty for the registration check)."""
        return json.loads(self.body) if self.body else {}


@dataclass
class Receiver:
    """A tiny callback server recording every PUT; answers are scripted (default 204)."""

    puts: list[Put] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    default: int = 204
    hold: threading.Event | None = None
    stall: int = 0  # the next N PUTs with a body hang until `released` (or 10 s)
    released: threading.Event = field(default_factory=threading.Event)
    active: int = 0
    max_active: int = 0
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """The WSGI app."""
        request = Request(environ)
        body = request.get_data()
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        if self.hold is not None and body:
            self.hold.wait(10)
        with self.lock:
            stalled = self.stall > 0 and bool(body)
            self.stall -= stalled
        if stalled:
            self.released.wait(10)
        with self.lock:
            status = self.script.pop(0) if self.script else self.default
            self.puts.append(Put(time.monotonic(), dict(request.headers), body, status))
            self.active -= 1
        return Response(status=status)(environ, start_response)

    def batches(self, acked_only: bool = True) -> list[dict[str, Any]]:
        """Parsed non-empty bodies (by default only those answered 2xx)."""
        with self.lock:
            puts = list(self.puts)
        return [p.batch() for p in puts if p.body and (not acked_only or p.status < 300)]

    def items(self, kind: str) -> list[Any]:
        """Every acknowledged item of one kind, in order."""
        return [item for batch in self.batches() for item in batch.get(kind, [])]

    def wait_items(self, kind: str, count: int, timeout: float = 5.0) -> list[Any]:
        """Wait until `count` items of `kind` were acknowledged; return them all."""
        wait_until(lambda: len(self.items(kind)) >= count, timeout, f"{count} {kind}")
        return self.items(kind)

    def data_puts(self) -> list[Put]:
        """PUTs with a body."""
        with self.lock:
            return [p for p in self.puts if p.body]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A recording callback receiver on a free port."""
    recorder = Receiver()
    server = make_server("127.0.0.1", 0, recorder, threaded=True)
    recorder.url = f"http://127.0.0.1:{server.server_port}/notify"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield recorder
    if recorder.hold is not None:
        recorder.hold.set()
    recorder.released.set()
    server.shutdown()
    server.server_close()
    thread.join(10)


class Api:
    """Requests to the simulator with the API key."""

    def __init__(self, base: str, key: str = API_KEY) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request; path is relative to the simulator."""
        kwargs.setdefault("timeout", 10)
        return self.session.request(method, self.base + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET."""
        return self.call("GET", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        """PUT."""
        return self.call("PUT", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """POST."""
        return self.call("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        """DELETE."""
        return self.call("DELETE", path, **kwargs)

    def register(self, url: str, headers: dict[str, str] | None = None) -> requests.Response:
        """PUT /v2/notification/callback."""
        return self.put("/v2/notification/callback", json={"url": url, "headers": headers or {}})


@pytest.fixture
def make_sim() -> Iterator[Callable[..., SimulatorServer]]:
    """Start simulators with FAST settings plus overrides; every one is stopped at the end."""
    started: list[SimulatorServer] = []

    def _make(**overrides: Any) -> SimulatorServer:
        server = SimulatorServer(replace(FAST, **overrides)).start()
        started.append(server)
        return server

    yield _make
    for server in started:
        server.stop()


@pytest.fixture
def sim(make_sim: Callable[..., SimulatorServer]) -> SimulatorServer:
    """A quiet, fast simulator with three devices."""
    return make_sim()


@pytest.fixture
def api(sim: SimulatorServer) -> Iterator[Api]:
    """An authenticated client of `sim`."""
    client = Api(sim.url)
    yield client
    client.session.close()


@pytest.fixture
def registered(api: Api, receiver: Receiver) -> Receiver:
    """`receiver` registered as the callback of `sim`."""
    response = api.register(receiver.url, {"Authorization": "Bearer hook-secret"})
    assert response.status_code == 204, response.text
    return receiver


def first_device(server: SimulatorServer, ept: str | None = None) -> str:
    """The id of the first simulated device (of a type)."""
    return next(d["id"] for d in server.sim.directory() if ept is None or d["endpoint_type"] == ept)
