"""Downlink parsing: RPC methods -> device requests, shared attributes -> PUTs, replies."""

from __future__ import annotations

from typing import Any

import pytest

from app.dm.asyncs import AsyncResult
from app.thingsboard.rpc import (
    DeviceCall,
    Rpc,
    RpcError,
    attribute_writes,
    device_call,
    is_attribute_update,
    is_rpc_request,
    parse_rpc,
    reply,
)


def rpc(method: str, params: Any) -> Rpc:
    """An RPC to device d."""
    return parse_rpc({"device": "d", "data": {"id": 7, "method": method, "params": params}})


def result(**kw: Any) -> AsyncResult:
    """An async result."""
    base: dict[str, Any] = dict(
        id="a", ep="d", path="/3303/0/5700", method="GET", status=200, payload_b64="MjEuNQ==",
        ct="text/plain", error=None, timed_out=False, resolved_at=1.0,
    )  # fmt: skip
    return AsyncResult(**{**base, **kw})


def test_read_write_execute_become_get_put_post() -> None:
    assert device_call(rpc("read", {"path": "3303/0/5700"})) == DeviceCall("GET", "/3303/0/5700", None)
    assert device_call(rpc("write", {"path": "/3311/0/5850", "value": True})) == DeviceCall(
        "PUT", "/3311/0/5850", b"1"
    )
    assert device_call(rpc("write", {"path": "3311/0/5851", "value": 40})).payload == b"40"
    assert device_call(rpc("execute", {"path": "3/0/4"})) == DeviceCall("POST", "/3/0/4", None)
    assert device_call(rpc("execute", {"path": "3/0/4", "args": "0='x'"})).payload == b"0='x'"


def test_params_sent_as_json_text_are_parsed() -> None:
    assert device_call(rpc("read", '{"path": "3/0/0"}')).path == "/3/0/0"


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("toggle", {"path": "3/0/0"}, "unknown method"),
        ("read", {}, "params.path"),
        ("read", {"path": "temperature"}, "params.path"),
        ("write", {"path": "3/0/0"}, "needs params.value"),
        ("write", {"path": "3/0/0", "value": {"a": 1}}, "must be a number"),
    ],
)
def test_bad_rpcs_are_errors_with_status_400(method: str, params: Any, message: str) -> None:
    with pytest.raises(RpcError, match=message) as caught:
        device_call(rpc(method, params))
    assert caught.value.status == 400


def test_rpc_without_an_integer_id_cannot_be_parsed() -> None:
    with pytest.raises(RpcError):
        parse_rpc({"device": "d", "data": {"id": "x", "method": "read"}})


def test_requests_and_updates_are_told_apart_from_the_bridges_own_uplinks() -> None:
    assert is_rpc_request({"device": "d", "data": {"id": 1, "method": "read", "params": {}}})
    assert not is_rpc_request({"device": "d", "id": 1, "data": {"status": 200, "value": 1}})
    assert is_attribute_update({"device": "d", "data": {"3311/0/5850": True}})
    assert not is_attribute_update({"d": {"ep": "d", "ept": "T", "resources": []}})


def test_attribute_keys_that_are_paths_become_puts_and_the_rest_is_ignored() -> None:
    calls, ignored = attribute_writes({"3311/0/5850": False, "colour": "red", "3311/0/5706": {"a": 1}})
    assert calls == [DeviceCall("PUT", "/3311/0/5850", b"0")]
    assert ignored == ["colour", "3311/0/5706"]


def test_replies_carry_the_value_or_the_error() -> None:
    request = rpc("read", {"path": "3303/0/5700"})
    assert reply(request, result(), 21.5) == {"device": "d", "id": 7, "data": {"status": 200, "value": 21.5}}
    failed = reply(request, result(status=404, payload_b64=None, error="NOT_FOUND"), None)
    assert failed == {"device": "d", "id": 7, "data": {"status": 404, "error": "NOT_FOUND"}}
    pending = reply(
        request,
        result(status=None, payload_b64=None, error="TIMEOUT: no async-response", state="pending"),
        None,
    )
    assert pending["data"]["status"] == 504
