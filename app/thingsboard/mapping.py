"""Event JSON -> ThingsBoard gateway payloads: pure functions, no I/O.

Two steps. :func:`fragments_of` turns one event (its JSON form, ``Event.to_dict()``) into *fragments*,
one per gateway message it contributes to, and raises :class:`MappingError` with the reason when it
cannot be mapped (the worker-side handler dead-letters it then). :func:`group` turns the fragments of
many events, in order, into as few gateway messages as ThingsBoard accepts: one telemetry and one
attributes message for all devices of a run of events (split at the payload limit), and one
connect/disconnect message per device (the API names one device per message).

ThingsBoard closes the whole gateway session on one malformed payload (MqttTransportHandler:
RuntimeException -> ``ctx.close()``; a bad telemetry entry inside the per-device callback ->
``channel.close()``) and on a payload above ``NETTY_MAX_PAYLOAD_SIZE`` (65,536 bytes by default), so
every message passes :func:`validate` before it is published.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.config import Settings

CONNECT = "v1/gateway/connect"
DISCONNECT = "v1/gateway/disconnect"
TELEMETRY = "v1/gateway/telemetry"
ATTRIBUTES = "v1/gateway/attributes"
RPC = "v1/gateway/rpc"
DEFAULT_TYPE = "default"  # ThingsBoard's DEFAULT_DEVICE_TYPE for a connect without a type

LIVE_KINDS = ("registrations", "reg-updates")
GONE_KINDS = ("de-registrations", "registrations-expired")
MAPPED_KINDS = ("notifications", *LIVE_KINDS, *GONE_KINDS)
SECONDS_BELOW = 100_000_000_000  # an epoch number below this is seconds (year 5138 in ms), else ms


class MappingError(ValueError):
    """An event or payload ThingsBoard would not accept; the message is the reason."""


@dataclass(frozen=True)
class Options:
    """How events are named and keyed (from the THINGSBOARD_* settings)."""

    name_template: str = "{ep}"
    type_template: str = "{ept}"
    keys: str = "paths"
    max_payload: int = 65_536

    @classmethod
    def from_settings(cls, settings: Settings) -> Options:
        """The mapping options of a configured service."""
        return cls(
            name_template=settings.thingsboard_device_name,
            type_template=settings.thingsboard_device_type,
            keys=settings.thingsboard_keys,
            max_payload=settings.thingsboard_max_payload,
        )

    @property
    def uses_ept(self) -> bool:
        """True when a template needs the endpoint type (the handler fills it in from the directory)."""
        return "{ept}" in self.name_template or "{ept}" in self.type_template


@dataclass(frozen=True)
class Message:
    """One gateway publish: topic, JSON payload bytes, how many fragments it carries, the payload object."""

    topic: str
    payload: bytes
    fragments: int = 1
    body: Any = field(default=None, compare=False, repr=False)


def encode(obj: Any) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities are refused (ThingsBoard's parser rejects them)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _fields(event: Mapping[str, Any]) -> dict[str, str | None]:
    """The template fields of an event."""
    return {"ep": event.get("ep"), "ept": event.get("ept"), "original_ep": event.get("original_ep")}


def device_name(event: Mapping[str, Any], template: str) -> str:
    """The ThingsBoard device name; a template field the event lacks is a MappingError."""
    values = _fields(event)
    missing = sorted(k for k, v in values.items() if v in (None, "") and "{" + k + "}" in template)
    if missing:
        raise MappingError(
            f"device name template {template!r} needs {', '.join(missing)}, "
            f"unknown for ep {event.get('ep')!r}"
        )
    name = template.format(**{k: v or "" for k, v in values.items()}).strip()
    if not name:
        raise MappingError(f"device name template {template!r} gives an empty name (ThingsBoard refuses it)")
    return name


def device_type(event: Mapping[str, Any], template: str) -> str:
    """The device profile name; ``default`` when a field it needs is unknown (ThingsBoard's own default)."""
    values = _fields(event)
    if any(v in (None, "") and "{" + k + "}" in template for k, v in values.items()):
        return DEFAULT_TYPE
    return template.format(**{k: v or "" for k, v in values.items()}).strip() or DEFAULT_TYPE


def timestamp_ms(value: Any, received_ms: int) -> int:
    """Epoch ms of the event's ``timestamp`` (epoch s or ms, or RFC 3339), else the time it was received."""
    if isinstance(value, bool):
        return received_ms
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return int(value * 1000) if value < SECONDS_BELOW else int(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            return timestamp_ms(float(text), received_ms)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return received_ms
        if parsed.tzinfo is None:
            return received_ms
        return int(parsed.timestamp() * 1000)
    return received_ms


def telemetry_key(path: str, names: Mapping[str, str] | None) -> str:
    """The key of one resource: its readable name when given one, else the path without the leading '/'."""
    if names and names.get(path):
        return names[path]
    return path.lstrip("/")


def check_value(value: Any, where: str) -> None:
    """A value ThingsBoard's JsonConverter stores: bool, number, string, or JSON object/array of them."""
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MappingError(f"{where}: {value!r} is not a JSON number")
        return
    if isinstance(value, list):
        for item in value:
            check_value(item, where)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MappingError(f"{where}: object key {key!r} is not a string")
            check_value(item, where)
        return
    raise MappingError(f"{where}: a {type(value).__name__} is not a JSON value")


def _telemetry(
    event: Mapping[str, Any], name: str, received_ms: int, names: Mapping[str, str] | None
) -> dict[str, Any]:
    """The telemetry fragment of a notification: all its decoded resources in one ``values``."""
    if event.get("decode_error"):
        raise MappingError(f"notification could not be decoded: {event['decode_error']}")
    raw = event.get("values")
    if not isinstance(raw, dict) or not raw:
        raw = {event["path"]: event.get("value")} if event.get("path") else {}
    values: dict[str, Any] = {}
    for path, value in raw.items():
        if value is None:
            continue  # ThingsBoard skips JSON nulls; sending none keeps the entry honest
        check_value(value, f"{path}")
        values[telemetry_key(str(path), names)] = value
    if not values:
        raise MappingError("notification has no value to send (no decoded resource)")
    entry = {"ts": timestamp_ms(event.get("timestamp"), received_ms), "values": values}
    return {"op": "telemetry", "device": name, "entry": entry}


def _resources(event: Mapping[str, Any]) -> list[str]:
    """The registered resource paths."""
    return [str(r["path"]) for r in event.get("resources") or () if isinstance(r, dict) and r.get("path")]


def fragments_of(
    event: Mapping[str, Any],
    options: Options,
    received_ms: int,
    names: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The fragments of one event; MappingError when ThingsBoard could not take it."""
    kind = event.get("kind")
    if kind not in MAPPED_KINDS:
        raise MappingError(f"events of kind {kind!r} are not sent to ThingsBoard")
    if not event.get("ep"):
        raise MappingError("event has no ep")
    name = device_name(event, options.name_template)
    if kind == "notifications":
        found = [_telemetry(event, name, received_ms, names if options.keys == "names" else None)]
    elif kind in LIVE_KINDS:
        kind_type = device_type(event, options.type_template)
        attributes = {"ep": event["ep"], "ept": event.get("ept"), "resources": _resources(event)}
        found = [
            {"op": "connect", "device": name, "type": kind_type, "ep": event["ep"]},
            {"op": "attributes", "device": name, "values": attributes},
        ]
    else:
        found = [{"op": "disconnect", "device": name, "ep": event["ep"]}]
    for fragment in found:
        topic, payload = _alone(fragment)
        validate(topic, payload, options.max_payload, len(encode(payload)))
    return found


def _alone(fragment: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The message one fragment would be on its own (what its validation checks)."""
    op, device = fragment["op"], fragment["device"]
    if op == "telemetry":
        return TELEMETRY, {device: [fragment["entry"]]}
    if op == "attributes":
        return ATTRIBUTES, {device: fragment["values"]}
    if op == "connect":
        return CONNECT, {"device": device, "type": fragment["type"]}
    return DISCONNECT, {"device": device}


@dataclass
class _Segment:
    """A run of fragments publishable together: lifecycle messages first, then telemetry, attributes."""

    lifecycle: list[Message] = field(default_factory=list)
    telemetry: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    devices: set[str] = field(default_factory=set)


def _packed(topic: str, items: list[tuple[str, Any]], max_payload: int, as_list: bool) -> list[Message]:
    """Pack per-device items into as few payloads of at most ``max_payload`` bytes as fit, order kept."""
    messages: list[Message] = []
    current: dict[str, Any] = {}
    size = count = 0
    for device, item in items:
        item_size = len(encode(item)) + 1  # the item and a comma
        new_device = len(encode(device)) + 2 + (2 if as_list else 0)  # "name": [ ] and a comma
        grows = item_size + (new_device if device not in current else 0)
        if current and 2 + size + grows > max_payload:
            messages.append(Message(topic, encode(current), count, current))
            current, size, count = {}, 0, 0
            grows = item_size + new_device
        if as_list:
            current.setdefault(device, []).append(item)
        else:
            current[device] = item
        size += grows
        count += 1
    if current:
        messages.append(Message(topic, encode(current), count, current))
    return messages


def _flush(segment: _Segment, max_payload: int) -> list[Message]:
    """The messages of one segment, in publish order."""
    out = list(segment.lifecycle)
    out += _packed(TELEMETRY, segment.telemetry, max_payload, as_list=True)
    out += _packed(ATTRIBUTES, list(segment.attributes.items()), max_payload, as_list=False)
    return out


def group(fragments: list[dict[str, Any]], max_payload: int) -> list[Message]:
    """Fragments in stream order -> gateway messages in publish order.

    A device's connect goes out before its telemetry and attributes that followed it, and its
    disconnect after those that preceded it (telemetry for a device ThingsBoard has not seen connect
    creates it with the ``default`` profile); other devices' messages share payloads freely.
    """
    messages: list[Message] = []
    segment = _Segment()
    for fragment in fragments:
        op, device = fragment.get("op"), str(fragment.get("device"))
        if op in ("connect", "disconnect"):
            if device in segment.devices:
                messages += _flush(segment, max_payload)
                segment = _Segment()
            body = {"device": device, "type": fragment.get("type")} if op == "connect" else {"device": device}
            segment.lifecycle.append(
                Message(CONNECT if op == "connect" else DISCONNECT, encode(body), 1, body)
            )
        elif op == "telemetry":
            segment.telemetry.append((device, fragment.get("entry") or {}))
            segment.devices.add(device)
        elif op == "attributes":
            segment.attributes.setdefault(device, {}).update(fragment.get("values") or {})
            segment.devices.add(device)
        else:
            raise MappingError(f"unknown fragment op {op!r}")
    return messages + _flush(segment, max_payload)


def _device_field(obj: Mapping[str, Any], topic: str) -> None:
    """``device`` present and a non-empty string (absent -> NPE -> session closed; empty -> refused)."""
    device = obj.get("device")
    if not isinstance(device, str) or not device.strip():
        raise MappingError(f"{topic}: 'device' must be a non-empty string")


def _check_telemetry(obj: Mapping[str, Any]) -> None:
    """Per device an array of ``{ts, values}`` entries (both keys, ts an integer, values an object)."""
    for device, entries in obj.items():
        if not device.strip():
            raise MappingError("telemetry: empty device name")
        if not isinstance(entries, list) or not entries:
            raise MappingError(f"telemetry: {device!r} must map to a non-empty array")
        for entry in entries:
            if not isinstance(entry, dict) or set(entry) != {"ts", "values"}:
                raise MappingError(f"telemetry: {device!r} entries must be {{ts, values}} objects")
            ts, values = entry["ts"], entry["values"]
            if isinstance(ts, bool) or not isinstance(ts, int) or ts <= 0:
                raise MappingError(f"telemetry: {device!r} ts must be epoch milliseconds")
            if not isinstance(values, dict) or not values:
                raise MappingError(f"telemetry: {device!r} values must be a non-empty object")
            for key, value in values.items():
                if not key:
                    raise MappingError(f"telemetry: {device!r} has an empty key")
                check_value(value, f"telemetry {device!r} {key}")


def validate(topic: str, obj: Any, max_payload: int, size: int) -> None:
    """Raise MappingError unless ThingsBoard's gateway handler would accept this payload on ``topic``."""
    if size > max_payload:
        raise MappingError(f"{topic}: payload of {size} bytes exceeds the {max_payload}-byte limit")
    if not isinstance(obj, dict) or not obj:
        raise MappingError(f"{topic}: the payload must be a non-empty JSON object")
    if topic in (CONNECT, DISCONNECT):
        _device_field(obj, topic)
        if topic == CONNECT and not isinstance(obj.get("type"), str):
            raise MappingError(f"{topic}: 'type' must be a string")
    elif topic == TELEMETRY:
        _check_telemetry(obj)
    elif topic == ATTRIBUTES:
        for device, values in obj.items():
            if not device.strip() or not isinstance(values, dict) or not values:
                raise MappingError(f"attributes: {device!r} must map to a non-empty object")
            check_value(values, f"attributes {device!r}")
    elif topic == RPC:
        _device_field(obj, topic)
        if isinstance(obj.get("id"), bool) or not isinstance(obj.get("id"), int):
            raise MappingError("rpc: 'id' must be an integer")
        if not isinstance(obj.get("data"), dict):
            raise MappingError("rpc: 'data' must be an object")
        check_value(obj["data"], "rpc data")
    else:
        raise MappingError(f"{topic}: not a gateway topic this bridge publishes")
