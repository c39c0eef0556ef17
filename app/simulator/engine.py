"""The simulated account: devices, subscriptions, device requests and the events they produce."""

from __future__ import annotations

import itertools
import logging
import random
import re
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from app.paths import normalize_path
from app.simulator import devices as dev
from app.simulator.channel import Channel
from app.simulator.config import SimulatorConfig
from app.simulator.devices import Device, PendingRequest
from app.simulator.errors import BadRequest, Conflict, Gone, NotFound, PreconditionFailed
from app.simulator.scheduler import Scheduler
from app.simulator.subscriptions import presubscribed_paths
from workers.decoding import decode_b64, default_object_model, encode_b64, encode_paths

logger = logging.getLogger(__name__)

ASYNC_ID = re.compile(r"^[\w\-]{1,40}$")
METHODS = ("GET", "PUT", "POST", "DELETE")
MAX_AGE = 60
LIFECYCLE_ACTIONS = (("reg-update", 0.7), ("de-registrations", 0.85), ("registrations-expired", 1.0))


def _timestamp() -> str:
    """Now in RFC 3339 with milliseconds, UTC."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Simulator:
    """State engine of one simulated Device Management account (one channel for all its API keys)."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.channel = Channel(config)
        self.scheduler = Scheduler()
        self.devices: dict[str, Device] = {}
        self.presubscriptions: list[dict[str, Any]] = []
        # Seeded on purpose (reproducible runs); nothing here is a secret.
        self._device_rng = random.Random(config.seed)  # noqa: S311
        self._id_rng = random.Random(config.seed + 1)  # noqa: S311
        self._life_rng = random.Random(config.seed + 2)  # noqa: S311
        self._created = 0
        self._counter = itertools.count(1)
        self._load_cursor = 0
        self._create_initial_devices()

    # lifecycle of the simulator ---------------------------------------------------------------

    def _create_initial_devices(self) -> None:
        """The configured devices, registered before any channel exists (so silently)."""
        n = self.config.devices
        unresponsive = round(self.config.timeout_fraction * n)
        queued = round(self.config.queue_mode_fraction * n)
        for i in range(n):
            queue_mode = n - unresponsive - queued <= i < n - unresponsive
            device = self.register_device(queue_mode=queue_mode, responsive=i < n - unresponsive)
            device.awake = not queue_mode

    def start(self) -> None:
        """Start delivery and the periodic behaviour (notifications, lifecycle, queue-mode wake-ups)."""
        cfg = self.config
        self.channel.start()
        self.scheduler.start()
        self.scheduler.every(cfg.delay(cfg.notification_interval), self.notify_tick)
        self.scheduler.every(cfg.delay(cfg.wake_interval), self.wake_tick)
        if cfg.lifecycle:
            self.scheduler.every(cfg.delay(cfg.lifecycle_interval), self.lifecycle_tick)

    def stop(self) -> None:
        """Stop the timer and the delivery thread."""
        self.scheduler.stop()
        self.channel.stop()

    def stats(self) -> dict[str, Any]:
        """Delivery counters plus the device population."""
        stats = self.channel.stats()
        with self.lock:
            stats["devices"] = len(self.devices)
            stats["registered"] = sum(1 for d in self.devices.values() if d.registered)
        return stats

    def sent_event_ids(self) -> list[str]:
        """Keys of every event sent (uid, or kind:ep:n for de-registrations, async-responses:id)."""
        return self.channel.sent_event_ids()

    # events -----------------------------------------------------------------------------------

    def new_id(self) -> str:
        """A fresh UUID-4 text, deterministic for the seed."""
        with self.lock:
            return str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4))

    def _stamp(self, item: dict[str, Any]) -> str:
        """Give an item its uid and timestamp; return the uid."""
        uid = item["uid"] = self.new_id()
        item["timestamp"] = _timestamp()
        return uid

    def _emit_stamped(self, kind: str, item: dict[str, Any]) -> str:
        """Publish an item that carries uid and timestamp; return the uid."""
        uid = self._stamp(item)
        self.channel.publish(kind, item, uid)
        return uid

    def _emit_ep(self, kind: str, ep: str) -> str:
        """Publish a de-registration or expiry (a plain device id); return its key."""
        key = f"{kind}:{ep}:{next(self._counter)}"
        self.channel.publish(kind, ep, key)
        return key

    def _emit_async(self, item: dict[str, Any]) -> int:
        """Publish an async-response; return its sequence number."""
        return self.channel.publish("async-responses", item, f"async-responses:{item['id']}")

    # devices ----------------------------------------------------------------------------------

    def device(self, ep: str) -> Device | None:
        """The device with id `ep` (or endpoint name), None when unknown."""
        with self.lock:
            found = self.devices.get(ep)
            if found is None:
                found = next((d for d in self.devices.values() if d.name == ep), None)
            return found

    def _known(self, ep: str) -> Device:
        """The device or KeyError."""
        found = self.device(ep)
        if found is None:
            raise KeyError(ep)
        return found

    def register_device(
        self,
        name: str | None = None,
        ept: str | None = None,
        *,
        queue_mode: bool = False,
        responsive: bool = True,
        tlv: bool | None = None,
    ) -> Device:
        """Create a device and register it (a `registrations` event)."""
        with self.lock:
            index = self._created
            self._created += 1
            device = dev.make_device(
                self._device_rng,
                index,
                name,
                ept,
                queue_mode=queue_mode,
                responsive=responsive,
                tlv_style=self.config.tlv_style,
            )
            if tlv is not None:
                device.tlv = tlv
            self.devices[device.ep] = device
            self._register(device)
            return device

    def _register(self, device: Device) -> None:
        """A full registration: manual subscriptions reset, pre-subscriptions applied."""
        device.registered = True
        device.subscriptions = presubscribed_paths(self.presubscriptions, device)
        self._emit_stamped("registrations", device.registration_item())
        if device.queue_mode:
            self._wake(device, emit=False)

    def reregister(self, ep: str) -> None:
        """Register an existing device again."""
        with self.lock:
            self._register(self._known(ep))

    def update_registration(self, ep: str) -> None:
        """A registration update (pre-subscriptions applied); wakes a queue-mode device."""
        with self.lock:
            device = self._known(ep)
            if device.queue_mode or not device.awake:
                self._wake(device, emit=True)
            else:
                self._reg_update(device)

    def _reg_update(self, device: Device) -> None:
        """Emit a reg-update and apply the pre-subscriptions."""
        device.subscriptions |= presubscribed_paths(self.presubscriptions, device)
        self._emit_stamped("reg-updates", device.registration_item())

    def deregister_device(self, ep: str, kind: str = "de-registrations") -> None:
        """Deregister (or, with kind `registrations-expired`, expire) a device."""
        with self.lock:
            device = self._known(ep)
            device.registered = False
            device.subscriptions = set()
            for req in device.pending:
                self._emit_async({"id": req.async_id, "status": 429, "error": "QUEUE_CLEARED"})
            device.pending = []
            self._emit_ep(kind, device.ep)

    def expire_device(self, ep: str) -> None:
        """The device's registration expired."""
        self.deregister_device(ep, "registrations-expired")

    def sleep_device(self, ep: str) -> None:
        """Put a device to sleep: requests wait until it wakes, no notifications meanwhile."""
        with self.lock:
            device = self._known(ep)
            device.awake = False
            device.wakes += 1

    def wake_device(self, ep: str) -> None:
        """Wake a device: a reg-update, then its queued requests are answered."""
        with self.lock:
            self._wake(self._known(ep), emit=True)

    def _wake(self, device: Device, emit: bool) -> None:
        """Wake up, answer what waited, and fall asleep again after awake_time (queue mode)."""
        device.awake = True
        device.wakes += 1
        if emit:
            self._reg_update(device)
        pending, device.pending = device.pending, []
        for req in pending:
            self._schedule_answer(device, req, self.config.async_delay)
        if device.queue_mode:
            token, ep = device.wakes, device.ep
            self.scheduler.call_later(
                self.config.delay(self.config.awake_time), lambda: self._fall_asleep(ep, token)
            )

    def _fall_asleep(self, ep: str, token: int) -> None:
        """Sleep again unless the device was woken (or put to sleep) since."""
        with self.lock:
            device = self.devices.get(ep)
            if device is not None and device.wakes == token:
                device.awake = False

    def wake_tick(self) -> None:
        """Periodic wake-up of sleeping queue-mode devices."""
        with self.lock:
            for device in list(self.devices.values()):
                if device.queue_mode and device.registered and not device.awake:
                    self._wake(device, emit=True)

    def lifecycle_tick(self) -> None:
        """One random lifecycle event: mostly reg-updates, sometimes a de-registration or expiry."""
        with self.lock:
            registered = [d for d in self.devices.values() if d.registered]
            if not registered:
                return
            device = self._life_rng.choice(registered)
            roll = self._life_rng.random()
            action = next(name for name, bound in LIFECYCLE_ACTIONS if roll < bound)
            if action == "reg-update":
                self.update_registration(device.ep)
                return
            self.deregister_device(device.ep, action)
            ep = device.ep
            self.scheduler.call_later(
                self.config.delay(self.config.lifecycle_interval), lambda: self._reregister_if_gone(ep)
            )

    def _reregister_if_gone(self, ep: str) -> None:
        """Register a device again unless someone already did."""
        with self.lock:
            device = self.devices.get(ep)
            if device is not None and not device.registered:
                self._register(device)

    def endpoint_resources(self, ep: str) -> list[dict[str, Any]]:
        """GET /v2/endpoints/{device-id}: the registered resources."""
        with self.lock:
            device = self.device(ep)
            if device is None or not device.registered:
                raise NotFound(f"endpoint {ep} not found")
            return [res.directory() for res in device.resources]

    def directory(self) -> list[dict[str, Any]]:
        """Every known device in creation order, as device-directory entries."""
        with self.lock:
            ordered = sorted(self.devices.values(), key=lambda d: d.index)
            return [d.directory_entry() for d in ordered]

    # notifications ----------------------------------------------------------------------------

    def notify_tick(self) -> None:
        """Every subscribed resource of every awake device sends a new value."""
        with self.lock:
            for device in list(self.devices.values()):
                if device.registered and device.awake and device.subscriptions:
                    dev.step_values(device)
                    for path in sorted(device.subscriptions):
                        self._notify(device, path)

    def _notify(self, device: Device, path: str) -> str | None:
        """Emit one notification of `path`; return its uid."""
        item = self._notification(device, path)
        return None if item is None else self._emit_stamped("notifications", item)

    def _notification(self, device: Device, path: str) -> dict[str, Any] | None:
        """The notification of `path` (a resource, or TLV of an instance or object), without uid."""
        if path in device.values:
            ct = dev.TLV if device.tlv else dev.TEXT
        elif any(dev.covers(path, p) for p in device.values):
            ct = dev.TLV
        else:
            return None
        payload = dev.encode_payload(device.values, path, ct, device.tlv_style)
        return {"ep": device.ep, "path": path, "ct": ct, "payload": payload, "max-age": MAX_AGE}

    def trigger_notifications(self, count: int, subscribed_only: bool = True) -> int:
        """Emit `count` notifications now, round-robin over subscribed (or all observable) resources."""
        with self.lock:
            pairs = self._notifiable(subscribed_only)
            if not pairs:
                return 0
            events: list[tuple[str, Any, str]] = []
            for _ in range(count):
                device, path = pairs[self._load_cursor % len(pairs)]
                self._load_cursor += 1
                if self._load_cursor % len(pairs) == 0:
                    dev.step_values(device)
                item = self._notification(device, path)
                if item is not None:
                    events.append(("notifications", item, self._stamp(item)))
            self.channel.publish_many(events)
            return count

    def _notifiable(self, subscribed_only: bool) -> list[tuple[Device, str]]:
        """(device, path) pairs that may notify now."""
        pairs: list[tuple[Device, str]] = []
        for device in sorted(self.devices.values(), key=lambda d: d.index):
            if not (device.registered and device.awake):
                continue
            if subscribed_only:
                pairs.extend((device, path) for path in sorted(device.subscriptions))
            else:
                pairs.extend((device, res.path) for res in device.resources if res.obs)
        return pairs

    def inject_notification(
        self, ep: str, path: str, value: Any, ct: str = dev.TEXT, max_age: Any = MAX_AGE
    ) -> str:
        """Emit one notification with a given value (bytes are sent as they are); return its uid."""
        path = normalize_path(path)
        with self.lock:
            device = self.device(ep)
            if device is not None and path in device.values and not isinstance(value, bytes | dict):
                device.values[path] = value
            payload = _encode_value(value, path, ct, self.config.tlv_style)
            item = {"ep": device.ep if device else ep, "path": path, "ct": ct, "payload": payload}
            item["max-age"] = max_age
            return self._emit_stamped("notifications", item)

    # subscriptions ----------------------------------------------------------------------------

    def _subscribable(self, ep: str, path: str) -> tuple[Device, list[dev.ResourceSpec]]:
        """The registered device and the resources at or below `path`, or NotFound."""
        device = self.device(ep)
        if device is None or not device.registered:
            raise NotFound(f"endpoint {ep} not found")
        under = device.under(path)
        if not under:
            raise NotFound(f"resource {path} not found on endpoint {ep}")
        return device, under

    def subscribe(self, ep: str, path: str) -> str | None:
        """Subscribe; None when done (200), else the async id of the later answer (202)."""
        path = normalize_path(path)
        with self.lock:
            device, under = self._subscribable(ep, path)
            if not any(res.obs for res in under):
                self._require_channel()
                async_id = self.new_id()
                self._emit_async({"id": async_id, "status": 412, "error": "NOT_OBSERVABLE"})
                return async_id
            device.subscriptions.add(path)
            if device.awake and device.responsive:
                return None
            self._require_channel()
            async_id = self.new_id()
            self._dispatch(device, PendingRequest(async_id, "SUBSCRIBE", path, None, None, None))
            return async_id

    def is_subscribed(self, ep: str, path: str) -> bool:
        """True when `path` is subscribed on the device."""
        with self.lock:
            device = self.device(ep)
            return device is not None and normalize_path(path) in device.subscriptions

    def unsubscribe(self, ep: str, path: str) -> bool:
        """Remove one subscription; False when it did not exist."""
        with self.lock:
            device = self.device(ep)
            path = normalize_path(path)
            if device is None or path not in device.subscriptions:
                return False
            device.subscriptions.discard(path)
            return True

    def endpoint_subscriptions(self, ep: str) -> list[str]:
        """The device's subscribed paths (empty for an unknown device)."""
        with self.lock:
            device = self.device(ep)
            return sorted(device.subscriptions) if device else []

    def clear_endpoint_subscriptions(self, ep: str) -> None:
        """Remove every subscription of one device."""
        with self.lock:
            device = self.device(ep)
            if device is not None:
                device.subscriptions = set()

    def set_presubscriptions(self, entries: list[dict[str, Any]]) -> None:
        """Replace the pre-subscriptions (applied at the next registration or reg-update)."""
        with self.lock:
            self.presubscriptions = [dict(e) for e in entries]

    def get_presubscriptions(self) -> list[dict[str, Any]]:
        """The current pre-subscriptions."""
        with self.lock:
            return [dict(e) for e in self.presubscriptions]

    # device requests --------------------------------------------------------------------------

    def _require_channel(self) -> None:
        """Asynchronous requests need a notification channel to answer through."""
        if not self.channel.exists():
            raise PreconditionFailed("No notification channel: register a callback or websocket first")

    def device_request(self, ep: str, async_id: str | None, body: Any) -> None:
        """POST /v2/device-requests/{device-id}?async-id=: accept, answer through the channel later."""
        if not async_id or not ASYNC_ID.match(async_id):
            raise BadRequest("MALFORMED_ASYNC_ID: async-id must be 1-40 letters, digits, _ or -")
        req = _parse_device_request(async_id, body)
        with self.lock:
            device = self.device(ep)
            if device is None:
                raise NotFound(f"DEVICE_NOT_FOUND: {ep}")
            if not device.registered:
                raise BadRequest(f"DEVICE_NOT_CONNECTED: {ep}")
            if not device.under(req.uri):
                raise BadRequest(f"RESOURCE_NOT_FOUND: {req.uri} on {ep}")
            self._require_channel()
            self._dispatch(device, req)

    def legacy_request(
        self,
        ep: str,
        path: str,
        method: str,
        payload: bytes | None = None,
        content_type: str | None = None,
        *,
        no_resp: bool = False,
        cache_only: bool = False,
    ) -> tuple[int, Any]:
        """GET/PUT/POST/DELETE /v2/endpoints/{device-id}/{path}: (status, body) of the HTTP answer."""
        path = normalize_path(path)
        with self.lock:
            device = self.device(ep)
            if device is None or not device.registered:
                raise Gone(f"endpoint {ep} not found")
            if not device.under(path):
                raise NotFound(f"resource {path} not found on endpoint {ep}")
            if cache_only and method == "GET":
                return (200, dev.text_of(device.values[path])) if path in device.values else (205, None)
            b64 = encode_b64(payload) if payload else None
            req = PendingRequest("", method, path, None, content_type, b64)
            if no_resp:
                if device.queue_mode:
                    raise Conflict("noResp is not supported for a queue-mode endpoint")
                self._execute(device, req)
                return 204, None
            self._require_channel()
            req.async_id = self.new_id()
            if not (self.config.early_async and device.responsive and device.awake):
                self._dispatch(device, req)
                return 202, {"async-response-id": req.async_id}
            seq = self._emit_async(self._execute(device, req))
        self.channel.wait_settled(seq, self.config.http_timeout)
        return 202, {"async-response-id": req.async_id}

    def _dispatch(self, device: Device, req: PendingRequest) -> None:
        """Answer later: after async_delay, when the device wakes, or 504 TIMEOUT if it never answers."""
        if not device.responsive:
            item = {"id": req.async_id, "status": 504, "error": "TIMEOUT"}
            self.scheduler.call_later(
                self.config.delay(self.config.request_timeout), lambda: self._emit_async(item)
            )
        elif not device.awake:
            device.pending.append(req)
        else:
            self._schedule_answer(device, req, self.config.async_delay)

    def _schedule_answer(self, device: Device, req: PendingRequest, delay: float) -> None:
        """Execute the request on the device after `delay` simulated seconds."""
        ep = device.ep

        def _answer() -> None:
            with self.lock:
                target = self.devices.get(ep)
                if target is not None:
                    self._emit_async(self._execute(target, req))

        self.scheduler.call_later(self.config.delay(delay), _answer)

    def _execute(self, device: Device, req: PendingRequest) -> dict[str, Any]:
        """Carry out a request on the device: the AsyncIDResponse item."""
        if req.method == "SUBSCRIBE":
            return {"id": req.async_id, "status": 200}
        if req.method == "GET":
            if not device.under(req.uri):
                return {"id": req.async_id, "status": 404, "error": "NOT_FOUND"}
            payload, ct = dev.read(device, req.uri, req.accept)
            return {"id": req.async_id, "status": 200, "payload": payload, "ct": ct, "max-age": MAX_AGE}
        res = device.resource(req.uri)
        allowed = {"PUT": "W", "POST": "E"}.get(req.method)
        if res is None or allowed is None or allowed not in res.ops:
            return {"id": req.async_id, "status": 405, "error": "METHOD_NOT_ALLOWED"}
        if req.method == "PUT" and req.payload_b64:
            try:
                text = decode_b64(req.payload_b64).decode("utf-8")
                device.values[req.uri] = dev.parse_text(text, device.values.get(req.uri, ""))
            except ValueError:
                return {"id": req.async_id, "status": 400, "error": "BAD_REQUEST"}
            if device.awake and any(dev.covers(sub, req.uri) for sub in device.subscriptions):
                self._notify(device, req.uri)
        return {"id": req.async_id, "status": 200}


