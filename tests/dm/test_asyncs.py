"""AsyncTracker on a real Redis: exactly-once resolution, early arrivals, duplicates, timeouts, waiting."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import pytest
from redis import Redis

from app.dm.asyncs import (
    FAILED,
    PENDING,
    RESOLVED,
    TIMEOUT,
    UNKNOWN,
    AsyncResult,
    AsyncTracker,
    sweep_forever,
)
from tests.dm.helpers import take_batch
from tests.support import wait_until

QUEUE = "test"


def item(async_id: str, **fields: Any) -> dict[str, Any]:
    """An async-responses item."""
    return {
        "id": async_id,
        "status": 200,
        "payload": base64.b64encode(b"21.5").decode(),
        "ct": "text/plain",
        **fields,
    }


@pytest.fixture
def tracker(redis: Redis) -> AsyncTracker:
    return AsyncTracker(redis, result_ttl=60, default_timeout=30, queue_name=QUEUE)


def test_resolve_stores_decodes_and_returns_the_result_once(tracker: AsyncTracker) -> None:
    async_id = tracker.create("ep1", "GET", "/3303/0/5700", handler="pkg.mod:on_temp")
    result = tracker.resolve(item(async_id, **{"max-age": "60", "error": None}))
    assert result is not None
    assert (result.state, result.status, result.value, result.error) == (RESOLVED, 200, 21.5, None)
    assert (result.ep, result.path, result.method, result.handler, result.max_age) == (
        "ep1",
        "/3303/0/5700",
        "GET",
        "pkg.mod:on_temp",
        60,
    )
    assert result.ok
    assert not result.timed_out
    assert result.resolved_at
    assert tracker.resolve(item(async_id)) is None  # a duplicate delivery
    assert tracker.get(async_id).value == 21.5


def test_status_as_string_and_null_error_are_not_errors(tracker: AsyncTracker) -> None:
    async_id = tracker.create("ep1", "PUT", "3311/0/5850")
    result = tracker.resolve({"id": async_id, "status": "204", "error": None})
    assert result is not None
    assert result.ok
    assert result.status == 204
    assert result.path == "/3311/0/5850"


def test_device_error_is_kept(tracker: AsyncTracker) -> None:
    async_id = tracker.create("ep1", "GET", "/3/0/99")
    result = tracker.resolve({"id": async_id, "status": 404, "error": "NOT_FOUND"})
    assert result is not None
    assert not result.ok
    assert result.error == "NOT_FOUND"


def test_concurrent_duplicates_resolve_exactly_once(redis_url: str, tracker: AsyncTracker) -> None:
    async_id = tracker.create("ep1", "GET", "/3/0/0")
    wins: list[object] = []
    start = threading.Barrier(8)

    def deliver() -> None:
        with Redis.from_url(redis_url) as own_redis:
            own = AsyncTracker(own_redis, queue_name=QUEUE)
            start.wait()
            if own.resolve(item(async_id)) is not None:
                wins.append(1)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(wins) == 1


def test_early_response_is_kept_and_matched_once_through_the_queue(
    redis: Redis, tracker: AsyncTracker
) -> None:
    early = item("legacy-1234")
    assert tracker.resolve(early) is None  # no record yet: kept
    assert tracker.resolve(item("legacy-1234", payload=None)) is None  # a duplicate: the first one stays
    assert tracker.track("legacy-1234", "ep1", "GET", "/3303/0/5700", handler="h") == "legacy-1234"
    taken = take_batch(redis, QUEUE)
    assert taken is not None
    source, body = taken
    assert source == "async-early"
    assert body == {"async-responses": [early]}
    result = tracker.resolve(body["async-responses"][0])
    assert result is not None
    assert result.value == 21.5
    assert result.handler == "h"
    assert tracker.resolve(early) is None
    assert take_batch(redis, QUEUE) is None
    assert not redis.exists("devicehooks:async:early:legacy-1234")


def test_expire_overdue_times_out_and_a_late_answer_is_ignored(tracker: AsyncTracker) -> None:
    late = tracker.create("ep1", "GET", "/3/0/0", timeout=0, handler="h")
    fresh = tracker.create("ep1", "GET", "/3/0/1", timeout=300)
    (result,) = tracker.expire_overdue()
    assert (result.id, result.state, result.timed_out, result.status, result.error) == (
        late,
        TIMEOUT,
        True,
        504,
        "TIMEOUT",
    )
    assert result.handler == "h"
    assert tracker.expire_overdue() == []
    assert tracker.resolve(item(late)) is None
    assert tracker.get(late).state == TIMEOUT
    assert tracker.get(fresh).state == PENDING


def test_wait_returns_when_another_client_resolves(redis_url: str, tracker: AsyncTracker) -> None:
    async_id = tracker.create("ep1", "GET", "/3303/0/5700")
    other_redis = Redis.from_url(redis_url)
    other = AsyncTracker(other_redis, queue_name=QUEUE)
    waiters = [threading.Thread(target=lambda: got.append(tracker.wait(async_id, 10))) for _ in range(3)]
    got: list[Any] = []
    for waiter in waiters:
        waiter.start()
    other.resolve(item(async_id))
    for waiter in waiters:
        waiter.join(10)
    other_redis.close()
    assert [result.value for result in got] == [21.5, 21.5, 21.5]


def test_sweep_forever_times_out_overdue_records(tracker: AsyncTracker) -> None:
    async_id = tracker.create("ep1", "GET", "/3/0/0", timeout=0, handler="h")
    timed_out: list[AsyncResult] = []
    stop = threading.Event()
    sweeper = threading.Thread(target=sweep_forever, args=(tracker, stop, 0.01, timed_out.append))
    sweeper.start()
    try:
        wait_until(lambda: timed_out, what="the sweep")
    finally:
        stop.set()
        sweeper.join(5)
    assert [(r.id, r.state, r.handler) for r in timed_out] == [(async_id, TIMEOUT, "h")]


def test_wait_gives_up_and_reports_pending_or_unknown(tracker: AsyncTracker) -> None:
    async_id = tracker.create("ep1", "GET", "/3/0/0")
    result = tracker.wait(async_id, 0.05)
    assert (result.state, result.timed_out, result.status) == (PENDING, True, None)
    assert tracker.wait("never-created", 5).state == UNKNOWN


def test_failed_request_marks_the_record_failed(tracker: AsyncTracker) -> None:
    async_id = tracker.create("ep1", "GET", "/3/0/0")
    assert tracker.fail(async_id, 404, "not_found: DEVICE_NOT_FOUND") is not None
    result = tracker.wait(async_id, 1)
    assert (result.state, result.status, result.ok) == (FAILED, 404, False)


def test_ids_are_validated_and_never_reused(tracker: AsyncTracker) -> None:
    with pytest.raises(ValueError, match="invalid async id"):
        tracker.create("ep1", "GET", "/3/0/0", async_id="no spaces allowed")
    async_id = tracker.create("ep1", "GET", "/3/0/0", async_id="my-id-1")
    with pytest.raises(ValueError, match="in use"):
        tracker.create("ep1", "GET", "/3/0/0", async_id=async_id)


def test_undecodable_payload_keeps_the_error(tracker: AsyncTracker) -> None:
    async_id = tracker.create("ep1", "GET", "/3/0/0")
    result = tracker.resolve(
        {"id": async_id, "status": 200, "payload": "AAEC", "ct": "application/vnd.oma.lwm2m+tlv"}
    )
    assert result is not None
    assert result.value is None
    assert result.decode_error
    assert json.loads(json.dumps(result.to_dict()))["id"] == async_id
