"""The stores devicehooks keeps in Redis: their keys, their bounds, and pure readers over them.

Every store is bounded by count, by bytes and by time (README, "Delivery guarantees"): rejection records
and quarantined bodies keep at most a configured number of bytes per item (the rest as a truncated copy
plus the sha256 and size of the whole), dead letters a configured total of bytes, and all of them expire.
The web never imports ``workers``, so the key names live here (``workers.deadletters`` and
``workers.rejections`` import them), and so do the readers that ``devicehooks status``,
``/readyz?details=1`` and the management API share (they only read, except :func:`delete_dead_letter`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq import Queue
from rq.registry import DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from app.config import Settings
from app.redis_conn import text

REJECTIONS = "devicehooks:rejections"
QUARANTINE_PREFIX = "devicehooks:quarantine:"
QUARANTINE_INDEX = "devicehooks:quarantine-index"
DEAD_INDEX = "devicehooks:dead"
DEAD_PREFIX = "devicehooks:dead:"
DEAD_SIZES = "devicehooks:dead-sizes"
REPLAY_FUNC = "workers.jobs.replay_dead_letter"
DAY = 24 * 3600


@dataclass(frozen=True)
class StoreLimits:
    """The bounds of every store, from the settings."""

    ttl: int = 14 * DAY
    rejections_keep: int = 10_000
    rejection_item_bytes: int = 2 * 1024
    quarantine_keep: int = 100
    quarantine_body_bytes: int = 256 * 1024
    dead_letters_keep: int = 10_000
    dead_letters_max_bytes: int = 64 * 1024 * 1024
    failed_batches_keep: int = 1_000
    failed_batches_max_bytes: int = 64 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> StoreLimits:
        """The limits configured in the environment."""
        return cls(
            ttl=settings.store_ttl_days * DAY,
            rejections_keep=settings.rejections_keep,
            rejection_item_bytes=settings.rejection_item_bytes,
            quarantine_keep=settings.quarantine_keep,
            quarantine_body_bytes=settings.quarantine_body_bytes,
            dead_letters_keep=settings.dead_letters_keep,
            dead_letters_max_bytes=settings.dead_letters_max_bytes,
            failed_batches_keep=settings.failed_batches_keep,
            failed_batches_max_bytes=settings.failed_batches_max_bytes,
        )

    @property
    def dead_letter_bytes(self) -> int:
        """A dead letter whose events exceed a quarter of the budget keeps a truncated copy instead."""
        return self.dead_letters_max_bytes // 4


def digest(data: bytes) -> str:
    """The sha256 of data, in hex."""
    return hashlib.sha256(data).hexdigest()


def clip(data: bytes, limit: int) -> dict[str, Any] | None:
    """None when data fits ``limit``; else what stands for it: its size, sha256 and first bytes as text."""
    if len(data) <= limit:
        return None
    return {
        "truncated": data[:limit].decode("utf-8", errors="replace"),
        "bytes": len(data),
        "sha256": digest(data),
    }


def redis_memory(redis: Redis) -> dict[str, Any]:
    """Used memory, maxmemory (0 = none), the eviction policy and the headroom left, from INFO memory."""
    info = redis.info("memory")
    used = int(info.get("used_memory", 0))
    limit = int(info.get("maxmemory", 0))
    return {
        "used_bytes": used,
        "maxmemory_bytes": limit,
        "policy": text(info.get("maxmemory_policy", "")),
        "headroom_bytes": (limit - used) if limit else None,
    }


def store_sizes(redis: Redis, queue_name: str) -> dict[str, int]:
    """Items in each store: the batch queue, its RQ registries, and devicehooks' own stores."""
    queue = Queue(queue_name, connection=redis)
    pipe = redis.pipeline(transaction=False)
    pipe.llen(queue.key)
    pipe.llen(queue.intermediate_queue_key)
    for registry in (StartedJobRegistry, FailedJobRegistry, ScheduledJobRegistry, DeferredJobRegistry):
        pipe.zcard(registry.key_template.format(queue_name))
    pipe.zcard(DEAD_INDEX)
    pipe.llen(REJECTIONS)
    pipe.zcard(QUARANTINE_INDEX)
    names = [
        "queued",
        "intermediate",
        "started",
        "failed",
        "scheduled",
        "deferred",
        "dead_letters",
        "rejections",
        "quarantine",
    ]
    return dict(zip(names, (int(v) for v in pipe.execute()), strict=True))


