"""The built-in state handler: the device directory, last-known values and history, kept in Redis.

One batch handler for every kind but async-responses (those live in the async tracker): each batch
costs one script call per ``CHUNK_DEVICES`` (200) devices, all sent in ONE pipelined round trip
whatever its size, their arguments planned by pure functions (:func:`plan`, :func:`batch_args`).
Every part is bounded (``app.state.Bounds``): resources per device, history entries per device by
count and age, keys expire after the device's last event, and the device count is capped by evicting
the devices seen longest ago. ``STATE=off`` leaves it unloaded.
"""

from __future__ import annotations

import json
import math
import time
from json.encoder import encode_basestring_ascii
from typing import Any

from redis import Redis
from redis.exceptions import NoScriptError

from app import state
from workers.events import Event
from workers.handlers.router import Router

NAME = "devicehooks.state"
KINDS = ("notifications", "registrations", "reg-updates", "de-registrations", "registrations-expired")
EVICT_BUDGET = 1000  # devices dropped per script call at most, so one call stays short
CHUNK_DEVICES = 200  # devices per script call: a call blocks Redis for ~2-5 ms at most (and the
# script unpacks two values a device into one ZADD: Lua's stack takes a few thousand)
STATUS_OF = {
    "registrations": "registered",
    "reg-updates": "registered",
    "de-registrations": "deregistered",
    "registrations-expired": "expired",
}

# The whole batch in one script call: one command for the client to encode and one reply, instead of
# about ten commands per device in a pipeline (measured: ~35x slower than no state on 1,000-device
# batches; README, Performance). KEYS: devices, seen. ARGV: prefix, max resources, history max, min
# history id, ttl, max devices, oldest last-seen kept, eviction budget, now, then per device: ep,
# a head number (status default 0/1 + 2 x directory pairs (at most 5) + 16 x value pairs: every
# argument costs ~0.2 us to pack in redis-py and to copy into ARGV), the directory field/value pairs,
# the path/value pairs, n, then n history entries of six values each (kind, timestamp, path, value,
# ct, uid; "" when absent).
# Measured per device and batch (cProfile and Redis's commandstats, 1,000-notification batches): the
# script's cost is mostly its redis.call()s (~1 us each), so a device already known costs one HSET
# for last_seen (its reply says whether the device is new: only then are ep, first_seen and the
# default status written, and the ep added to the index), one HSET per value (its reply says whether
# the path is new: only then is the resource cap checked, and a path beyond it removed again), the
# age trim, the XADDs and the three EXPIREs; the chunk's last-seen times go in one ZADD per call.
# Age trimmed first, approximately (whole stream nodes; an exact MINID trim cost ~14 us a device, a
# third of the script; app.state.history hides the older entries a node still holds), then one XADD
# per entry, every entry with the same fields (so the stream stores their names once per node) and
# only the last one trimming to the exact MAXLEN (one trim per device and batch, not per entry; the
# script runs whole, so no reader sees the stream over its cap). Entry ids are Redis's clock. Every
# key of the device expires ttl after this batch. Then: devices not seen since the oldest kept time
# are dropped (their keys expired), then the oldest beyond max devices, at most the budget per call.
_BATCH_LUA = """
local prefix = ARGV[1]
local max_resources = tonumber(ARGV[2])
local history_max = ARGV[3]
local min_id = ARGV[4]
local ttl = ARGV[5]
local now = ARGV[9]
local seen, new = {}, {}
local i = 10
while i <= #ARGV do
  local ep = ARGV[i]
  local dev, res, hist = prefix .. 'dev:' .. ep, prefix .. 'res:' .. ep, prefix .. 'hist:' .. ep
  local head = tonumber(ARGV[i + 1])
  local nf, nv = math.floor(head / 2) % 8, math.floor(head / 16)
  if redis.call('HSET', dev, 'last_seen', now) == 1 then
    redis.call('HSET', dev, 'ep', ep, 'first_seen', now)
    if head % 2 == 1 then redis.call('HSET', dev, 'status', 'registered') end
    new[#new + 1] = 0
    new[#new + 1] = ep
  end
  seen[#seen + 1] = now
  seen[#seen + 1] = ep
  i = i + 2
  if nf > 0 then redis.call('HSET', dev, unpack(ARGV, i, i + 2 * nf - 1)) end
  i = i + 2 * nf
  for j = i, i + 2 * nv - 1, 2 do
    if redis.call('HSET', res, ARGV[j], ARGV[j + 1]) == 1 and redis.call('HLEN', res) > max_resources then
      redis.call('HDEL', res, ARGV[j])
    end
  end
  i = i + 2 * nv
  local n = tonumber(ARGV[i])
  i = i + 1
  redis.call('XTRIM', hist, 'MINID', '~', min_id)
  for e = 1, n do
    local a = ARGV
    if e < n then
      redis.call('XADD', hist, '*', 'kind', a[i], 'timestamp', a[i + 1], 'received_at', now,
        'path', a[i + 2], 'value', a[i + 3], 'ct', a[i + 4], 'uid', a[i + 5])
    else
      redis.call('XADD', hist, 'MAXLEN', history_max, '*', 'kind', a[i], 'timestamp', a[i + 1],
        'received_at', now, 'path', a[i + 2], 'value', a[i + 3], 'ct', a[i + 4], 'uid', a[i + 5])
    end
    i = i + 6
  end
  redis.call('EXPIRE', dev, ttl)
  redis.call('EXPIRE', res, ttl)
  redis.call('EXPIRE', hist, ttl)
end
if #seen > 0 then redis.call('ZADD', KEYS[2], unpack(seen)) end
if #new > 0 then redis.call('ZADD', KEYS[1], unpack(new)) end
local function drop(ep)
  redis.call('DEL', prefix .. 'dev:' .. ep, prefix .. 'res:' .. ep, prefix .. 'hist:' .. ep)
  redis.call('ZREM', KEYS[1], ep)
  redis.call('ZREM', KEYS[2], ep)
end
local budget = tonumber(ARGV[8])
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[7], 'LIMIT', 0, budget)
for _, ep in ipairs(stale) do drop(ep) end
budget = budget - #stale
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[6])
if over > 0 and budget > 0 then
  for _, ep in ipairs(redis.call('ZRANGE', KEYS[2], 0, math.min(over, budget) - 1)) do drop(ep) end
end
return #stale
"""


