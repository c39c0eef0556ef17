"""Rejected items and unusable bodies, kept in Redis for inspection (``devicehooks rejections``).

Bounded (``app.stores.StoreLimits``): at most ``rejections_keep`` records, each item at most
``rejection_item_bytes`` of JSON (a larger one keeps its first bytes, its size and its sha256), the list
expiring ``ttl`` after the last rejection; at most ``quarantine_keep`` bodies of at most
``quarantine_body_bytes`` each (likewise truncated, the digest in the record), each expiring after ``ttl``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis import Redis

from app.redis_conn import raw, text
from app.stores import QUARANTINE_INDEX, QUARANTINE_PREFIX, REJECTIONS, StoreLimits, clip
from workers.batch import Rejection
from workers.storable import dumps_safe

LIST = REJECTIONS
BODY_PREFIX = QUARANTINE_PREFIX


def bounded_record(rejection: Rejection, limit: int) -> dict[str, Any]:
    """A rejection's JSON form with its item replaced by a truncated copy and digest when over ``limit``."""
    record = rejection.to_dict()
    clipped = clip(dumps_safe(record["item"]).encode(), limit)
    if clipped is not None:
        record["item"] = clipped
    return record


class Rejections:
    """A capped list of rejection records, newest first; bodies under their own keys, indexed by time."""

    def __init__(self, redis: Redis, limits: StoreLimits | None = None) -> None:
        self.redis = redis
        self.limits = limits or StoreLimits()

    def record(self, rejections: list[Rejection], job_id: str, request_id: str | None) -> None:
        """Keep the rejected items of one batch."""
        if not rejections:
            return
        now = time.time()
        limit = self.limits.rejection_item_bytes
        entries = [
            dumps_safe({**bounded_record(r, limit), "job": job_id, "request_id": request_id, "at": now})
            for r in rejections[: self.limits.rejections_keep]
        ]
        pipe = self.redis.pipeline(transaction=True)
        pipe.lpush(LIST, *entries)
        pipe.ltrim(LIST, 0, self.limits.rejections_keep - 1)
        pipe.expire(LIST, self.limits.ttl)
        pipe.execute()

    def quarantine(self, body: bytes, reason: str, job_id: str, request_id: str | None) -> None:
        """Keep a body that could not be parsed (truncated past the limit), and a record pointing at it."""
        key = BODY_PREFIX + job_id
        limit = self.limits.quarantine_body_bytes
        clipped = clip(body, limit)
        record: dict[str, Any] = {"kind": None, "index": None, "reason": reason, "item": None}
        record["body_key"] = key
        if clipped is not None:
            record.update(body_bytes=clipped["bytes"], body_sha256=clipped["sha256"], body_truncated_to=limit)
        now = time.time()
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(key, body[:limit], ex=self.limits.ttl)
        pipe.zremrangebyscore(QUARANTINE_INDEX, "-inf", now - self.limits.ttl)  # expired bodies
        pipe.zadd(QUARANTINE_INDEX, {key: now})
        pipe.expire(QUARANTINE_INDEX, self.limits.ttl)
        pipe.lpush(LIST, json.dumps({**record, "job": job_id, "request_id": request_id, "at": now}))
        pipe.ltrim(LIST, 0, self.limits.rejections_keep - 1)
        pipe.expire(LIST, self.limits.ttl)
        pipe.execute()
        self._trim_quarantine()

    def _trim_quarantine(self) -> None:
        """Delete the oldest quarantined bodies beyond the count limit."""
        excess = int(self.redis.zcard(QUARANTINE_INDEX)) - self.limits.quarantine_keep
        if excess <= 0:
            return
        oldest = [text(k) for k in self.redis.zrange(QUARANTINE_INDEX, 0, excess - 1)]
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(*oldest)
        pipe.zrem(QUARANTINE_INDEX, *oldest)
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
        pipe.delete(LIST, QUARANTINE_INDEX)
        if keys:
            pipe.delete(*keys)
        pipe.execute()
        return count
