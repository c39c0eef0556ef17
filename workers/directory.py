"""The endpoint-type directory: ep -> ept, learnt from registrations, used by ``ept`` filters."""

from __future__ import annotations

from redis import Redis

from app.redis_conn import text
from workers.events import Event

KEY = "devicehooks:ept"


def _storable(value: str) -> bool:
    """True when Redis can store value as text (a lone surrogate, valid in JSON, is not UTF-8)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def learn_and_fill(redis: Redis, events: list[Event]) -> None:
    """Remember the ept of registrations; fill it into events lacking it (skipping eps Redis cannot store)."""
    learnt = {
        e.ep: e.ept
        for e in events
        if e.ep and e.ept and e.kind in ("registrations", "reg-updates") and _storable(e.ep + e.ept)
    }
    if learnt:
        redis.hset(KEY, mapping=dict(learnt))  # type: ignore[arg-type]
    missing = sorted(
        {e.ep for e in events if e.ept is None and e.ep and e.ep not in learnt and _storable(e.ep)}
    )
    known: dict[str, str] = dict(learnt)
    if missing:
        for ep, ept in zip(missing, redis.hmget(KEY, missing), strict=True):
            if ept is not None:
                known[ep] = text(ept)
    for event in events:
        if event.ept is None and event.ep in known:
            event.ept = known[event.ep]
