"""One jittered exponential backoff for every retry loop (DM client, registration, channels, delivery)."""

from __future__ import annotations

import random

MAX_DOUBLINGS = 32  # 2**32 times any base is past every cap; keeps the float finite for huge attempts


def jittered(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before retry ``attempt`` (0 = first): base * 2**attempt, capped, then half to all of it.

    Half-to-full jitter keeps a floor (no hammering after an outage) while spreading the retries of many
    clients that failed at the same instant.
    """
    ceiling = min(cap, base * 2 ** min(max(attempt, 0), MAX_DOUBLINGS))
    return (rng or random).uniform(ceiling / 2, ceiling)