def _parse_device_request(async_id: str, body: Any) -> PendingRequest:
    """Validate a DeviceRequest body."""
    if not isinstance(body, dict):
        raise BadRequest("MALFORMED_JSON_CONTENT: the body must be a DeviceRequest object")
    method, uri = body.get("method"), body.get("uri")
    if method not in METHODS or not isinstance(uri, str) or not uri.strip("/"):
        raise BadRequest("MALFORMED_JSON_CONTENT: method (GET, PUT, POST, DELETE) and uri are required")
    for name in ("accept", "content-type", "payload-b64"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise BadRequest(f"MALFORMED_JSON_CONTENT: {name} must be a string")
    path = normalize_path(uri.split("?", 1)[0])
    return PendingRequest(
        async_id, method, path, body.get("accept"), body.get("content-type"), body.get("payload-b64")
    )


def _encode_value(value: Any, path: str, ct: str, tlv_style: str) -> str:
    """Payload of an injected value: bytes as is, a {path: value} dict or a value as TLV (in
    `tlv_style`), else text."""
    if isinstance(value, bytes):
        return encode_b64(value)
    if ct == dev.TLV:
        values = value if isinstance(value, dict) else {path: value}
        return encode_b64(encode_paths(values, path, default_object_model(), tlv_style))
    return encode_b64(dev.text_of(value).encode("utf-8"))
