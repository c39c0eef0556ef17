"""The worker's timeout sweeper on a graceful stop: the pass in hand finishes before the worker goes on."""

from __future__ import annotations

import threading

import pytest

from app.dm.asyncs import AsyncResult
from workers import asyncs


class BlockingTracker:
    """A tracker whose sweep pass blocks until released (a pass in progress when SIGTERM arrives)."""

    def __init__(self) -> None:
        self.in_pass = threading.Event()
        self.release = threading.Event()
        self.finished_passes = 0

    def expire_overdue(self) -> list[AsyncResult]:
        """Block until released; count the finished pass."""
        self.in_pass.set()
        assert self.release.wait(10)
        self.finished_passes += 1
        return []


def test_stopping_the_sweeper_waits_for_its_pass_in_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asyncs, "SWEEP_INTERVAL", 0.01)
    tracker = BlockingTracker()
    stop = threading.Event()
    sweeper = asyncs.start_sweeper(tracker, stop)  # type: ignore[arg-type]
    assert tracker.in_pass.wait(10)
    stopper = threading.Thread(target=asyncs.stop_sweeper, args=(sweeper, stop))
    stopper.start()
    stopper.join(0.2)
    assert stopper.is_alive()  # still joining: the pass has not finished
    assert tracker.finished_passes == 0
    tracker.release.set()
    stopper.join(10)
    assert not stopper.is_alive()
    assert not sweeper.is_alive()
    assert tracker.finished_passes == 1
