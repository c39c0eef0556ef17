"""Downlink: ThingsBoard's server-side RPCs and shared-attribute updates -> Device Management requests.

The parsing is pure (:func:`parse_rpc`, :func:`device_call`, :func:`attribute_writes`); the one call
into the async tracker is :func:`send_and_wait` (the adapter: a change of the tracker's signature is
fixed there). Every RPC gets exactly one reply: a value, or an error for an unknown device, an unknown
method, bad parameters, a refused request, or no answer within THINGSBOARD_RPC_TIMEOUT (9 s by
default, under ThingsBoard's 10 s default RPC timeout, so the error reaches the caller before
ThingsBoard gives up); an answer that comes after the timeout is resolved by the worker as usual but
never published.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from app.dm.asyncs import AsyncResult, AsyncTracker
from app.dm.client import DMClient

logger = logging.getLogger(__name__)

TEXT = "text/plain"
PATH_CHARS = frozenset("0123456789/")


class RpcError(ValueError):
    """An RPC that cannot be sent; ``status`` goes into the error reply."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Rpc:
    """One server-side RPC addressed to a child device."""

    device: str
    id: int
    method: str
    params: Any


@dataclass(frozen=True)
class DeviceCall:
    """The device request an RPC or attribute write becomes."""

    method: str
    path: str
    payload: bytes | None


def is_rpc_request(doc: Any) -> bool:
    """True for a server-side RPC ``{"device", "data": {"id", "method", …}}`` (a reply has a top-level id)."""
    return (
        isinstance(doc, dict)
        and "id" not in doc
        and isinstance(doc.get("device"), str)
        and isinstance(doc.get("data"), dict)
        and "method" in doc["data"]
    )


def is_attribute_update(doc: Any) -> bool:
    """True for a shared-attribute update ``{"device": NAME, "data": {…}}`` (an uplink maps names)."""
    return isinstance(doc, dict) and set(doc) == {"device", "data"} and isinstance(doc["device"], str)


def parse_rpc(doc: dict[str, Any]) -> Rpc:
    """The RPC of a request document; RpcError when its id is not an integer."""
    data = doc["data"]
    rpc_id = data.get("id")
    if isinstance(rpc_id, bool) or not isinstance(rpc_id, int):
        raise RpcError(400, f"rpc id must be an integer, got {rpc_id!r}")
    params = data.get("params")
    if isinstance(params, str):
        with contextlib.suppress(ValueError):
            params = json.loads(params)  # the RPC widgets send params as JSON text
    return Rpc(device=doc["device"], id=rpc_id, method=str(data.get("method")), params=params)


def resource_path(value: Any) -> str | None:
    """``3303/0/5700`` or ``/3303/0/5700`` -> ``/3303/0/5700``; None when it is not a resource path."""
    if not isinstance(value, str):
        return None
    stripped = value.strip().strip("/")
    parts = stripped.split("/")
    if not stripped or not set(stripped) <= PATH_CHARS or not 1 <= len(parts) <= 4 or "" in parts:
        return None
    return "/" + stripped


def text_payload(value: Any, what: str) -> bytes:
    """A value in LwM2M plain text: booleans as 1/0, numbers and strings as written."""
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int | float | str):
        return str(value).encode("utf-8")
    raise RpcError(400, f"{what} must be a number, a string or a boolean, got {type(value).__name__}")


def device_call(rpc: Rpc) -> DeviceCall:
    """read -> GET, write -> PUT of ``value``, execute -> POST of ``args``; RpcError otherwise."""
    params = rpc.params if isinstance(rpc.params, dict) else {}
    path = resource_path(params.get("path"))
    if rpc.method not in ("read", "write", "execute"):
        raise RpcError(400, f"unknown method {rpc.method!r}: use read, write or execute")
    if path is None:
        raise RpcError(
            400, f"params.path must be a resource path like 3303/0/5700, got {params.get('path')!r}"
        )
    if rpc.method == "read":
        return DeviceCall("GET", path, None)
    if rpc.method == "write":
        if "value" not in params:
            raise RpcError(400, "write needs params.value")
        return DeviceCall("PUT", path, text_payload(params["value"], "params.value"))
    args = params.get("args")
    return DeviceCall("POST", path, None if args is None else text_payload(args, "params.args"))


def attribute_writes(data: dict[str, Any]) -> tuple[list[DeviceCall], list[str]]:
    """PUTs for the keys that are resource paths, and the keys ignored (not paths, or deletions)."""
    calls, ignored = [], []
    for key, value in data.items():
        path = resource_path(key)
        if path is None or key == "deleted":
            ignored.append(key)
            continue
        try:
            calls.append(DeviceCall("PUT", path, text_payload(value, key)))
        except RpcError:
            ignored.append(key)
    return calls, ignored


def send_and_wait(
    tracker: AsyncTracker, client: DMClient, ep: str, call: DeviceCall, timeout: float
) -> AsyncResult:
    """The adapter to the async tracker: send one device request, wait for its result up to ``timeout``."""
    async_id = tracker.request(
        client,
        ep,
        call.method,
        call.path,
        call.payload,
        TEXT if call.payload is not None else None,
        timeout=timeout,
    )
    return tracker.wait(async_id, timeout)


def reply(rpc: Rpc, result: AsyncResult, value: Any) -> dict[str, Any]:
    """The reply document for a settled (or timed-out) request whose decoded value is ``value``."""
    if result.ok:
        return {"device": rpc.device, "id": rpc.id, "data": {"status": result.status, "value": value}}
    status = result.status if result.status is not None else 504
    error = result.error or f"status {result.status}"
    return error_reply(rpc.device, rpc.id, status, error)


def error_reply(device: str, rpc_id: int, status: int, error: str) -> dict[str, Any]:
    """An error reply document."""
    return {"device": device, "id": rpc_id, "data": {"status": status, "error": error}}
