"""The management API under ``/api/v1/``, in Device Management's conventions (seeds 001, 003).

Its own blueprint, registered beside the callback: it never runs code on the callback route. With no
``MANAGEMENT_API_KEYS`` every route answers 404; ``/api/v1/openapi.json`` needs no key.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from redis import Redis
from rq import Queue, Retry

from app import state, stores
from app.api import query
from app.api.auth import require_key
from app.api.openapi import document
from app.batches import make_queue
from app.config import Settings
from app.dm.asyncs import AsyncResult, AsyncTracker, request_ids
from app.dm.client import DMClient, client_from_settings
from app.errors import BadRequest, NotFound, ServiceUnavailable

EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
bp = Blueprint("api", __name__, url_prefix="/api/v1")
EXTENSION = "devicehooks.api"
METHODS = ("GET", "PUT", "POST", "DELETE")
REPLAY_RETRY = [5, 30, 120]
DEVICE_FIELDS = {"ept": query.STRING, "status": query.STRING, "last_seen": query.DATE}
EVENT_FIELDS = {"kind": query.STRING, "path": query.STRING, "timestamp": query.DATE}
ASYNC_FIELDS = {"ep": query.STRING, "state": query.STRING, "method": query.STRING}
DEAD_FIELDS = {"handler": query.STRING, "failed_at": query.DATE}
REJECTION_FIELDS = {"kind": query.STRING, "at": query.DATE}
RESOURCE_FIELDS = {"path": query.STRING}


def text_decoder(payload_b64: str | None, ct: str | None, path: str) -> tuple[Any, str | None]:
    """The web side decodes text payloads only (the decoding core belongs to the workers)."""
    if not payload_b64 or (ct and not ct.startswith("text/")):
        return None, None
    try:
        return base64.b64decode(payload_b64 + "=" * (-len(payload_b64) % 4)).decode("utf-8"), None
    except (binascii.Error, UnicodeDecodeError) as exc:
        return None, f"could not decode payload: {exc}"


class Api:
    """What the routes use: settings, Redis, the queue, the tracker, a Device Management client."""

    def __init__(self, settings: Settings, redis: Redis, dm_client: DMClient | None = None) -> None:
        self.settings = settings
        self.redis = redis
        self.queue: Queue = make_queue(redis, settings.queue_name)
        self.tracker = AsyncTracker(redis, queue_name=settings.queue_name)
        self._dm_client = dm_client

    @property
    def dm_client(self) -> DMClient:
        """The Device Management client (503 when DM_API_KEY is not set)."""
        if self._dm_client is None:
            if not self.settings.dm_api_key:
                raise ServiceUnavailable("DM_API_KEY is not set: device requests cannot be sent")
            self._dm_client = client_from_settings(self.settings)
        return self._dm_client

    def replay(self, letter_id: str) -> str:
        """Queue the replay of a dead letter (the worker does it); return the job id."""
        job = self.queue.enqueue(
            stores.REPLAY_FUNC,
            letter_id,
            retry=Retry(max=len(REPLAY_RETRY), interval=REPLAY_RETRY),
            description=f"replay dead letter {letter_id}",
        )
        return str(job.id)


def api() -> Api:
    """The Api of the running app."""
    found: Api = current_app.extensions[EXTENSION]
    return found


@bp.before_request
def _authorize() -> None:
    """404 when no key is configured; the key check for everything but the OpenAPI document."""
    keys = api().settings.management_api_keys
    if not keys:
        raise NotFound("the management API is off (MANAGEMENT_API_KEYS is not set)")
    if request.endpoint == "api.openapi":
        return
    require_key(request.headers.get("Authorization"), keys)


def _list(entities: list[dict[str, Any]], fields: dict[str, str]) -> Response:
    """An in-memory list response."""
    return jsonify(query.in_memory(entities, query.parse_list_query(request.args, fields)))


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of this API."""
    return jsonify(document())


@bp.get("/devices")
def list_devices() -> Response:
    """The device directory, ordered by id (ep)."""
    redis = api().redis
    q = query.parse_list_query(request.args, DEVICE_FIELDS)

    def total() -> int:
        if not q.filters:
            return state.device_count(redis)
        return sum(1 for d in state.iter_devices(redis, None, False) if q.matches(d))

    devices = state.iter_devices(redis, q.after, q.descending, chunk=q.limit + 1)  # one page, one read
    return jsonify(query.page(devices, q, total))


def _device_or_404(ep: str) -> dict[str, Any]:
    """A device entity, or 404."""
    found = state.device(api().redis, ep)
    if found is None:
        raise NotFound(f"no device {ep!r} is known")
    return found


@bp.get("/devices/<ep>")
def get_device(ep: str) -> Response:
    """One device."""
    return jsonify(_device_or_404(ep))


@bp.get("/devices/<ep>/resources")
def list_resources(ep: str) -> Response:
    """Last-known values of a device's resources."""
    _device_or_404(ep)
    return _list(state.resources(api().redis, ep), RESOURCE_FIELDS)


