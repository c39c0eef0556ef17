"""The Redis side of the bridge: the event stream (bounded), its consumer group, the device registry.

Keys, under ``devicehooks:tb:``:

- ``stream``   one entry per event (field ``f``: the JSON list of its gateway fragments), read by the
  consumer group ``bridge``; an entry is acknowledged (XACK) and deleted (XDEL) only after ThingsBoard
  PUBACKed every message carrying it, so the stream's length is the backlog;
- ``dropped``  how many events were refused because the backlog was at its cap (never silently: the
  handler logs each refusal, ``devicehooks thingsboard --check`` prints the counter);
- ``invalid``  how many stream entries the bridge could not publish (unreadable or refused by
  validation; only a foreign or corrupted writer produces them, the handler validates what it writes);
- ``devices``  hash: ThingsBoard device name -> JSON ``{"ep", "type", "live"}`` from the last lifecycle
  message ThingsBoard acknowledged; RPCs find their endpoint here and a reconnect re-sends ``connect``
  for every ``live`` device.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import ResponseError

from app.redis_conn import text

logger = logging.getLogger(__name__)

PREFIX = "devicehooks:tb:"
STREAM = PREFIX + "stream"
DROPPED = PREFIX + "dropped"
INVALID = PREFIX + "invalid"
DEVICES = PREFIX + "devices"
GROUP = "bridge"
CONSUMER = "bridge"  # one bridge process owns the one gateway connection

# KEYS: stream, dropped. ARGV: cap, then one JSON fragment list per event.
# Adds events while the stream holds fewer than cap entries; counts the rest as dropped.
_APPEND_LUA = """
local room = tonumber(ARGV[1]) - redis.call('XLEN', KEYS[1])
local added = 0
for i = 2, #ARGV do
  if added >= room then break end
  redis.call('XADD', KEYS[1], '*', 'f', ARGV[i])
  added = added + 1
end
local dropped = (#ARGV - 1) - added
if dropped > 0 then redis.call('INCRBY', KEYS[2], dropped) end
return {added, dropped}
"""


@dataclass(frozen=True)
class Entry:
    """One stream entry: its id and its fragments (None when unreadable)."""

    id: str
    fragments: list[dict[str, Any]] | None


def append(redis: Redis, events: list[list[dict[str, Any]]], cap: int) -> tuple[int, int]:
    """Append one entry per event while the backlog is under ``cap``; return (added, dropped)."""
    if not events:
        return 0, 0
    script = redis.register_script(_APPEND_LUA)
    payloads = [json.dumps(fragments, separators=(",", ":"), ensure_ascii=False) for fragments in events]
    added, dropped = script(keys=[STREAM, DROPPED], args=[cap, *payloads])
    return int(added), int(dropped)


def ensure_group(redis: Redis) -> None:
    """Create the consumer group (reading from the start of the stream) unless it exists."""
    try:
        redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _parse(fields: dict[Any, Any]) -> list[dict[str, Any]] | None:
    """The fragment list of an entry, None when it is not one."""
    raw = fields.get(b"f", fields.get("f"))
    try:
        fragments = json.loads(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None
    if not isinstance(fragments, list) or not all(isinstance(f, dict) for f in fragments):
        return None
    return fragments


def read(redis: Redis, count: int, block_ms: int, pending: bool) -> list[Entry]:
    """Up to ``count`` entries: this consumer's unacknowledged ones when ``pending``, else new ones."""
    reply = redis.xreadgroup(
        GROUP, CONSUMER, {STREAM: "0" if pending else ">"}, count=count, block=None if pending else block_ms
    )
    entries = []
    rows: list[Any] = list(reply or ())
    for _, items in rows:
        for entry_id, fields in items:
            if fields is None:  # trimmed by hand while pending: nothing to publish
                entries.append(Entry(text(entry_id), []))
                continue
            entries.append(Entry(text(entry_id), _parse(fields)))
    return entries


def ack(redis: Redis, ids: list[str]) -> None:
    """Acknowledge and delete delivered entries."""
    if ids:
        pipe = redis.pipeline(transaction=True)
        pipe.xack(STREAM, GROUP, *ids)
        pipe.xdel(STREAM, *ids)
        pipe.execute()


def count_invalid(redis: Redis, count: int) -> None:
    """Count entries that could not be published."""
    if count:
        redis.incrby(INVALID, count)


def record_lifecycle(redis: Redis, fragments: list[dict[str, Any]]) -> None:
    """Remember the devices whose connect/disconnect ThingsBoard acknowledged."""
    updates = {}
    for fragment in fragments:
        if fragment.get("op") == "connect":
            updates[fragment["device"]] = {
                "ep": fragment.get("ep"),
                "type": fragment.get("type"),
                "live": True,
            }
        elif fragment.get("op") == "disconnect":
            updates[fragment["device"]] = {"ep": fragment.get("ep"), "type": None, "live": False}
    if updates:
        redis.hset(DEVICES, mapping={name: json.dumps(doc) for name, doc in updates.items()})


def device(redis: Redis, name: str) -> dict[str, Any] | None:
    """The registry record of one ThingsBoard device name."""
    raw = redis.hget(DEVICES, name)
    return json.loads(raw) if raw else None


def live_devices(redis: Redis) -> list[tuple[str, str]]:
    """(name, type) of every device whose last lifecycle message was a connect."""
    out = []
    for name, raw in redis.hscan_iter(DEVICES, count=1000):
        doc = json.loads(raw)
        if doc.get("live"):
            out.append((text(name), str(doc.get("type") or "default")))
    return sorted(out)


def status(redis: Redis) -> dict[str, int]:
    """Backlog, dropped and invalid counters, and how many devices are live (for ``--check``)."""
    pipe = redis.pipeline(transaction=False)
    pipe.xlen(STREAM)  # 0 when the stream does not exist
    pipe.get(DROPPED)
    pipe.get(INVALID)
    backlog, dropped, invalid = pipe.execute()
    return {
        "backlog": int(backlog),
        "dropped": int(dropped or 0),
        "invalid": int(invalid or 0),
        "live_devices": len(live_devices(redis)),
    }
