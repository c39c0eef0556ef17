"""The built-in state handler: the device directory, last-known values and history, kept in Redis.

One batch handler for every kind but async-responses (those live in the async tracker): each batch
costs ONE script call (one round trip), whatever its size, its arguments planned by pure functions
(:func:`plan`, :func:`batch_args`). Every part is bounded (``app.state.Bounds``): resources per device,
history entries per device by count and age, keys expire after the device's last event, and the
device count is capped by evicting the devices seen longest ago. ``STATE=off`` leaves it unloaded.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.exceptions import NoScriptError

from app import state
from workers.events import Event
from workers.handlers.router import Router

NAME = "devicehooks.state"
KINDS = ("notifications", "registrations", "reg-updates", "de-registrations", "registrations-expired")
EVICT_BUDGET = 1000  # devices dropped per script call at most, so one call stays short
CHUNK_DEVICES = 200  # devices per script call: a call blocks Redis for ~2-5 ms at most
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
# first_seen, status default (0/1), n, n directory field/value pairs, n, n path/value pairs, n, then n
# history entries each as m followed by m field/value pairs.
# Directory: HSETNX first_seen (and status for notifications), HSET fields, ZADD both indexes. Values:
# a known path always updates, a new one only while the hash holds fewer than max resources. History:
# age trimmed first, approximately (whole stream nodes; an exact MINID trim cost ~14 us a device, a
# third of the script; app.state.history hides the older entries a node still holds), then XADD with
# an exact MAXLEN. Entry ids are Redis's clock. Every key of the
# device expires ttl after this batch. Then: devices not seen since the oldest kept time are dropped
# (their keys expired), then the oldest beyond max devices, at most the budget per call.
_BATCH_LUA = """
local prefix = ARGV[1]
local max_resources = tonumber(ARGV[2])
local history_max = ARGV[3]
local min_id = ARGV[4]
local ttl = ARGV[5]
local now = ARGV[9]
local i = 10
while i <= #ARGV do
  local ep = ARGV[i]
  local dev, res, hist = prefix .. 'dev:' .. ep, prefix .. 'res:' .. ep, prefix .. 'hist:' .. ep
  redis.call('HSETNX', dev, 'first_seen', ARGV[i + 1])
  if ARGV[i + 2] == '1' then redis.call('HSETNX', dev, 'status', 'registered') end
  i = i + 3
  local n = tonumber(ARGV[i])
  if n > 0 then redis.call('HSET', dev, unpack(ARGV, i + 1, i + 2 * n)) end
  i = i + 2 * n + 1
  redis.call('ZADD', KEYS[1], 0, ep)
  redis.call('ZADD', KEYS[2], now, ep)
  n = tonumber(ARGV[i])
  for j = i + 1, i + 2 * n, 2 do
    if redis.call('HEXISTS', res, ARGV[j]) == 1 or redis.call('HLEN', res) < max_resources then
      redis.call('HSET', res, ARGV[j], ARGV[j + 1])
    end
  end
  i = i + 2 * n + 1
  n = tonumber(ARGV[i])
  i = i + 1
  redis.call('XTRIM', hist, 'MINID', '~', min_id)
  for _ = 1, n do
    local m = tonumber(ARGV[i])
    redis.call('XADD', hist, 'MAXLEN', history_max, '*', unpack(ARGV, i + 1, i + 2 * m))
    i = i + 2 * m + 1
  end
  redis.call('EXPIRE', dev, ttl)
  redis.call('EXPIRE', res, ttl)
  redis.call('EXPIRE', hist, ttl)
end
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


@dataclass
class DeviceUpdate:
    """What one batch changes for one device."""

    fields: dict[str, str] = field(default_factory=dict)
    first_seen: float = 0.0
    status_default: bool = False
    values: dict[str, str] = field(default_factory=dict)
    history: list[dict[str, str]] = field(default_factory=list)


_json = json.JSONEncoder(separators=(",", ":"), default=str).encode  # one encoder: json.dumps with
# options builds a new one per call, a third of this module's cost per event


def _event_values(event: Event) -> dict[str, Any]:
    """path -> typed value of a notification (the path alone, with None, when nothing decoded)."""
    if event.values:
        return event.values
    return {event.path: event.value} if event.path else {}


def _history_entry(event: Event, when: str, now: str) -> dict[str, str]:
    """A stream entry for one event (absent fields are left out)."""
    entry = {"kind": event.kind, "timestamp": when, "received_at": now}
    if event.path:
        entry["path"] = event.path
    if event.kind == "notifications":
        entry["value"] = _json(event.value)
    if event.ct:
        entry["ct"] = event.ct
    if event.uid:
        entry["uid"] = event.uid
    return entry


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
    """Per device, the writes one batch makes (pure; events in batch order, the last one wins)."""
    updates: dict[str, DeviceUpdate] = {}
    now_text = repr(now)
    for event in events:
        if not event.ep or event.kind not in KINDS:
            continue
        update = updates.get(event.ep)
        if update is None:
            update = updates[event.ep] = DeviceUpdate(first_seen=now)
        when = now if event.timestamp is None else state.parse_time(event.timestamp) or now
        update.fields["ep"] = event.ep
        update.fields["last_seen"] = now_text
        update.history.append(_history_entry(event, now_text if when is now else repr(when), now_text))
        if event.kind == "notifications":
            update.status_default = True
            stored = {"ct": event.ct, "timestamp": when, "uid": event.uid}
            for path, value in _event_values(event).items():
                update.values[path] = _json({**stored, "value": value})
        else:
            update.fields.update(_registration_fields(event))
    return updates


def batch_args(updates: dict[str, DeviceUpdate], bounds: state.Bounds, now: float) -> list[Any]:
    """The batch script's ARGV for these updates (pure)."""
    min_id = f"{max(0, int((now - bounds.history_seconds) * 1000))}-0"
    args: list[Any] = [
        state.PREFIX, bounds.max_resources, bounds.history_max, min_id, bounds.ttl_seconds,
        bounds.max_devices, repr(now - bounds.ttl_seconds), EVICT_BUDGET, repr(now),
    ]  # fmt: skip
    for ep, update in updates.items():
        args += [ep, repr(update.first_seen), "1" if update.status_default else "0", len(update.fields)]
        for pair in update.fields.items():
            args += pair
        args.append(len(update.values))
        for pair in update.values.items():
            args += pair
        history = update.history[-bounds.history_max :]
        args.append(len(history))
        for entry in history:
            args.append(len(entry))
            for pair in entry.items():
                args += pair
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
