"""Dead letters: events a handler still failed after its last attempt, kept for inspection and replay."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from redis import Redis

from app.redis_conn import text
from app.stores import DEAD_INDEX as INDEX
from app.stores import DEAD_PREFIX as PREFIX


class DeadLetters:
    """Stores each dead letter as a hash, indexed by time in a sorted set."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def add(
        self,
        handler: str,
        events: list[dict[str, Any]],
        error: str,
        trace: str,
        attempts: int,
        source: str,
    ) -> str:
        """Record one dead letter; return its id."""
        letter_id = "d" + uuid.uuid4().hex[:16]
        now = time.time()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            PREFIX + letter_id,
            mapping={
                "id": letter_id,
                "handler": handler,
                "events": json.dumps(events),
                "count": len(events),
                "error": error,
                "traceback": trace,
                "attempts": attempts,
                "source": source,
                "failed_at": now,
            },
        )
        pipe.zadd(INDEX, {letter_id: now})
        pipe.execute()
        return letter_id

    def get(self, letter_id: str) -> dict[str, Any] | None:
        """One dead letter with its events, or None."""
        raw = self.redis.hgetall(PREFIX + letter_id)
        if not raw:
            return None
        letter: dict[str, Any] = {text(k): text(v) for k, v in raw.items()}
        letter["events"] = json.loads(letter["events"])
        letter["count"] = int(letter["count"])
        letter["attempts"] = int(letter["attempts"])
        letter["failed_at"] = float(letter["failed_at"])
        return letter

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead letters, without their events and tracebacks."""
        ids = [text(i) for i in self.redis.zrevrange(INDEX, 0, limit - 1)]
        fields = ("id", "handler", "count", "error", "attempts", "failed_at", "source")
        pipe = self.redis.pipeline(transaction=False)
        for letter_id in ids:
            pipe.hmget(PREFIX + letter_id, fields)
        rows = []
        for values in pipe.execute():
            if values[0] is None:
                continue
            row = dict(zip(fields, (text(v) for v in values), strict=True))
            rows.append(row)
        return rows

    def remove(self, letter_id: str) -> bool:
        """Delete one dead letter; False when it did not exist."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(PREFIX + letter_id)
        pipe.zrem(INDEX, letter_id)
        deleted, _ = pipe.execute()
        return bool(deleted)

    def purge(self) -> int:
        """Delete every dead letter; return how many."""
        ids = [text(i) for i in self.redis.zrange(INDEX, 0, -1)]
        for letter_id in ids:
            self.remove(letter_id)
        return len(ids)

    def count(self) -> int:
        """How many dead letters there are."""
        return int(self.redis.zcard(INDEX))