class DeviceUpdate:
    """What one batch changes for one device (history entries in the script's fixed layout).

    A plain class with slots: a dataclass's default factories were 7% of the handler (py-spy)."""

    __slots__ = ("fields", "history", "status_default", "values")

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.status_default = False
        self.values: dict[str, str] = {}
        self.history: list[tuple[str, str, str, str, str, str]] = []


_json = json.JSONEncoder(separators=(",", ":"), default=str).encode  # one encoder: json.dumps with
# options builds a new one per call, a third of this module's cost per event


def _text(value: str | None) -> str:
    """A JSON string or null (the C encoder json uses for strings, without json.dumps's dispatch)."""
    return "null" if value is None else encode_basestring_ascii(value)


def _number(value: float) -> str:
    """A JSON number as json writes it (repr; json's own spelling when not finite)."""
    return repr(value) if math.isfinite(value) else _json(value)


def encode_value(value: Any) -> str:
    """A decoded value as JSON, exactly as ``_json`` writes it; numbers and text without the encoder
    (its per-call setup was most of the cost of encoding a plain reading)."""
    kind = type(value)
    if kind is float:
        return _number(value)
    if kind is int:
        return int.__repr__(value)
    if kind is str:
        return encode_basestring_ascii(value)
    return "null" if value is None else _json(value)


def _event_values(event: Event) -> dict[str, Any]:
    """path -> typed value of a notification (the path alone, with None, when nothing decoded)."""
    if event.values:
        return event.values
    return {event.path: event.value} if event.path else {}


def _registration_fields(event: Event) -> dict[str, str]:
    """Directory fields a registration, update, de-registration or expiry carries."""
    fields = {"status": STATUS_OF[event.kind]}
    if event.ept:
        fields["ept"] = event.ept
    if event.original_ep:
        fields["original_ep"] = event.original_ep
    if event.q is not None:
        fields["q"] = "1" if event.q else "0"
    if event.kind == "registrations" or (event.kind == "reg-updates" and event.resources):
        fields["resources"] = _json(event.resources or [])
    return fields


