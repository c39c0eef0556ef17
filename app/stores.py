"""Key names of the stores the workers write and the web process reads, and pure readers over them.

The web process never imports ``workers``: the dead-letter and rejection stores' key names live here,
``workers.deadletters`` and ``workers.rejections`` import them, and the management API reads through
the functions below (they only read, except :func:`delete_dead_letter`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from redis import Redis

from app.redis_conn import text

DEAD_INDEX = "devicehooks:dead"
DEAD_PREFIX = "devicehooks:dead:"
REJECTIONS_LIST = "devicehooks:rejections"
QUARANTINE_PREFIX = "devicehooks:quarantine:"
REPLAY_FUNC = "workers.jobs.replay_dead_letter"

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


def dead_letter_summaries(redis: Redis, ids: list[str]) -> list[dict[str, Any]]:
    """The summaries (no events, no traceback) of these dead letters; missing ones are left out."""
    pipe = redis.pipeline(transaction=False)
    for letter_id in ids:
        pipe.hmget(DEAD_PREFIX + letter_id, _DEAD_SUMMARY)
    return [_dead_row(_DEAD_SUMMARY, values) for values in pipe.execute() if values[0] is not None]


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
    deleted, _ = pipe.execute()
    return bool(deleted)


def rejection_id(record: dict[str, Any], raw: bytes) -> str:
    """A rejection's id: its time in microseconds (so ids sort by time) and a digest of the record."""
    at = int(float(record.get("at") or 0) * 1_000_000)
    return f"r{at:017d}{hashlib.blake2b(raw, digest_size=4).hexdigest()}"


def rejections(redis: Redis) -> list[dict[str, Any]]:
    """Every kept rejection record with its id, sorted by id (oldest first)."""
    out = []
    for raw in redis.lrange(REJECTIONS_LIST, 0, -1):
        data = raw if isinstance(raw, bytes) else str(raw).encode()
        record = json.loads(data)
        record["id"] = rejection_id(record, data)
        out.append(record)
    out.sort(key=lambda r: r["id"])
    return out
