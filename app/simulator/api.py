"""The simulator's HTTP API: the Connect v2 subset devicehooks uses, /v3/devices, /stats and /sim/ helpers."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlparse

import requests
from flask import Flask, Response, request

from app import web
from app.simulator import directory, websocket
from app.simulator.channel import OK_STATUSES, ChannelConflict, PullBusy, PullDeleted
from app.simulator.devices import Device
from app.simulator.engine import Simulator
from app.simulator.errors import (
    BadRequest,
    Conflict,
    NotFound,
    Unauthorized,
    UnsupportedMediaType,
    UpgradeRequired,
)
from app.simulator.subscriptions import validate_presubscriptions

logger = logging.getLogger(__name__)

MAX_WEBHOOK_CHARS = 400
WEBSOCKET_CONNECT = "/v2/notification/websocket-connect"
PUBLIC_PATHS = ("/stats", "/sim/", WEBSOCKET_CONNECT)
DEVICE_ACTIONS = ("register", "reg-update", "deregister", "expire", "sleep", "wake")


def _json_response(body: Any, status: int = 200) -> Response:
    """A JSON response."""
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _empty(status: int) -> Response:
    """A response without a body, and so without a Content-Type (not Flask's default text/html)."""
    response = Response(status=status)
    del response.headers["Content-Type"]
    return response


def _json_body(required: bool = True) -> Any:
    """The request's JSON body: 415 for another declared media type, 400 when malformed."""
    mimetype = request.mimetype or ""
    if mimetype and "json" not in mimetype:
        raise UnsupportedMediaType(f"Content-Type must be application/json, got {mimetype}")
    raw = request.get_data()
    if not raw.strip():
        if required:
            raise BadRequest("a JSON body is required")
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None


def _flag(name: str) -> bool:
    """A boolean query argument."""
    return (request.args.get(name) or "").lower() in ("true", "1", "yes")


def validate_webhook(body: Any) -> tuple[str, dict[str, str]]:
    """Check a Webhook body: url required (http or https), string headers, at most 400 characters."""
    if not isinstance(body, dict):
        raise BadRequest('the body must be a Webhook object: {"url": ..., "headers": {...}}')
    url, headers = body.get("url"), body.get("headers") or {}
    if not isinstance(url, str) or not url:
        raise BadRequest("url is required")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise BadRequest(f"url must be an http or https URL, got {url!r}")
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise BadRequest("headers must be an object of header names to string values")
    total = len(url) + sum(len(k) + len(v) for k, v in headers.items())
    if total > MAX_WEBHOOK_CHARS:
        raise BadRequest(f"url and headers take {total} characters; at most {MAX_WEBHOOK_CHARS} are allowed")
    return url, headers


def verify_callback(
    url: str,
    headers: dict[str, str],
    timeout: float,
    cert: tuple[str, str] | None = None,
    verify: bool | str = True,
) -> None:
    """The registration check: an empty PUT with the headers must answer 200 or 204 (no redirects)."""
    with requests.Session() as session:
        session.trust_env = False
        session.cert = cert
        session.verify = verify
        try:
            response = session.put(
                url,
                data=b"",
                headers={**headers, "Content-Type": "application/json"},
                timeout=timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise BadRequest(f"the callback URL is not accessible: {type(exc).__name__}: {exc}") from None
    if 300 <= response.status_code < 400:
        raise BadRequest(
            f"the callback URL answered {response.status_code} (a redirect) to the registration check; "
            "redirects are not followed"
        )
    if response.status_code not in OK_STATUSES:
        raise BadRequest(
            f"the callback URL answered {response.status_code} to the registration check (an empty PUT "
            "with the headers); it must answer 200 or 204"
        )


def _conflict(exc: ChannelConflict) -> BadRequest:
    """Another channel type exists: 400 as the spec says (the client must delete it first)."""
    return BadRequest(f"CHANNEL_EXISTS: {exc}")


def _sim_device(device: Device) -> dict[str, Any]:
    """A device as the /sim/ helpers show it."""
    return {
        **device.directory_entry(),
        "responsive": device.responsive,
        "awake": device.awake,
        "tlv": device.tlv,
        "subscriptions": sorted(device.subscriptions),
        "resources": [res.path for res in device.resources],
    }


class SimulatorApi:
    """Binds the routes to one Simulator."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def authenticate(self) -> None:
        """Bearer API key on every Connect route."""
        if request.path.startswith(PUBLIC_PATHS):
            return
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing Authorization: Bearer <API key>")
        if not websocket.key_is_valid(token.strip(), self.sim.config.api_keys):
            raise Unauthorized("the API key is not valid")

    # notification channel -------------------------------------------------------------------

    def put_callback(self) -> Response:
        """Register (or replace) the callback after the registration check."""
        url, headers = validate_webhook(_json_body())
        try:
            self.sim.channel.check_can_set_callback()
            config = self.sim.config
            verify_callback(url, headers, config.verify_timeout, config.client_cert, config.tls_verify)
            self.sim.channel.set_callback(url, headers)
        except ChannelConflict as exc:
            raise _conflict(exc) from None
        return _empty(204)

    def get_callback(self) -> Response:
        """The registered Webhook, or 404."""
        webhook = self.sim.channel.callback()
        if webhook is None:
            raise NotFound("no callback URL is registered")
        return _json_response(webhook)

    def delete_callback(self) -> Response:
        """Delete the callback (and its queued events)."""
        if not self.sim.channel.delete_callback():
            raise NotFound("no callback URL is registered")
        return _empty(204)

    def get_channel(self) -> Response:
        """ChannelMetadata, or 404 when there is no channel."""
        mechanism = self.sim.channel.channel_name()
        if mechanism is None:
            raise NotFound("no notification channel")
        return _json_response({"delivery_mechanism": mechanism})

    def put_websocket(self) -> Response:
        """Create the websocket channel (201) or confirm it (200)."""
        try:
            created = self.sim.channel.create_websocket()
        except ChannelConflict as exc:
            raise _conflict(exc) from None
        return _json_response(self.sim.channel.websocket_status(), 201 if created else 200)

    def get_websocket(self) -> Response:
        """WebsocketChannel, or 404."""
        status = self.sim.channel.websocket_status()
        if status is None:
            raise NotFound("no websocket channel")
        return _json_response(status)

    def delete_websocket(self) -> Response:
        """Delete the websocket channel, closing its socket."""
        if not self.sim.channel.delete_websocket():
            raise NotFound("no websocket channel")
        return _empty(204)

    def connect_websocket(self) -> Response:
        """The websocket upgrade."""
        return websocket.connect_view(self.sim)

    def connect_without_upgrade(self) -> Response:
        """websocket-connect as a plain HTTP request."""
        raise UpgradeRequired("Upgrade required: connect with a websocket client (Connection: Upgrade)")

    def pull(self) -> Response:
        """One long poll: 200 with a batch, or 204 after the wait."""
        try:
            batch = self.sim.channel.poll(self.sim.config.delay(self.sim.config.pull_timeout))
        except ChannelConflict as exc:
            raise _conflict(exc) from None
        except PullBusy as exc:
            raise Conflict(str(exc)) from None
        except PullDeleted:
            return Response("CHANNEL_DELETED", status=410, mimetype="text/plain")
        return _empty(204) if batch is None else _json_response(batch)

    def delete_pull(self) -> Response:
        """Delete the long-poll channel."""
        return Response(self.sim.channel.delete_pull(), status=200, mimetype="text/plain")

    # devices and resources ------------------------------------------------------------------

    def device_request(self, device_id: str) -> Response:
        """Accept an asynchronous device request (202); the answer comes through the channel."""
        self.sim.device_request(device_id, request.args.get("async-id"), _json_body())
        return _empty(202)

    def endpoint(self, device_id: str) -> Response:
        """The device's registered resources."""
        return _json_response(self.sim.endpoint_resources(device_id))

    def resource(self, device_id: str, path: str) -> Response:
        """Legacy resource request: 202 with a server-chosen async-response-id."""
        status, body = self.sim.legacy_request(
            device_id,
            path,
            request.method,
            request.get_data() or None,
            request.mimetype or None,
            no_resp=_flag("noResp"),
            cache_only=_flag("cacheOnly"),
        )
        if status == 200:
            return Response(body, status=200, mimetype="text/plain")
        return _json_response(body, status) if body is not None else _empty(status)

    def devices(self) -> Response:
        """GET /v3/devices: the device directory, paged and filtered."""
        return _json_response(directory.list_page(self.sim.directory(), request.args))

    def device(self, device_id: str) -> Response:
        """GET /v3/devices/{id}: one device-directory entry, or 404."""
        entry = next((e for e in self.sim.directory() if e["id"] == device_id), None)
        if entry is None:
            raise NotFound(f"device {device_id} not found")
        return _json_response(entry)

    # subscriptions --------------------------------------------------------------------------

    def get_presubscriptions(self) -> Response:
        """The PresubscriptionArray."""
        return _json_response(self.sim.get_presubscriptions())

    def put_presubscriptions(self) -> Response:
        """Replace the pre-subscriptions."""
        try:
            entries = validate_presubscriptions(_json_body())
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        self.sim.set_presubscriptions(entries)
        return _empty(204)

    def delete_presubscriptions(self) -> Response:
        """Remove the pre-subscriptions."""
        self.sim.set_presubscriptions([])
        return _empty(204)

    def endpoint_subscriptions(self, device_id: str) -> Response:
        """The device's subscribed paths, one per line (text/uri-list), or 404."""
        paths = self.sim.endpoint_subscriptions(device_id)
        if not paths:
            raise NotFound(f"no subscriptions for endpoint {device_id}")
        return Response("\n".join(paths), status=200, mimetype="text/uri-list")  # no empty last line

    def delete_endpoint_subscriptions(self, device_id: str) -> Response:
        """Remove every subscription of a device."""
        self.sim.clear_endpoint_subscriptions(device_id)
        return _empty(204)

    def put_subscription(self, device_id: str, path: str) -> Response:
        """Subscribe: 200, or 202 with the async id of the answer to come."""
        async_id = self.sim.subscribe(device_id, path)
        return _empty(200) if async_id is None else _json_response({"async-response-id": async_id}, 202)

    def get_subscription(self, device_id: str, path: str) -> Response:
        """200 when subscribed, else 404."""
        if not self.sim.is_subscribed(device_id, path):
            raise NotFound(f"{path} is not subscribed on {device_id}")
        return _empty(200)

    def delete_subscription(self, device_id: str, path: str) -> Response:
        """Remove one subscription."""
        if not self.sim.unsubscribe(device_id, path):
            raise NotFound(f"{path} is not subscribed on {device_id}")
        return _empty(204)

    # simulator-only ------------------------------------------------------------------------

    def stats(self) -> Response:
        """Delivery counters."""
        return _json_response(self.sim.stats())

    def sim_devices(self) -> Response:
        """Every simulated device with its flags."""
        with self.sim.lock:
            listed = [_sim_device(d) for d in sorted(self.sim.devices.values(), key=lambda d: d.index)]
        return _json_response(listed)

    def sim_add_device(self) -> Response:
        """Create and register a device: {name, ept, queue_mode, responsive, tlv} (all optional)."""
        body = _json_body(required=False) or {}
        if not isinstance(body, dict):
            raise BadRequest("the body must be an object")
        device = self.sim.register_device(
            body.get("name"),
            body.get("ept"),
            queue_mode=bool(body.get("queue_mode", False)),
            responsive=bool(body.get("responsive", True)),
            tlv=body.get("tlv"),
        )
        return _json_response(_sim_device(device), 201)

    def sim_device_action(self, device_id: str, action: str) -> Response:
        """register, reg-update, deregister, expire, sleep or wake one device."""
        handlers = {
            "register": self.sim.reregister,
            "reg-update": self.sim.update_registration,
            "deregister": self.sim.deregister_device,
            "expire": self.sim.expire_device,
            "sleep": self.sim.sleep_device,
            "wake": self.sim.wake_device,
        }
        if action not in handlers:
            raise NotFound(f"unknown action {action!r}; one of {', '.join(DEVICE_ACTIONS)}")
        try:
            handlers[action](device_id)
        except KeyError:
            raise NotFound(f"no device {device_id}") from None
        return _empty(204)

    def sim_notifications(self) -> Response:
        """{"count": N[, "all": true]} emits N notifications; {"ep", "path", "value"[, "ct"]} emits one."""
        body = _json_body()
        if not isinstance(body, dict):
            raise BadRequest("the body must be an object")
        if "count" in body:
            count = self.sim.trigger_notifications(int(body["count"]), subscribed_only=not body.get("all"))
            return _json_response({"count": count}, 202)
        if not all(k in body for k in ("ep", "path", "value")):
            raise BadRequest("give count, or ep, path and value")
        uid = self.sim.inject_notification(
            body["ep"], body["path"], body["value"], body.get("ct", "text/plain")
        )
        return _json_response({"uids": [uid]}, 202)

    def sim_sent(self) -> Response:
        """Keys of every event sent so far."""
        return _json_response({"ids": self.sim.sent_event_ids()})


ROUTES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("/v2/notification/callback", "put_callback", ("PUT",)),
    ("/v2/notification/callback", "get_callback", ("GET",)),
    ("/v2/notification/callback", "delete_callback", ("DELETE",)),
    ("/v2/notification/channel", "get_channel", ("GET",)),
    ("/v2/notification/websocket", "put_websocket", ("PUT",)),
    ("/v2/notification/websocket", "get_websocket", ("GET",)),
    ("/v2/notification/websocket", "delete_websocket", ("DELETE",)),
    ("/v2/notification/websocket-connect", "connect_without_upgrade", ("GET",)),
    ("/v2/notification/pull", "pull", ("GET",)),
    ("/v2/notification/pull", "delete_pull", ("DELETE",)),
    ("/v2/device-requests/<device_id>", "device_request", ("POST",)),
    ("/v2/endpoints/<device_id>", "endpoint", ("GET",)),
    ("/v2/endpoints/<device_id>/<path:path>", "resource", ("GET", "PUT", "POST", "DELETE")),
    ("/v2/subscriptions", "get_presubscriptions", ("GET",)),
    ("/v2/subscriptions", "put_presubscriptions", ("PUT",)),
    ("/v2/subscriptions", "delete_presubscriptions", ("DELETE",)),
    ("/v2/subscriptions/<device_id>", "endpoint_subscriptions", ("GET",)),
    ("/v2/subscriptions/<device_id>", "delete_endpoint_subscriptions", ("DELETE",)),
    ("/v2/subscriptions/<device_id>/<path:path>", "put_subscription", ("PUT",)),
    ("/v2/subscriptions/<device_id>/<path:path>", "get_subscription", ("GET",)),
    ("/v2/subscriptions/<device_id>/<path:path>", "delete_subscription", ("DELETE",)),
    ("/v3/devices", "devices", ("GET",)),
    ("/v3/devices/<device_id>", "device", ("GET",)),
    ("/stats", "stats", ("GET",)),
    ("/sim/devices", "sim_devices", ("GET",)),
    ("/sim/devices", "sim_add_device", ("POST",)),
    ("/sim/devices/<device_id>/<action>", "sim_device_action", ("POST",)),
    ("/sim/notifications", "sim_notifications", ("POST",)),
    ("/sim/sent", "sim_sent", ("GET",)),
)


def create_app(sim: Simulator) -> Flask:
    """The simulator's Flask app, bound to `sim`."""
    app = Flask("devicehooks.simulator")
    app.url_map.strict_slashes = False  # '/v3/devices/' (as generated clients write it) is '/v3/devices'
    web.init_app(app)
    api = SimulatorApi(sim)
    app.before_request(api.authenticate)
    for rule, name, methods in ROUTES:
        app.add_url_rule(rule, name, getattr(api, name), methods=list(methods))
    app.add_url_rule(WEBSOCKET_CONNECT, "connect_websocket", api.connect_websocket, websocket=True)
    return app
