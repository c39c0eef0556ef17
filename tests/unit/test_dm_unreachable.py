"""A Device Management URL nothing listens on: named in the error, not retried when it is local."""

from __future__ import annotations

import pytest
import requests

from app.dm.client import DMClient, refused_locally
from app.errors import DMUnavailable
from app.redis_server import free_port


def test_a_refused_local_address_fails_at_once_naming_the_host() -> None:
    port = free_port()
    waits: list[float] = []
    client = DMClient(f"http://127.0.0.1:{port}", "ak_x", sleep=waits.append)
    with pytest.raises(DMUnavailable) as caught:
        client.get_callback()
    assert waits == []
    assert f"127.0.0.1:{port} (DM_API_URL)" in str(caught.value)
    assert "ak_x" not in str(caught.value)


def test_a_refused_remote_address_is_still_retried() -> None:
    refused = requests.ConnectionError("Connection refused")
    assert refused_locally(refused, "http://localhost:9")
    assert not refused_locally(refused, "https://api.us-east-1.mbedcloud.com")
