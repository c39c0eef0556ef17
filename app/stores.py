"""The stores devicehooks keeps in Redis: their keys, their bounds, and a pure reader of their sizes.

Every store is bounded by count, by bytes and by time (README, "Delivery guarantees"): rejection records
and quarantined bodies keep at most a configured number of bytes per item (the rest as a truncated copy
plus the sha256 and size of the whole), dead letters a configured total of bytes, and all of them expire.
The reader is shared by ``devicehooks status`` and the web's ``/readyz?details=1``: it lives here, in the
shared core, because the web never imports ``workers``.
"""

from __future__ import annotations

import hashlib
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
