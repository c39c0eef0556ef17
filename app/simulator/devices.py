"""Simulated LwM2M endpoints: resources, deterministic values and payload encoding."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from workers.decoding import default_object_model, encode_b64, encode_paths

TEXT = "text/plain"
TLV = "application/vnd.oma.lwm2m+tlv"
SENSOR_TYPE = "sim-sensor"
LIGHT_TYPE = "sim-light"


@dataclass(frozen=True)
class ResourceSpec:
    """One registered resource: its path, CoRE attributes and allowed operations (R, W, E)."""

    path: str
    rt: str = ""
    obs: bool = False
    ops: str = "R"
    units: str = ""

    def registration(self) -> dict[str, Any]:
        """The ResourcesData item of a registration."""
        return {"path": self.path, "rt": self.rt, "ct": TEXT, "obs": self.obs, "if": ""}

    def directory(self) -> dict[str, Any]:
        """The Resource item of GET /v2/endpoints/{device-id}."""
        return {"uri": self.path, "rt": self.rt, "obs": self.obs, "type": TEXT}


COMMON = (
    ResourceSpec("/1/0/1", ops="RW"),
    ResourceSpec("/3/0/0"),
    ResourceSpec("/3/0/1"),
    ResourceSpec("/3/0/2"),
    ResourceSpec("/3/0/4", ops="E"),
    ResourceSpec("/3/0/9", rt="battery", obs=True),
    ResourceSpec("/3/0/13", obs=True),
)
TEMPERATURE = (
    ResourceSpec("/3303/0/5700", rt="temperature", obs=True),
    ResourceSpec("/3303/0/5701"),
)
HUMIDITY = (ResourceSpec("/3304/0/5700", rt="humidity", obs=True),)
LIGHT = (
    ResourceSpec("/3311/0/5850", rt="light", obs=True, ops="RW"),
    ResourceSpec("/3311/0/5851", rt="dimmer", obs=True, ops="RW"),
)
RESOURCES_BY_TYPE = {
    SENSOR_TYPE: COMMON + TEMPERATURE + HUMIDITY,
    LIGHT_TYPE: COMMON + LIGHT + TEMPERATURE,
}


@dataclass
class PendingRequest:
    """A device request waiting for a queue-mode device to wake up."""

    async_id: str
    method: str
    uri: str
    accept: str | None
    content_type: str | None
    payload_b64: str | None


@dataclass
class Device:
    """One simulated endpoint and its state in Device Management."""

    ep: str
    name: str
    ept: str
    index: int
    resources: tuple[ResourceSpec, ...]
    queue_mode: bool = False
    responsive: bool = True
    tlv: bool = False  # notifies single resources as TLV instead of text/plain
    tlv_style: str = "mbed"  # TLV values like mbed Cloud Client (text floats, 8-byte ints) or "spec" binary
    registered: bool = True
    awake: bool = True
    values: dict[str, Any] = field(default_factory=dict)
    subscriptions: set[str] = field(default_factory=set)
    pending: list[PendingRequest] = field(default_factory=list)
    ticks: int = 0
    wakes: int = 0

    def resource(self, path: str) -> ResourceSpec | None:
        """The registered resource at exactly `path`."""
        return next((res for res in self.resources if res.path == path), None)

    def under(self, path: str) -> list[ResourceSpec]:
        """Registered resources at or below `path` (an object, instance or resource path)."""
        return [res for res in self.resources if covers(path, res.path)]

    def registration_item(self) -> dict[str, Any]:
        """The EndpointData of a registration or reg-update (uid/timestamp added by the caller)."""
        return {
            "ep": self.ep,
            "original-ep": self.name,
            "ept": self.ept,
            "q": self.queue_mode,
            "resources": [res.registration() for res in self.resources],
        }

    def directory_entry(self) -> dict[str, Any]:
        """The device-directory (/v3/devices) view of this device."""
        return {
            "object": "device",
            "id": self.ep,
            "endpoint_name": self.name,
            "endpoint_type": self.ept,
            "state": "registered" if self.registered else "deregistered",
            "queue_mode": self.queue_mode,
        }


def covers(sub_path: str, res_path: str) -> bool:
    """True when a subscription or request on `sub_path` includes the resource at `res_path`."""
    base = sub_path.rstrip("/")
    return res_path == base or res_path.startswith(base + "/")


def device_id(rng: random.Random) -> str:
    """A 32-hex-digit, Device-Management-like device id."""
    return f"0{rng.getrandbits(124):031x}"


def make_device(
    rng: random.Random, index: int, name: str | None = None, ept: str | None = None, **flags: Any
) -> Device:
    """Create one device with its initial values, deterministic for a given `rng` state."""
    ept = ept or (SENSOR_TYPE if index % 2 == 0 else LIGHT_TYPE)
    resources = RESOURCES_BY_TYPE.get(ept, RESOURCES_BY_TYPE[SENSOR_TYPE])
    device = Device(
        ep=device_id(rng),
        name=name or f"sim-{index + 1:04d}",
        ept=ept,
        index=index,
        resources=resources,
        tlv=index % 3 == 2,
        **flags,
    )
    device.values = initial_values(device, rng)
    return device


def initial_values(device: Device, rng: random.Random) -> dict[str, Any]:
    """The starting value of every readable resource."""
    values: dict[str, Any] = {
        "/1/0/1": 3600,
        "/3/0/0": "devicehooks",
        "/3/0/1": f"simulator-{device.ept}",
        "/3/0/2": f"SN{rng.getrandbits(32):08X}",
        "/3/0/9": 100,
        "/3/0/13": 1_700_000_000,
        "/3303/0/5700": round(18 + rng.random() * 6, 2),
        "/3303/0/5701": "Cel",
        "/3304/0/5700": round(35 + rng.random() * 20, 2),
        "/3311/0/5850": False,
        "/3311/0/5851": 50,
    }
    return {path: value for path, value in values.items() if device.resource(path)}


def step_values(device: Device) -> None:
    """Advance the observable values one tick (deterministic: a function of index and tick)."""
    device.ticks += 1
    t = device.ticks
    for res in device.resources:
        if res.obs and res.path in device.values:
            device.values[res.path] = _next(res.path, device.values[res.path], device.index, t)


def _next(path: str, value: Any, index: int, t: int) -> Any:
    """The next value of one observable resource."""
    if path.endswith("/5700"):
        return round(float(value) + 0.25 * math.sin((t + index) / 3.0), 2)
    if path == "/3/0/9":
        return max(0, int(value) - (1 if t % 10 == 0 else 0))
    if path == "/3/0/13":
        return int(value) + 1
    if path == "/3311/0/5850":
        return not value if t % 5 == 0 else value
    if path == "/3311/0/5851":
        return (int(value) + 7) % 101
    return value


def text_of(value: Any) -> str:
    """A value in LwM2M plain-text form (booleans as 0/1)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def parse_text(text: str, current: Any) -> Any:
    """Parse written plain text into the type of the resource's current value."""
    if isinstance(current, bool):
        return text.strip() in ("1", "true", "True")
    if isinstance(current, int):
        return int(text.strip())
    if isinstance(current, float):
        return float(text.strip())
    return text


def encode_payload(values: dict[str, Any], path: str, ct: str, tlv_style: str = "mbed") -> str:
    """Base64 payload of the values at or below `path`, as text/plain (one resource) or TLV (values in
    `tlv_style`: "mbed" as mbed Cloud Client writes them, "spec" the shortest binary)."""
    if ct == TEXT:
        return encode_b64(text_of(values[path]).encode("utf-8"))
    selected = {p: v for p, v in values.items() if covers(path, p)}
    return encode_b64(encode_paths(selected, path, default_object_model(), tlv_style))


def read(device: Device, path: str, accept: str | None = None) -> tuple[str, str]:
    """Read `path` from the device: (payload_b64, ct); text for one resource unless TLV is asked for."""
    ct = TEXT if path in device.values and accept != TLV else TLV
    return encode_payload(device.values, path, ct, device.tlv_style), ct
