"""The worker's outer loop: an RQ loop that keeps ending at once pauses longer each time, never gives up."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from redis import Redis

from app.batches import make_queue
from app.config import Settings
from workers import runtime
from workers import worker as worker_module
from workers.decoding import default_object_model
from workers.handlers import Router


def test_loops_that_keep_ending_at_once_are_paused_longer_and_longer(
    monkeypatch: pytest.MonkeyPatch, redis: Redis, settings: Settings
) -> None:
    pauses: list[float] = []

    def recover(rt: Any, stop: Any, outage: Any, gone: set[str], pause: float = 0.0) -> bool:
        pauses.append(pause)
        return len(pauses) < 12  # a stop request after eleven loops

    rt = runtime.Runtime(settings, redis, default_object_model(), Router(), make_queue(redis, "test"))
    monkeypatch.setattr(runtime, "build", lambda: rt)
    monkeypatch.setattr(worker_module, "_recover", recover)
    monkeypatch.setattr(worker_module, "_work_once", lambda worker, rt, burst: False)
    assert worker_module.run() is False
    assert pauses[0] == 0.0  # the startup recovery
    assert 0.125 <= pauses[1] <= 0.25
    assert all(later >= earlier / 2 for earlier, later in itertools.pairwise(pauses[1:]))
    assert 15.0 <= pauses[-1] <= worker_module.RESTART_PAUSE_MAX
    assert len(pauses) == 12  # no restart limit: it went on until asked to stop
