"""The built-in state handler: the device directory, last-known values and history, kept in Redis.

One batch handler for every kind but async-responses (those live in the async tracker): each batch
costs ONE pipeline (one round trip), whatever its size, and the pipeline's writes are planned by
pure functions (:func:`plan`). Every part is bounded (``app.state.Bounds``): resources per device,
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
STATUS_OF = {
    "registrations": "registered",
    "reg-updates": "registered",
    "de-registrations": "deregistered",
    "registrations-expired": "expired",
}

# KEYS: the resources hash. ARGV: cap, then path/value pairs. A known path is always updated; a new one
# only while the hash holds fewer than cap paths. Returns how many new paths were refused.
_CAPPED_HSET_LUA = """
local refused = 0
for i = 2, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 or redis.call('HLEN', KEYS[1]) < tonumber(ARGV[1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  else
    refused = refused + 1
  end
end
return refused
"""

# KEYS: devices, seen. ARGV: max devices, oldest last-seen kept, key prefix, most removals per call.
# Removes devices not seen since ARGV[2] (their keys expired), then the oldest beyond the cap.
_EVICT_LUA = """
local function drop(ep)
  redis.call('DEL', ARGV[3] .. 'dev:' .. ep, ARGV[3] .. 'res:' .. ep, ARGV[3] .. 'hist:' .. ep)
  redis.call('ZREM', KEYS[1], ep)
  redis.call('ZREM', KEYS[2], ep)
end
local budget = tonumber(ARGV[4])
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[2], 'LIMIT', 0, budget)
for _, ep in ipairs(stale) do drop(ep) end
budget = budget - #stale
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[1])
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


def _json(value: Any) -> str:
    """Compact JSON of a decoded value."""
    return json.dumps(value, separators=(",", ":"), default=str)


def _event_values(event: Event) -> dict[str, Any]:
    """path -> typed value of a notification (the path alone, with None, when nothing decoded)."""
    if event.values:
        return event.values
    return {event.path: event.value} if event.path else {}


def _history_entry(event: Event, when: float, now: float) -> dict[str, str]:
    """A stream entry for one event (absent fields are left out)."""
    entry = {"kind": event.kind, "timestamp": repr(when), "received_at": repr(now)}
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
    for event in events:
        if not event.ep or event.kind not in KINDS:
            continue
        update = updates.get(event.ep)
        if update is None:
            update = updates[event.ep] = DeviceUpdate(first_seen=now)
        when = state.parse_time(event.timestamp) or now
        update.fields.update({"ep": event.ep, "last_seen": repr(now)})
        update.history.append(_history_entry(event, when, now))
        if event.kind == "notifications":
            update.status_default = True
            stored = {"ct": event.ct, "timestamp": when, "uid": event.uid}
            for path, value in _event_values(event).items():
                update.values[path] = _json({**stored, "value": value})
        else:
            update.fields.update(_registration_fields(event))
    return updates


class StateWriter:
    """Applies planned updates in one pipeline per batch: one round trip to Redis.

    The two Lua scripts are loaded once and called by their SHA inside the pipeline (redis-py's
    Script objects would add a ``SCRIPT EXISTS`` round trip to every batch); after a Redis restart
    emptied the script cache, the calls that failed are run again once the scripts are reloaded.
    """

    def __init__(self, redis: Redis, bounds: state.Bounds) -> None:
        self.redis = redis
        self.bounds = bounds
        self._shas: dict[str, str] = {}

    def _sha(self, source: str) -> str:
        """The SHA of a script, loaded on first use."""
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = str(self.redis.script_load(source))
        return sha

    def _queue_writes(
        self, pipe: Any, updates: dict[str, DeviceUpdate], now: float
    ) -> list[tuple[int, str, list[str], list[Any]]]:
        """Put every write of a batch on the pipeline; return the script calls (index, source, keys, args)."""
        bounds = self.bounds
        min_id = f"{int((now - bounds.history_seconds) * 1000)}-0"
        scripts: list[tuple[int, str, list[str], list[Any]]] = []

        def script(source: str, keys: list[str], args: list[Any]) -> None:
            scripts.append((len(pipe), source, keys, args))
            pipe.evalsha(self._sha(source), len(keys), *keys, *args)

        for ep, update in updates.items():
            dev, res, hist = state.dev_key(ep), state.res_key(ep), state.hist_key(ep)
            pipe.hsetnx(dev, "first_seen", repr(update.first_seen))
            if update.status_default:
                pipe.hsetnx(dev, "status", "registered")
            pipe.hset(dev, mapping=update.fields)
            pipe.zadd(state.DEVICES, {ep: 0})
            pipe.zadd(state.SEEN, {ep: now})
            if update.values:
                pairs = [item for path_value in update.values.items() for item in path_value]
                script(_CAPPED_HSET_LUA, [res], [bounds.max_resources, *pairs])
            # Entry ids are Redis's clock; age is trimmed first, so this batch's entries always stay.
            pipe.xtrim(hist, minid=min_id, approximate=False)
            for entry in update.history[-bounds.history_max :]:
                pipe.xadd(hist, entry, maxlen=bounds.history_max, approximate=False)
            for key in (dev, res, hist):
                pipe.expire(key, bounds.ttl_seconds)
        script(
            _EVICT_LUA,
            [state.DEVICES, state.SEEN],
            [bounds.max_devices, now - bounds.ttl_seconds, state.PREFIX, 1000],
        )
        return scripts

    def write(self, events: list[Event], now: float | None = None) -> int:
        """Record a batch's events; return how many devices it touched."""
        now = time.time() if now is None else now
        updates = plan(events, now)
        if not updates:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        scripts = self._queue_writes(pipe, updates, now)
        results = pipe.execute(raise_on_error=False)
        unloaded = [call for call in scripts if isinstance(results[call[0]], NoScriptError)]
        if unloaded:
            self._shas.clear()
            for _, source, keys, args in unloaded:
                self.redis.evalsha(self._sha(source), len(keys), *keys, *args)
        errors = [r for r in results if isinstance(r, Exception) and not isinstance(r, NoScriptError)]
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
