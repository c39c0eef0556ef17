"""Rejected items and unusable bodies, kept in Redis for inspection (``devicehooks rejections``)."""

from __future__ import annotations

import json
import time
from typing import Any

from redis import Redis

from app.redis_conn import raw
from app.stores import QUARANTINE_PREFIX as BODY_PREFIX
from app.stores import REJECTIONS_LIST as LIST
from workers.batch import Rejection

KEEP = 10_000
BODY_TTL = 14 * 24 * 3600


class Rejections:
    """A capped list of rejection records, newest first; whole bodies under their own keys."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def record(self, rejections: list[Rejection], job_id: str, request_id: str | None) -> None:
        """Keep the rejected items of one batch."""
        if not rejections:
            return
        now = time.time()
        entries = [
            json.dumps({**r.to_dict(), "job": job_id, "request_id": request_id, "at": now}, default=str)
            for r in rejections
        ]
        pipe = self.redis.pipeline(transaction=True)
        pipe.lpush(LIST, *entries)
        pipe.ltrim(LIST, 0, KEEP - 1)
        pipe.execute()

    def quarantine(self, body: bytes, reason: str, job_id: str, request_id: str | None) -> None:
        """Keep a whole body that could not be parsed, and a record pointing at it."""
        key = BODY_PREFIX + job_id
        record = {"kind": None, "index": None, "reason": reason, "item": None, "body_key": key}
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(key, body, ex=BODY_TTL)
        pipe.lpush(LIST, json.dumps({**record, "job": job_id, "request_id": request_id, "at": time.time()}))
        pipe.ltrim(LIST, 0, KEEP - 1)
        pipe.execute()

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest records."""
        return [json.loads(raw) for raw in self.redis.lrange(LIST, 0, limit - 1)]

    def body(self, key: str) -> bytes | None:
        """A quarantined body."""
        value = self.redis.get(key)
        return raw(value) if value is not None else None

    def purge(self) -> int:
        """Delete every record and quarantined body; return how many records there were."""
        count = int(self.redis.llen(LIST))
        keys = list(self.redis.scan_iter(BODY_PREFIX + "*"))
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(LIST)
        if keys:
            pipe.delete(*keys)
        pipe.execute()
        return count
