"""Redis weather: waited out with backoff, logged once per outage, other errors propagate."""

from __future__ import annotations

import logging
import threading

import pytest
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError

from app import weather
from app.dm.asyncs import sweep_forever


class Flaky:
    """An action that raises the given errors in turn, then returns 'ok'."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weather, "WAIT_BASE", 0.001)
    monkeypatch.setattr(weather, "WAIT_MAX", 0.002)


def test_full_and_read_only_redis_are_waited_out_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    oom = OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'.")
    action = Flaky(oom, oom, ReadOnlyError("READONLY You can't write against a read only replica."), oom)
    outage = weather.Outage(logging.getLogger("t"), "test")
    with caplog.at_level(logging.WARNING, logger="t"):
        assert weather.retry(action, threading.Event(), outage) == "ok"
    assert action.calls == 5
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "Redis is unavailable" in m]) == 1
    assert len([m for m in messages if "Redis is back" in m and "4 retries" in m]) == 1
    assert outage.since is None


def test_unblocked_reply_of_a_replicaof_counts_as_weather() -> None:
    assert weather.is_weather(
        ResponseError("UNBLOCKED force unblock from blocking operation, instance state changed")
    )
    assert not weather.is_weather(
        ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
    )


def test_an_error_that_is_not_weather_propagates_at_once() -> None:
    action = Flaky(ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"))
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        weather.retry(action, threading.Event(), weather.Outage(logging.getLogger("t"), "test"))
    assert action.calls == 1


def test_weather_past_the_deadline_propagates() -> None:
    action = Flaky(*[OutOfMemoryError("OOM")] * 1000)
    with pytest.raises(OutOfMemoryError):
        weather.retry(action, threading.Event(), weather.Outage(logging.getLogger("t"), "test"), deadline=0.0)
    assert action.calls == 1


def test_a_stop_request_ends_the_wait() -> None:
    stop = threading.Event()
    stop.set()
    assert (
        weather.retry(Flaky(OutOfMemoryError("OOM")), stop, weather.Outage(logging.getLogger("t"), "t"))
        is None
    )


def test_the_async_sweeper_logs_an_outage_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()

    class Tracker:
        calls = 0

        def expire_overdue(self) -> list[object]:
            self.calls += 1
            if self.calls >= 6:
                stop.set()
            if self.calls <= 4:
                raise OutOfMemoryError("OOM command not allowed")
            return []

    with caplog.at_level(logging.WARNING, logger="app.dm.asyncs"):
        sweep_forever(Tracker(), stop, interval=0.001)  # type: ignore[arg-type]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("async sweeper: Redis is unavailable (OutOfMemoryError")
    assert messages[1].startswith("async sweeper: Redis is back after")
    assert "(4 retries)" in messages[1]