_DEAD_SUMMARY = ("id", "handler", "count", "error", "attempts", "failed_at", "source")


def _dead_row(fields: tuple[str, ...], values: list[Any]) -> dict[str, Any]:
    """One dead letter's fields with their types."""
    row: dict[str, Any] = {name: text(value) for name, value in zip(fields, values, strict=True)}
    for name in ("count", "attempts"):
        if name in row:
            row[name] = int(row[name])
    if "failed_at" in row:
        row["failed_at"] = float(row["failed_at"])
    return row


def dead_letter_ids(redis: Redis) -> list[str]:
    """Every dead letter id, sorted."""
    return sorted(text(i) for i in redis.zrange(DEAD_INDEX, 0, -1))


def newest_dead_letter_ids(redis: Redis, count: int) -> list[str]:
    """The ids of the count dead letters that failed last, newest first (the index is scored by time)."""
    return [text(i) for i in redis.zrevrange(DEAD_INDEX, 0, count - 1)]


def dead_letter_summaries(redis: Redis, ids: list[str]) -> list[dict[str, Any]]:
    """The summaries (no events, no traceback) of these dead letters; missing ones are left out."""
    pipe = redis.pipeline(transaction=False)
    for letter_id in ids:
        pipe.hmget(DEAD_PREFIX + letter_id, _DEAD_SUMMARY)
    return [_dead_row(_DEAD_SUMMARY, values) for values in pipe.execute() if values[0] is not None]


def dead_letter_exists(redis: Redis, letter_id: str) -> bool:
    """True when the dead letter is kept (without reading its events, which can be megabytes)."""
    return bool(redis.exists(DEAD_PREFIX + letter_id))


def dead_letter(redis: Redis, letter_id: str) -> dict[str, Any] | None:
    """One dead letter with its events and traceback, or None."""
    raw = redis.hgetall(DEAD_PREFIX + letter_id)
    if not raw:
        return None
    fields = tuple(text(k) for k in raw)
    letter = _dead_row(fields, list(raw.values()))
    letter["events"] = json.loads(letter["events"])
    return letter


def delete_dead_letter(redis: Redis, letter_id: str) -> bool:
    """Delete one dead letter; False when it did not exist."""
    pipe = redis.pipeline(transaction=True)
    pipe.delete(DEAD_PREFIX + letter_id)
    pipe.zrem(DEAD_INDEX, letter_id)
    pipe.hdel(DEAD_SIZES, letter_id)
    deleted, _, _ = pipe.execute()
    return bool(deleted)


def rejection_id(record: dict[str, Any], raw: bytes) -> str:
    """A rejection's id: its time in microseconds (so ids sort by time) and a digest of the record."""
    at = int(float(record.get("at") or 0) * 1_000_000)
    return f"r{at:017d}{hashlib.blake2b(raw, digest_size=4).hexdigest()}"


def rejections(redis: Redis, newest: int | None = None) -> list[dict[str, Any]]:
    """The kept rejection records (all, or the ``newest`` n) with their ids, sorted by id (oldest first).

    The list is pushed on the left, so the newest n are its first n entries.
    """
    out = []
    for raw in redis.lrange(REJECTIONS, 0, -1 if newest is None else newest - 1):
        data = raw if isinstance(raw, bytes) else str(raw).encode()
        record = json.loads(data)
        record["id"] = rejection_id(record, data)
        out.append(record)
    out.sort(key=lambda r: r["id"])
    return out
