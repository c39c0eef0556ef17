"""The one jittered-backoff helper every retry loop uses."""

from __future__ import annotations

import random

from app.backoff import jittered


def test_delay_doubles_per_attempt_between_half_and_all_of_the_ceiling() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0)]:
        delays = [jittered(attempt, 1.0, 100.0, rng) for _ in range(200)]
        assert min(delays) >= ceiling / 2
        assert max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not a constant


def test_delay_never_exceeds_the_cap_even_for_huge_attempt_numbers() -> None:
    rng = random.Random(1)
    assert all(15.0 <= jittered(10_000, 0.5, 30.0, rng) <= 30.0 for _ in range(100))


def test_negative_attempt_counts_as_the_first() -> None:
    rng = random.Random(3)
    assert all(0.25 <= jittered(-3, 0.5, 30.0, rng) <= 0.5 for _ in range(50))
