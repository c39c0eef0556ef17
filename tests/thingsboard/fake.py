"""A fake ThingsBoard, written from the gateway API's facts (shared/reference/thingsboard-gateway-facts.md).

It connects to the test broker, subscribes to ``v1/gateway/#`` at QoS 1 with a persistent session
(so a broker restart loses nothing addressed to it), and treats every uplink the way ThingsBoard's
gateway session handler does: ``connect`` gets-or-creates the device (type missing or null ->
``default``), telemetry per device MUST be an array of ``{ts, values}`` entries (or plain key/value
objects), attributes per device MUST be an object, ``device`` fields must be present, publishes must
be QoS 1 (the bridge's promise). Where ThingsBoard would close the gateway session, the fake records
a *violation* instead; tests assert there are none. It sends server-side RPCs and shared-attribute
updates like ThingsBoard (``toGatewayJson``) and collects the replies.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support import wait_until

GATEWAY = "v1/gateway/"


@dataclass
class Seen:
    """What the fake ThingsBoard has been told."""

    devices: dict[str, str] = field(default_factory=dict)  # name -> profile (type) at creation
    connected: set[str] = field(default_factory=set)
    connects: list[tuple[str, str]] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)
    implicit: list[str] = field(default_factory=list)  # telemetry before connect: created as "default"
    telemetry: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=lambda: defaultdict(list))
    attributes: dict[str, dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))
    replies: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    violations: list[str] = field(default_factory=list)
    messages: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class FakeThingsBoard:
    """The ThingsBoard side of the gateway API, on a real broker."""

    def __init__(self, port: int, client_id: str = "fake-thingsboard") -> None:
        self.port = port
        self.seen = Seen()
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.reconnect_delay_set(0.05, 0.5)

    def start(self) -> FakeThingsBoard:
        """Connect and wait until subscribed."""
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        wait_until(self._subscribed.is_set, timeout=10, what="the fake ThingsBoard to subscribe")
        return self

    def stop(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        """(Re)subscribe on every connect."""
        client.subscribe(GATEWAY + "#", qos=1)

    # --- uplink, as ThingsBoard's gateway session handler parses it ---------------------------

    def _violation(self, text: str) -> None:
        """Where ThingsBoard would close the gateway session."""
        self.seen.violations.append(text)

    @staticmethod
    def _is_own_downlink(topic: str, doc: Any) -> bool:
        """Messages this fake itself sent (the broker echoes them to its own subscription)."""
        if not isinstance(doc, dict):
            return False
        if topic == GATEWAY + "rpc":
            return "id" not in doc and isinstance(doc.get("data"), dict) and "method" in doc["data"]
        return topic == GATEWAY + "attributes" and set(doc) == {"device", "data"}

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """Check and record one uplink."""
        try:
            doc = json.loads(message.payload)
        except ValueError:
            with self.lock:
                self._violation(f"{message.topic}: not JSON")
            return
        if self._is_own_downlink(message.topic, doc):
            return
        with self.lock:
            self.seen.messages[message.topic] += 1
            if message.qos != 1:
                self._violation(f"{message.topic}: published at QoS {message.qos}, not 1")
            if not isinstance(doc, dict):
                self._violation(f"{message.topic}: top level is not an object")
                return
            handler = {
                "connect": self._connect,
                "disconnect": self._disconnect,
                "telemetry": self._telemetry,
                "attributes": self._attributes,
                "rpc": self._reply,
            }.get(message.topic.removeprefix(GATEWAY))
            if handler is not None:
                handler(doc)

    def _device(self, doc: dict[str, Any], topic: str) -> str | None:
        """The ``device`` field (absent -> NPE -> closed; empty -> "Device name is empty!")."""
        name = doc.get("device")
        if not isinstance(name, str) or not name:
            self._violation(f"{topic}: device missing or empty in {doc}")
            return None
        return name

    def _connect(self, doc: dict[str, Any]) -> None:
        """Get-or-create the device with the profile named by type (default when missing)."""
        name = self._device(doc, "connect")
        if name is None:
            return
        profile = doc.get("type") or "default"
        self.seen.devices.setdefault(name, profile)
        self.seen.connected.add(name)
        self.seen.connects.append((name, profile))

    def _disconnect(self, doc: dict[str, Any]) -> None:
        """End the child session."""
        name = self._device(doc, "disconnect")
        if name is not None:
            self.seen.connected.discard(name)
            self.seen.disconnects.append(name)

    def _telemetry(self, doc: dict[str, Any]) -> None:
        """Per device an array; each element {ts, values} or plain key/values (server time)."""
        for name, entries in doc.items():
            if not isinstance(entries, list):
                self._violation(f"telemetry: {name!r} maps to a {type(entries).__name__}, not an array")
                continue
            if name not in self.seen.connected:
                self.seen.implicit.append(name)
                self.seen.devices.setdefault(name, "default")
                self.seen.connected.add(name)
            for entry in entries:
                if not isinstance(entry, dict):
                    self._violation(f"telemetry: {name!r} element {entry!r} is not an object")
                elif "ts" in entry or "values" in entry:
                    if not isinstance(entry.get("ts"), int) or not isinstance(entry.get("values"), dict):
                        self._violation(f"telemetry: {name!r} element needs integer ts and object values")
                    else:
                        self.seen.telemetry[name].append((entry["ts"], entry["values"]))
                else:
                    self.seen.telemetry[name].append((0, entry))

    def _attributes(self, doc: dict[str, Any]) -> None:
        """Per device an object."""
        for name, values in doc.items():
            if not isinstance(values, dict):
                self._violation(f"attributes: {name!r} maps to a {type(values).__name__}, not an object")
            else:
                self.seen.attributes[name].update(values)

    def _reply(self, doc: dict[str, Any]) -> None:
        """An RPC reply: device, integer id, data."""
        if self._device(doc, "rpc") is None:
            return
        if not isinstance(doc.get("id"), int) or "data" not in doc:
            self._violation(f"rpc reply without an integer id or data: {doc}")
            return
        self.seen.replies[doc["id"]].append(doc)

    # --- downlink, as ThingsBoard sends it ----------------------------------------------------

    def send_rpc(self, device: str, method: str, params: Any) -> int:
        """Publish a server-side RPC (QoS 1); return its id."""
        rpc_id = next(self._ids)
        body = {"device": device, "data": {"id": rpc_id, "method": method, "params": params}}
        self.client.publish(GATEWAY + "rpc", json.dumps(body), qos=1)
        return rpc_id

    def rpc(self, device: str, method: str, params: Any, timeout: float = 15) -> dict[str, Any]:
        """Send an RPC and wait for its reply; return the reply's ``data``."""
        rpc_id = self.send_rpc(device, method, params)
        replies = wait_until(
            lambda: self.seen.replies.get(rpc_id), timeout=timeout, what=f"reply to RPC {rpc_id}"
        )
        assert replies[0]["device"] == device
        data: dict[str, Any] = replies[0]["data"]
        return data

    def share(self, device: str, data: dict[str, Any]) -> None:
        """Publish a shared-attribute update."""
        self.client.publish(GATEWAY + "attributes", json.dumps({"device": device, "data": data}), qos=1)

    def values(self, device: str, key: str) -> list[Any]:
        """Every telemetry value of one key, in arrival order."""
        with self.lock:
            return [values[key] for _, values in self.seen.telemetry.get(device, []) if key in values]
