"""``devicehooks status``: Redis memory headroom and the size of every store, as text or JSON."""

from __future__ import annotations

from typing import Any

from redis import Redis

from app.stores import redis_memory, store_sizes

NOEVICTION = "noeviction"


def gather(redis: Redis, queue_name: str) -> dict[str, Any]:
    """Memory and store sizes, read from Redis."""
    return {"queue": queue_name, "redis": redis_memory(redis), "stores": store_sizes(redis, queue_name)}


def _mib(value: int | None) -> str:
    """Bytes as MiB with one decimal."""
    return "unlimited" if value is None else f"{value / 1048576:.1f} MiB"


def render(status: dict[str, Any]) -> list[str]:
    """The status as lines of text, with a warning when Redis may evict queued work."""
    memory = status["redis"]
    limit = memory["maxmemory_bytes"] or None
    lines = [
        f"redis memory: used {_mib(memory['used_bytes'])} of {_mib(limit)} "
        f"(headroom {_mib(memory['headroom_bytes'])}), policy {memory['policy']}",
    ]
    if memory["policy"] != NOEVICTION:
        policy = memory["policy"]
        lines.append(f"warning: maxmemory-policy is {policy}; noeviction keeps queued batches from eviction")
    lines.append(f"queue {status['queue']}:")
    lines += [f"  {name:<14} {count}" for name, count in status["stores"].items()]
    return lines
