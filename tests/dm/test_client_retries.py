"""DMClient retries against a tiny scripted server (429/503 first): backoff, Retry-After, POST safety.

This is the one place with its own HTTP server: the simulator answers like Device Management, and a
retry test needs answers in a given order. Everything else runs against the simulator.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from app.dm.client import DMClient, parse_retry_after
from app.errors import DMRateLimited, DMUnavailable
from tests.dm.helpers import serving

KEY = "ak_retrytest0123456789abcdef"


class Scripted:
    """A WSGI app that answers from a script of (status, headers, body) and records what it got."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], str]] = []
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.seen.append((request.method, request.full_path, dict(request.headers)))
        status, headers, body = self.script.pop(0) if self.script else (200, {}, "{}")
        headers = {"X-Request-ID": f"rid{len(self.seen)}", "Content-Type": "application/json", **headers}
        return Response(body, status=status, headers=headers)(environ, start_response)


@pytest.fixture
def scripted() -> Iterator[tuple[Scripted, str]]:
    app = Scripted()
    with serving(app) as url:
        yield app, url


def make_client(url: str, sleeps: list[float], max_retries: int = 3) -> DMClient:
    return DMClient(url, KEY, max_retries=max_retries, backoff=0.01, max_backoff=0.05, sleep=sleeps.append)


def test_retry_after_is_honoured_then_backoff(scripted: tuple[Scripted, str]) -> None:
    app, url = scripted
    app.script = [(429, {"Retry-After": "2"}, ""), (503, {}, ""), (200, {}, '{"url": "https://x"}')]
    sleeps: list[float] = []
    assert make_client(url, sleeps).get_callback() == {"url": "https://x"}
    assert len(app.seen) == 3
    assert 2.0 <= sleeps[0] <= 2.02
    assert 0 < sleeps[1] <= 0.05
    assert all(headers["Authorization"] == f"Bearer {KEY}" for _, _, headers in app.seen)


def test_gives_up_after_max_retries_with_the_last_error(scripted: tuple[Scripted, str]) -> None:
    app, url = scripted
    error = {
        "object": "error",
        "code": 503,
        "type": "service_unavailable",
        "message": "busy",
        "request_id": "r9",
    }
    body = json.dumps(error)
    app.script = [(503, {}, body)] * 3
    sleeps: list[float] = []
    with pytest.raises(DMUnavailable) as caught:
        make_client(url, sleeps, max_retries=2).get_channel()
    assert (caught.value.status, caught.value.error_type, caught.value.request_id) == (
        503,
        "service_unavailable",
        "r9",
    )
    assert len(app.seen) == 3
    assert len(sleeps) == 2


def test_post_is_retried_on_429_but_not_on_a_500(scripted: tuple[Scripted, str]) -> None:
    app, url = scripted
    app.script = [(429, {"Retry-After": "0"}, ""), (202, {}, "")]
    sleeps: list[float] = []
    client = make_client(url, sleeps)
    client.device_request("ep1", "POST", "/3/0/4", "a-1")
    assert [method for method, _, _ in app.seen] == ["POST", "POST"]
    assert app.seen[0][1] == "/v2/device-requests/ep1?async-id=a-1"
    app.script = [(500, {}, "")]
    with pytest.raises(DMUnavailable):
        client.device_request("ep1", "POST", "/3/0/4", "a-2")
    assert len(app.seen) == 3


def test_rate_limited_after_retries(scripted: tuple[Scripted, str]) -> None:
    app, url = scripted
    app.script = [(429, {}, "TOO_MANY_REQUESTS")] * 2
    with pytest.raises(DMRateLimited, match="TOO_MANY_REQUESTS"):
        make_client(url, [], max_retries=1).get_presubscriptions()


def _hang_up(server: socket.socket) -> None:
    """Accept connections and close them at once (a connection error that is not a refusal)."""
    with contextlib.suppress(OSError):
        while True:
            server.accept()[0].close()


def test_connection_errors_are_retried_then_raised_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sleeps: list[float] = []
    server = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=_hang_up, args=(server,), daemon=True).start()
    with server, pytest.raises(DMUnavailable) as caught:
        make_client(f"http://127.0.0.1:{server.getsockname()[1]}", sleeps, max_retries=2).get_callback()
    assert caught.value.status is None
    assert caught.value.error_type == "connection_error"
    assert len(sleeps) == 2
    assert KEY not in caplog.text
    assert KEY not in str(caught.value)


def test_redirects_are_not_followed(scripted: tuple[Scripted, str]) -> None:
    app, url = scripted
    app.script = [(301, {"Location": "https://elsewhere.example/v2/notification/callback"}, "")]
    with pytest.raises(Exception, match="redirected") as caught:
        make_client(url, []).get_callback()
    assert KEY not in str(caught.value)
    assert len(app.seen) == 1


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("100000") == 300.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