def plan(events: list[Event], now: float) -> dict[str, DeviceUpdate]:
    """Per device, the writes one batch makes (pure; events in batch order, the last one wins).

    A history entry's timestamp is "" when Device Management sent none (or none that parses): the
    reader takes ``received_at`` then, so the common case encodes one number less per event."""
    updates: dict[str, DeviceUpdate] = {}
    for event in events:
        kind, ep = event.kind, event.ep
        if not ep or kind not in KINDS:
            continue
        update = updates.get(ep)
        if update is None:
            update = updates[ep] = DeviceUpdate()
        sent = None if event.timestamp is None else state.parse_time(event.timestamp) or None
        if kind == "notifications":
            when = now if sent is None else sent
            value_json = encode_value(event.value)
            stored = f'{{"ct":{_text(event.ct)},"timestamp":{_number(when)},"uid":{_text(event.uid)},"value":'
            update.status_default = True
            for path, value in _event_values(event).items():
                update.values[path] = (
                    stored + (value_json if value is event.value else encode_value(value)) + "}"
                )
        else:
            value_json = ""
            update.fields.update(_registration_fields(event))
        update.history.append(
            (
                kind,
                "" if sent is None else repr(sent),
                event.path or "",
                value_json,
                event.ct or "",
                event.uid or "",
            )
        )
    return updates


def batch_args(updates: dict[str, DeviceUpdate], bounds: state.Bounds, now: float) -> list[Any]:
    """The batch script's ARGV for these updates (pure)."""
    min_id = f"{max(0, int((now - bounds.history_seconds) * 1000))}-0"
    args: list[Any] = [
        state.PREFIX, bounds.max_resources, bounds.history_max, min_id, bounds.ttl_seconds,
        bounds.max_devices, repr(now - bounds.ttl_seconds), EVICT_BUDGET, repr(now),
    ]  # fmt: skip
    extend = args.extend
    for ep, update in updates.items():
        args += (ep, update.status_default + 2 * len(update.fields) + 16 * len(update.values))
        for pair in update.fields.items():
            extend(pair)
        for pair in update.values.items():
            extend(pair)
        history = update.history[-bounds.history_max :]
        args.append(len(history))
        for entry in history:
            extend(entry)
    return args


def chunks(updates: dict[str, DeviceUpdate], size: int) -> list[dict[str, DeviceUpdate]]:
    """The updates in groups of at most ``size`` devices."""
    items = list(updates.items())
    return [dict(items[start : start + size]) for start in range(0, len(items), size)]


class StateWriter:
    """Writes a batch's updates in one round trip to Redis, whatever the batch's size.

    One script call per ``CHUNK_DEVICES`` devices, all in one pipeline: a script blocks Redis while it
    runs, so a 20,000-item batch must not be one call (the callback's enqueue would wait behind it).
    The script is loaded once and called by its SHA; calls refused because a Redis restart emptied the
    script cache are made again once it is reloaded (a script runs whole or not at all).
    """

    def __init__(self, redis: Redis, bounds: state.Bounds) -> None:
        self.redis = redis
        self.bounds = bounds
        self._sha: str | None = None

    def write(self, events: list[Event], now: float | None = None) -> int:
        """Record a batch's events; return how many devices it touched."""
        now = time.time() if now is None else now
        updates = plan(events, now)
        if not updates:
            return 0
        if self._sha is None:
            self._sha = str(self.redis.script_load(_BATCH_LUA))
        keys = [state.DEVICES, state.SEEN]
        calls = [batch_args(chunk, self.bounds, now) for chunk in chunks(updates, CHUNK_DEVICES)]
        pipe = self.redis.pipeline(transaction=False)
        for args in calls:
            pipe.evalsha(self._sha, len(keys), *keys, *args)
        results = pipe.execute(raise_on_error=False)
        refused = [
            args for args, result in zip(calls, results, strict=True) if isinstance(result, NoScriptError)
        ]
        if refused:
            self._sha = str(self.redis.script_load(_BATCH_LUA))
            for args in refused:
                self.redis.evalsha(self._sha, len(keys), *keys, *args)
        errors = [
            result
            for result in results
            if isinstance(result, Exception) and not isinstance(result, NoScriptError)
        ]
        if errors:
            raise errors[0]
        return len(updates)


router = Router()
_writer: list[StateWriter] = []  # the process's writer, built on first use from the installed runtime


@router.register(list(KINDS), batch=True, name=NAME, attempts=5, timeout=30)
def record_state(events: list[Event]) -> None:
    """Keep the device directory, last-known values and history of a batch's events."""
    from workers import runtime

    rt = runtime.current()
    if not _writer or _writer[0].redis is not rt.redis:
        _writer[:] = [StateWriter(rt.redis, state.Bounds.from_settings(rt.settings))]
    _writer[0].write(events)