@bp.get("/devices/<ep>/events")
def list_events(ep: str) -> Response:
    """A device's event history, ordered by id (the time it was recorded)."""
    _device_or_404(ep)
    q = query.parse_list_query(request.args, EVENT_FIELDS)
    if q.after is not None and not EVENT_ID.match(q.after):
        raise query.invalid("after", "must be an event id such as 1764520000000-0")
    redis = api().redis
    max_age = api().settings.state_history_seconds
    entries = state.history(redis, ep, q.after, q.descending, max_age)
    return jsonify(
        query.page(
            entries, q, lambda: sum(1 for e in state.history(redis, ep, None, False, max_age) if q.matches(e))
        )
    )


def _async_entity(result: AsyncResult) -> dict[str, Any]:
    """An async request as an API entity."""
    return {
        "object": "async-request",
        "id": result.id,
        "ep": result.ep,
        "method": result.method,
        "path": result.path,
        "state": result.state,
        "status": result.status,
        "value": text_decoder(result.payload_b64, result.ct, result.path or "")[0],
        "ct": result.ct,
        "payload_b64": result.payload_b64,
        "error": result.error,
    }


def _request_body() -> dict[str, Any]:
    """The JSON object of a device request, validated."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest(
            "the body must be a JSON object", [{"name": "body", "message": "must be a JSON object"}]
        )
    method = body.get("method")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise query.invalid("method", f"must be one of {', '.join(METHODS)}")
    path = body.get("path")
    if not isinstance(path, str) or not path.strip("/") or " " in path:
        raise query.invalid("path", "must be a resource path such as /3/0/1")
    value = body.get("value")
    if value is not None and not isinstance(value, str | int | float | bool):
        raise query.invalid("value", "must be a string, number or boolean")
    return {"method": method.upper(), "path": "/" + path.lstrip("/"), "value": value}


def _payload(value: Any) -> str | None:
    """A request value as the text/plain payload Device Management forwards."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@bp.post("/devices/<ep>/requests")
def create_request(ep: str) -> tuple[Response, int]:
    """Send a device request through the async tracker; 202 with its async id."""
    body = _request_body()
    payload = _payload(body["value"])
    the_api = api()
    async_id = the_api.tracker.request(
        the_api.dm_client,
        ep,
        body["method"],
        body["path"],
        payload,
        "text/plain" if payload is not None else None,
    )
    return jsonify(_async_entity(the_api.tracker.get(async_id))), 202


@bp.get("/async-requests")
def list_async_requests() -> Response:
    """Pending and settled async requests (until their records expire)."""
    tracker = api().tracker
    return _list([_async_entity(tracker.get(i)) for i in request_ids(tracker)], ASYNC_FIELDS)


@bp.get("/async-requests/<async_id>")
def get_async_request(async_id: str) -> Response:
    """One async request."""
    result = api().tracker.get(async_id)
    if result.state == "unknown":
        raise NotFound(f"no async request {async_id!r} is known")
    return jsonify(_async_entity(result))


def _dead_entity(row: dict[str, Any]) -> dict[str, Any]:
    """A dead letter as an API entity (dates in RFC 3339)."""
    return {"object": "dead-letter", **row, "failed_at": state.iso(row.get("failed_at"))}


@bp.get("/dead-letters")
def list_dead_letters() -> Response:
    """Dead letters, without their events."""
    redis = api().redis
    rows = stores.dead_letter_summaries(redis, stores.dead_letter_ids(redis))
    return _list([_dead_entity(row) for row in rows], DEAD_FIELDS)


def _dead_or_404(letter_id: str) -> dict[str, Any]:
    """A dead letter, or 404."""
    letter = stores.dead_letter(api().redis, letter_id)
    if letter is None:
        raise NotFound(f"no dead letter {letter_id!r}")
    return letter


@bp.get("/dead-letters/<letter_id>")
def get_dead_letter(letter_id: str) -> Response:
    """One dead letter with its events and traceback."""
    return jsonify(_dead_entity(_dead_or_404(letter_id)))


@bp.post("/dead-letters/<letter_id>/replay")
def replay_dead_letter(letter_id: str) -> tuple[Response, int]:
    """Queue a replay: the worker re-delivers its events to its handler and removes it."""
    if not stores.dead_letter_exists(api().redis, letter_id):
        raise NotFound(f"no dead letter {letter_id!r}")
    job_id = api().replay(letter_id)
    return jsonify({"object": "replay", "id": letter_id, "job": job_id, "state": "queued"}), 202


@bp.delete("/dead-letters/<letter_id>")
def delete_dead_letter(letter_id: str) -> tuple[str, int]:
    """Delete a dead letter without replaying it."""
    if not stores.delete_dead_letter(api().redis, letter_id):
        raise NotFound(f"no dead letter {letter_id!r}")
    return "", 204


def _rejection_entity(record: dict[str, Any]) -> dict[str, Any]:
    """A rejection as an API entity."""
    return {"object": "rejection", **record, "at": state.iso(record.get("at"))}


@bp.get("/rejections")
def list_rejections() -> Response:
    """Rejected items and quarantined bodies (ordered by id: by time)."""
    return _list([_rejection_entity(r) for r in stores.rejections(api().redis)], REJECTION_FIELDS)


def init_app(app: Flask, settings: Settings, redis: Redis, dm_client: DMClient | None = None) -> None:
    """Register the management API."""
    app.extensions[EXTENSION] = Api(settings, redis, dm_client)
    app.register_blueprint(bp)
