"""DMClient against the simulator: the error model as typed exceptions, paging, subscriptions, logs."""

from __future__ import annotations

import logging

import pytest

from app.dm.client import DMClient
from app.errors import DMApiError, DMBadRequest, DMNotFound, DMPreconditionFailed, DMUnauthorized
from app.simulator import SimulatorServer
from tests.dm.conftest import API_KEY


def test_a_bad_key_is_a_typed_error_with_the_error_model(sim: SimulatorServer) -> None:
    with pytest.raises(DMUnauthorized) as caught:
        DMClient(sim.url, "ak_wrong", max_retries=0).get_callback()
    error = caught.value
    assert (error.status, error.error_type) == (401, "invalid_auth")
    assert error.message
    assert error.request_id
    assert "ak_wrong" not in str(error)


def test_not_found_and_precondition_failed(client: DMClient, device: str) -> None:
    assert client.get_callback() is None
    assert client.get_channel() is None
    assert client.delete_callback() is False
    with pytest.raises(DMNotFound, match="DEVICE_NOT_FOUND") as caught:
        client.device_request("no-such-device", "GET", "/3/0/0", "a1")
    assert caught.value.request_id
    with pytest.raises(DMPreconditionFailed, match="No notification channel"):
        client.device_request(device, "GET", "/3/0/0", "a2")
    with pytest.raises(DMBadRequest, match="MALFORMED_ASYNC_ID"):
        client.device_request(device, "GET", "/3/0/0", "bad id!")


def test_device_directory_pages_follow_has_more_and_filters(client: DMClient, sim: SimulatorServer) -> None:
    for index in range(4):
        sim.sim.register_device(name=f"extra-{index}", ept="sim-light")
    first = client.list_devices(limit=2, include_total=True)
    assert len(first.data) == 2
    assert first.has_more
    assert first.total_count == 7
    every = list(client.iter_devices(limit=2))
    assert [d["id"] for d in every] == [d["id"] for d in sim.sim.directory()]
    lights = list(client.iter_devices(limit=2, filters={"endpoint_type": "sim-light"}))
    assert lights
    assert all(d["endpoint_type"] == "sim-light" for d in lights)
    newest_first = list(client.iter_devices(limit=3, order="desc"))
    assert newest_first == list(reversed(every))
    sim.sim.deregister_device(every[0]["id"])
    assert every[0]["id"] not in {e["name"] for e in client.list_endpoints()}


def test_resources_subscriptions_and_presubscriptions(client: DMClient, device: str) -> None:
    assert {"uri": "/3/0/0", "rt": "", "obs": False, "type": "text/plain"} in client.get_resources(device)
    assert client.subscribe(device, "3303/0/5700") is None
    assert client.is_subscribed(device, "/3303/0/5700")
    assert client.endpoint_subscriptions(device) == ["/3303/0/5700"]
    client.unsubscribe(device, "/3303/0/5700")
    assert not client.is_subscribed(device, "/3303/0/5700")
    client.subscribe(device, "/3/0/9")
    client.delete_endpoint_subscriptions(device)
    assert client.endpoint_subscriptions(device) == []
    rules = [{"endpoint-type": "sim-sensor", "resource-path": ["/3303/*"]}]
    client.put_presubscriptions(rules)
    assert client.get_presubscriptions() == rules
    client.delete_presubscriptions()
    assert client.get_presubscriptions() == []


def test_request_ids_are_logged_and_the_key_never_is(
    client: DMClient, device: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client.get_resources(device)
    with pytest.raises(DMApiError):
        client.get_resources("no-such-device")
    client.put_websocket()
    records = [r.getMessage() for r in caplog.records if r.name == "app.dm.client"]
    assert any("request_id=" in line and "request_id=None" not in line for line in records)
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(client)
