"""Lanes: concurrent handlers, isolation from failures and hangs, timeouts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from workers.handlers import Router
from workers.handlers.delivery import Lanes
from workers.testing import make_event

EVENTS = [make_event(ep=f"d{i}", path="/3303/0/5700", payload=str(i)) for i in range(5)]


@pytest.fixture
def lanes() -> Iterator[Lanes]:
    lanes = Lanes()
    yield lanes
    lanes.shutdown()


def test_healthy_handler_gets_everything_beside_a_failing_one(lanes: Lanes) -> None:
    got: list[str | None] = []
    router = Router()
    router.add(lambda e: got.append(e.ep), name="healthy")

    def flaky(event: object) -> None:
        if getattr(event, "ep", "") in ("d1", "d3"):
            raise ValueError("bad device")

    router.add(flaky, name="flaky")
    failures = lanes.deliver(router.matching(EVENTS))
    assert got == ["d0", "d1", "d2", "d3", "d4"]
    (failure,) = failures
    assert failure.handler.name == "flaky"
    assert [e.ep for e in failure.events] == ["d1", "d3"]
    assert failure.error == "ValueError: bad device"
    assert "Traceback" in failure.traceback


def test_hanging_handler_times_out_without_delaying_the_others(lanes: Lanes) -> None:
    release = threading.Event()
    got: list[str | None] = []
    router = Router()
    router.add(lambda e: release.wait(10), name="hangs", batch=True, timeout=0.3)
    router.add(lambda e: got.append(e.ep), name="healthy")
    started = time.monotonic()
    failures = lanes.deliver(router.matching(EVENTS))
    assert time.monotonic() - started < 5
    assert got == [e.ep for e in EVENTS]
    (failure,) = failures
    assert failure.error.startswith("timed out after 0.3 s")
    assert len(failure.events) == 5
    # While the hung call runs, the handler's lane refuses new work at once instead of waiting.
    again = lanes.deliver(router.matching(EVENTS[:1]))
    assert [f.error for f in again] == ["handler busy: an earlier call is still running past its timeout"]
    release.set()


def test_timeout_retries_only_events_not_yet_confirmed(lanes: Lanes) -> None:
    release = threading.Event()

    def slow_on_d2(event: object) -> None:
        if getattr(event, "ep", "") == "d2":
            release.wait(10)

    router = Router()
    router.add(slow_on_d2, name="slow", timeout=0.3)
    (failure,) = lanes.deliver(router.matching(EVENTS))
    assert [e.ep for e in failure.events] == ["d2", "d3", "d4"]
    release.set()


def test_batch_handler_failure_fails_its_whole_list(lanes: Lanes) -> None:
    router = Router()

    def bulk(events: list[object]) -> None:
        raise OSError("db down")

    router.add(bulk, name="bulk", batch=True)
    (failure,) = lanes.deliver(router.matching(EVENTS))
    assert len(failure.events) == 5
    assert failure.error == "OSError: db down"
