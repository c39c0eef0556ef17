"""Device state kept in Redis by ``workers.handlers.state``: key names, bounds, time formats, readers.

Keys, under ``devicehooks:state:``:

- ``devices``     sorted set of every known ep, all scores 0, so ``ZRANGEBYLEX`` pages by id;
- ``seen``        sorted set ep -> last seen (epoch s): the eviction order;
- ``dev:{ep}``    hash: ep, ept, status, first_seen, last_seen, original_ep, q, resources (JSON);
- ``res:{ep}``    hash: resource path -> JSON ``{"value", "ct", "timestamp", "uid"}`` (last-known values);
- ``hist:{ep}``   stream of events (kind, timestamp, received_at, path, value, ct, uid; every entry
  has every field, "" when absent, and no timestamp means the time received), capped by count and age.

Every key of a device expires ``STATE_TTL_SECONDS`` after its last event; beyond ``STATE_MAX_DEVICES``
the devices seen longest ago are evicted whole.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis

from app.config import Settings
from app.redis_conn import text

PREFIX = "devicehooks:state:"
DEVICES = PREFIX + "devices"
SEEN = PREFIX + "seen"
_TRUNCATED = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(?:\.(\d+))?Z$")
_EARLIEST = datetime.min.replace(tzinfo=UTC).timestamp()  # the range of times datetime holds, in epoch s
_LATEST = datetime.max.replace(tzinfo=UTC).timestamp()  # (exclusive: it rounds up to a whole second)


def dev_key(ep: str) -> str:
    """The hash of one device."""
    return f"{PREFIX}dev:{ep}"


def res_key(ep: str) -> str:
    """The last-known values of one device."""
    return f"{PREFIX}res:{ep}"


def hist_key(ep: str) -> str:
    """The event history stream of one device."""
    return f"{PREFIX}hist:{ep}"


@dataclass(frozen=True)
class Bounds:
    """How much state is kept (settings ``STATE_*``)."""

    max_devices: int = 100_000
    max_resources: int = 500
    history_max: int = 1000
    history_seconds: int = 7 * 24 * 3600
    ttl_seconds: int = 30 * 24 * 3600

    @classmethod
    def from_settings(cls, settings: Settings) -> Bounds:
        """The bounds configured in the settings."""
        return cls(
            max_devices=settings.state_max_devices,
            max_resources=settings.state_max_resources,
            history_max=settings.state_history_max,
            history_seconds=settings.state_history_seconds,
            ttl_seconds=settings.state_ttl_seconds,
        )


def parse_time(value: Any) -> float | None:
    """Epoch seconds from RFC 3339, the truncated form (``20161130T162512Z``) or a number (s or ms);
    None when it does not parse or is no time :func:`iso` can write (not finite, or beyond years
    1-9999)."""
    try:
        seconds = _seconds(value)
    except (ValueError, OverflowError):  # month 13, an int beyond any float, ...
        return None
    return seconds if seconds is not None and _EARLIEST <= seconds < _LATEST else None  # NaN fails both


def _seconds(value: Any) -> float | None:
    """Epoch seconds as written, unchecked (parse_time's parser)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) / 1000 if value > 100_000_000_000 else float(value)
    raw = str(value).strip()
    match = _TRUNCATED.match(raw)
    if match:
        year, month, day, hour, minute, second, fraction = match.groups()
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC)
        return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return _seconds(float(raw))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def iso(seconds: float | None) -> str | None:
    """RFC 3339 in UTC with milliseconds, as Device Management writes dates."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _float(value: str | None) -> float | None:
    """A stored number, or None."""
    return float(value) if value not in (None, "") else None


def device_entity(fields: dict[str, str]) -> dict[str, Any]:
    """A device hash as the API's device entity."""
    q = fields.get("q")
    return {
        "object": "device",
        "id": fields["ep"],
        "ep": fields["ep"],
        "ept": fields.get("ept") or None,
        "status": fields.get("status") or None,
        "first_seen": iso(_float(fields.get("first_seen"))),
        "last_seen": iso(_float(fields.get("last_seen"))),
        "original_ep": fields.get("original_ep") or None,
        "queue_mode": None if q in (None, "") else q == "1",
        "resources": json.loads(fields["resources"]) if fields.get("resources") else [],
    }


def _decoded(raw: dict[Any, Any]) -> dict[str, str]:
    """A Redis hash reply as text."""
    return {text(k): text(v) for k, v in raw.items()}


def device(redis: Redis, ep: str) -> dict[str, Any] | None:
    """One device entity, or None."""
    fields = _decoded(redis.hgetall(dev_key(ep)))
    return device_entity(fields) if fields.get("ep") else None


def iter_devices(
    redis: Redis, after: str | None, descending: bool, chunk: int = 500
) -> Iterator[dict[str, Any]]:
    """Device entities ordered by id, starting after ``after``, read ``chunk`` at a time."""
    cursor = after
    while True:
        if descending:
            top = f"({cursor}" if cursor is not None else "+"
            ids = redis.zrevrangebylex(DEVICES, top, "-", start=0, num=chunk)
        else:
            bottom = f"({cursor}" if cursor is not None else "-"
            ids = redis.zrangebylex(DEVICES, bottom, "+", start=0, num=chunk)
        if not ids:
            return
        pipe = redis.pipeline(transaction=False)
        for ep in ids:
            pipe.hgetall(dev_key(text(ep)))
        for raw in pipe.execute():
            if raw:
                yield device_entity(_decoded(raw))
        if len(ids) < chunk:
            return
        cursor = text(ids[-1])


def device_count(redis: Redis) -> int:
    """How many devices are known."""
    return int(redis.zcard(DEVICES))


def resources(redis: Redis, ep: str) -> list[dict[str, Any]]:
    """The last-known value of every resource of a device, ordered by path."""
    out = []
    for path, raw in sorted(_decoded(redis.hgetall(res_key(ep))).items()):
        stored = json.loads(raw)
        out.append(
            {
                "object": "resource-value",
                "id": path,
                "path": path,
                "value": stored.get("value"),
                "ct": stored.get("ct"),
                "timestamp": iso(stored.get("timestamp")),
                "uid": stored.get("uid"),
            }
        )
    return out


def history_entity(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """One history stream entry as the API's event entity (absent fields are stored as ""; an entry
    without Device Management's timestamp takes the time received)."""
    return {
        "object": "device-event",
        "id": entry_id,
        "kind": fields.get("kind"),
        "path": fields.get("path") or None,
        "value": json.loads(fields["value"]) if fields.get("value") else None,
        "ct": fields.get("ct") or None,
        "uid": fields.get("uid") or None,
        "timestamp": iso(_float(fields.get("timestamp") or fields.get("received_at"))),
        "received_at": iso(_float(fields.get("received_at"))),
    }


def history(
    redis: Redis, ep: str, after: str | None, descending: bool, max_age: float | None = None
) -> list[dict[str, Any]]:
    """A device's history, ordered by entry id, without entries older than ``max_age`` seconds (the
    writer trims by age in whole stream nodes); bounded by count, so it is read whole."""
    key = hist_key(ep)
    if descending:
        rows: Any = redis.xrevrange(key, max=f"({after}" if after else "+", min="-")
    else:
        rows = redis.xrange(key, min=f"({after}" if after else "-", max="+")
    oldest_ms = (time.time() - max_age) * 1000 if max_age is not None else None
    return [
        history_entity(text(entry_id), _decoded(fields or {}))
        for entry_id, fields in rows or ()
        if oldest_ms is None or int(text(entry_id).split("-", 1)[0]) >= oldest_ms
    ]
