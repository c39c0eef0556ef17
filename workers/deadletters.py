"""Dead letters: events a handler still failed after its last attempt, kept for inspection and replay.

Bounded (``app.stores.StoreLimits``): each letter expires ``ttl`` after it was written; at most
``dead_letters_keep`` letters and ``dead_letters_max_bytes`` of events in all, the oldest evicted first
(atomically, in one Lua call, with the new letter). A letter whose events alone exceed a quarter of the
byte budget keeps a truncated copy with the size and sha256 of the whole; it cannot be replayed.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from redis import Redis

from app.redis_conn import text
from app.stores import (
    DEAD_INDEX,
    DEAD_PREFIX,
    DEAD_SIZES,
    StoreLimits,
    clip,
    dead_letter,
    dead_letter_summaries,
    delete_dead_letter,
)
from workers.storable import dumps_safe

INDEX = DEAD_INDEX
PREFIX = DEAD_PREFIX

# KEYS: index, sizes, the new letter's hash. ARGV: id, now, ttl, keep, max_bytes, size, prefix, fields...
_ADD_LUA = """
local id, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local keep, budget, size, prefix = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - ttl)) do
  redis.call('ZREM', KEYS[1], old)
  redis.call('HDEL', KEYS[2], old)
end
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do total = total + tonumber(v) end
local evicted = 0
while redis.call('ZCARD', KEYS[1]) > 0 and (redis.call('ZCARD', KEYS[1]) >= keep or total + size > budget) do
  local old = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  total = total - tonumber(redis.call('HGET', KEYS[2], old) or '0')
  redis.call('DEL', prefix .. old)
  redis.call('ZREM', KEYS[1], old)
  redis.call('HDEL', KEYS[2], old)
  evicted = evicted + 1
end
redis.call('HSET', KEYS[3], unpack(ARGV, 8))
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('ZADD', KEYS[1], now, id)
redis.call('HSET', KEYS[2], id, size)
return evicted
"""


class DeadLetters:
    """Stores each dead letter as a hash, indexed by time in a sorted set, sizes in a hash."""

    def __init__(self, redis: Redis, limits: StoreLimits | None = None) -> None:
        self.redis = redis
        self.limits = limits or StoreLimits()
        self._add = redis.register_script(_ADD_LUA)

    def add(
        self,
        handler: str,
        events: list[dict[str, Any]],
        error: str,
        trace: str,
        attempts: int,
        source: str,
    ) -> str:
        """Record one dead letter (evicting the oldest beyond the limits); return its id."""
        letter_id = "d" + uuid.uuid4().hex[:16]
        now = time.time()
        encoded = dumps_safe(events).encode()
        fields: dict[str, Any] = {
            "id": letter_id, "handler": handler, "events": encoded, "count": len(events), "error": error,
            "traceback": trace, "attempts": attempts, "source": source, "failed_at": now,
        }  # fmt: skip
        clipped = clip(encoded, self.limits.dead_letter_bytes)
        if clipped is not None:
            fields.update(events="[]", truncated=clipped["truncated"][:65536])
            fields.update(bytes=clipped["bytes"], sha256=clipped["sha256"])
        size = len(fields["events"]) + len(fields.get("truncated", ""))
        args: list[Any] = [letter_id, now, self.limits.ttl, self.limits.dead_letters_keep]
        args += [self.limits.dead_letters_max_bytes, size, PREFIX]
        for name, value in fields.items():
            args += [name, value]
        self._add(keys=[INDEX, DEAD_SIZES, PREFIX + letter_id], args=args)
        return letter_id

    def get(self, letter_id: str) -> dict[str, Any] | None:
        """One dead letter with its events, or None."""
        return dead_letter(self.redis, letter_id)

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead letters, without their events and tracebacks (``count`` and ``attempts`` ints,
        ``failed_at`` a float, as ``get`` and the management API give them)."""
        ids = [text(i) for i in self.redis.zrevrange(INDEX, 0, limit - 1)]
        return dead_letter_summaries(self.redis, ids)

    def remove(self, letter_id: str) -> bool:
        """Delete one dead letter; False when it did not exist."""
        return delete_dead_letter(self.redis, letter_id)

    def purge(self) -> int:
        """Delete every dead letter; return how many."""
        ids = [text(i) for i in self.redis.zrange(INDEX, 0, -1)]
        for letter_id in ids:
            self.remove(letter_id)
        return len(ids)

    def count(self) -> int:
        """How many dead letters there are."""
        return int(self.redis.zcard(INDEX))
