"""GET /v2/notification/websocket-connect: the websocket the channel's batches are sent over.

Authentication as Device Management does it: `Authorization: Bearer <key>`, or, for clients that cannot
set headers, `Sec-WebSocket-Protocol: wss,pelion_<key>`. A missing or invalid key closes the socket with
1008, a socket opened without a websocket channel closes with 1011, a newer socket closes the older with 1001.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Iterable
from typing import Any, Protocol

from flask import Response, request
from simple_websocket import ConnectionClosed, Server

from app.simulator.channel import NoWebsocketChannel
from app.simulator.engine import Simulator
from app.simulator.errors import UpgradeRequired

logger = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
UNEXPECTED_CONDITION = 1011
PROTOCOL_PREFIX = "pelion_"


class SupportsGet(Protocol):
    """Header lookup by name (a dict, werkzeug's Headers)."""

    def get(self, key: str) -> str | None:
        """The header's value or None."""


def websocket_api_key(headers: SupportsGet) -> str | None:
    """The API key from the Authorization header or the `pelion_` subprotocol."""
    scheme, _, token = (headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for proto in (headers.get("Sec-WebSocket-Protocol") or "").split(","):
        proto = proto.strip()
        if proto.startswith(PROTOCOL_PREFIX) and len(proto) > len(PROTOCOL_PREFIX):
            return proto[len(PROTOCOL_PREFIX) :]
    return None


def key_is_valid(key: str | None, keys: Iterable[str]) -> bool:
    """Constant-time comparison against every configured key."""
    if not key:
        return False
    return any(hmac.compare_digest(key.encode(), known.encode()) for known in keys)


class _HijackedResponse(Response):
    """Tells the werkzeug server that the view took the socket over (what flask-sock does)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Abort the normal response: the connection is the websocket's now."""
        raise ConnectionError


def connect_view(sim: Simulator) -> Response:
    """Upgrade, authenticate, bind to the channel, and hold the socket until it closes."""
    if (request.headers.get("Upgrade") or "").lower() != "websocket":
        raise UpgradeRequired("Upgrade required: connect with a websocket client")
    ws = Server.accept(request.environ, subprotocols=["wss"])
    if not key_is_valid(websocket_api_key(request.headers), sim.config.api_keys):
        _close(ws, POLICY_VIOLATION, "missing or invalid API key")
        return _HijackedResponse()
    try:
        sim.channel.attach_websocket(ws)
    except NoWebsocketChannel as exc:
        _close(ws, UNEXPECTED_CONDITION, str(exc))
        return _HijackedResponse()
    logger.info("websocket connected")
    try:
        while ws.connected:
            ws.receive(timeout=1.0)  # client frames are ignored; this only notices the close
    except ConnectionClosed:
        pass
    finally:
        sim.channel.detach_websocket(ws)
        logger.info("websocket closed")
    return _HijackedResponse()


def _close(ws: Server, code: int, message: str) -> None:
    """Close with a status code, ignoring a socket already gone."""
    with contextlib.suppress(ConnectionClosed):
        ws.close(code, message)
