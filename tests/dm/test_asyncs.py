"""AsyncTracker on a real Redis: settled exactly once, the delivery job queued in the same step (also for
timeouts, early responses and a full Redis), early arrivals, duplicates, waiting, the handler-call claim."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis
from redis.exceptions import OutOfMemoryError
from rq.job import Job
from rq.serializers import JSONSerializer

from app.dm.asyncs import (
    CALL_DONE,
    DELIVER_FUNC,
    FAILED,
    PENDING,
    RESOLVED,
    TIMEOUT,
    UNKNOWN,
    AsyncTracker,
    Response,
    delivery_job_id,
    sweep_forever,
)
from tests.dm.helpers import responses
from tests.support import wait_until

QUEUE = "test"
PAYLOAD = base64.b64encode(b"21.5").decode()


def item(async_id: str, **fields: Any) -> dict[str, Any]:
    """An async-responses item as Device Management sends it."""
    return {"id": async_id, "status": 200, "payload": PAYLOAD, "ct": "text/plain", **fields}


def response(async_id: str, **fields: Any) -> Response:
    """One item parsed as the worker parses it."""
    (parsed,) = responses({"async-responses": [item(async_id, **fields)]})
    return parsed


def queued(redis: Redis) -> list[str]:
    """Job ids on the test queue."""
    return [raw.decode() for raw in redis.lrange(f"rq:queue:{QUEUE}", 0, -1)]


@pytest.fixture
def tracker(redis: Redis) -> AsyncTracker:
    return AsyncTracker(redis, result_ttl=60, default_timeout=30, queue_name=QUEUE)


@pytest.fixture
def full_redis(redis: Redis) -> Iterator[Redis]:
    """The test Redis with no room left (``maxmemory`` 1 byte, ``noeviction``) until the test ends."""
    policy = redis.config_get("maxmemory-policy")["maxmemory-policy"]
    redis.config_set("maxmemory-policy", "noeviction")
    try:
        yield redis
    finally:
        redis.config_set("maxmemory", 0)
        redis.config_set("maxmemory-policy", policy)


def test_resolve_stores_the_response_as_received_and_returns_it_once(
    redis: Redis, tracker: AsyncTracker
) -> None:
    async_id = tracker.create("ep1", "GET", "/3303/0/5700")
    result = tracker.resolve(response(async_id, **{"max-age": "60", "error": None}))
    assert result is not None
    assert (result.state, result.status, result.payload_b64, result.ct, result.error) == (
        RESOLVED, 200, PAYLOAD, "text/plain", None,
    )  # fmt: skip
    assert (result.ep, result.path, result.method, result.handler, result.max_age) == (
        "ep1", "/3303/0/5700", "GET", None, 60,
    )  # fmt: skip
    assert result.ok
    assert result.resolved_at
    assert tracker.resolve(response(async_id)) is None  # a duplicate delivery
    assert tracker.get(async_id) == result
    assert queued(redis) == []  # no handler named: no delivery job


def test_settling_a_named_request_queues_its_one_delivery_job_in_the_same_step(
    redis: Redis, tracker: AsyncTracker
) -> None:
    async_id = tracker.create("ep1", "GET", "/3303/0/5700", handler="pkg.mod:on_temp")
    assert tracker.resolve(response(async_id)) is not None
    assert tracker.resolve(response(async_id)) is None
    assert queued(redis) == [delivery_job_id(async_id)]
    job = Job.fetch(delivery_job_id(async_id), connection=redis, serializer=JSONSerializer)
    assert (job.func_name, job.args, job.get_status()) == (DELIVER_FUNC, [async_id], "queued")
    assert job.retries_left == 3  # a delivery job killed with its worker runs again
    assert redis.sismember("rq:queues", f"rq:queue:{QUEUE}")


def test_concurrent_duplicates_resolve_exactly_once(redis_url: str, tracker: AsyncTracker) -> None:
    async_id = tracker.create("ep1", "GET", "/3/0/0", handler="h")
    wins: list[object] = []
    start = threading.Barrier(8)

    def deliver() -> None:
        with Redis.from_url(redis_url) as own_redis:
            own = AsyncTracker(own_redis, queue_name=QUEUE)
            start.wait()
            if own.resolve(response(async_id)) is not None:
                wins.append(1)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(wins) == 1
    assert queued(tracker.redis) == [delivery_job_id(async_id)]


def test_an_early_response_settles_its_request_when_tracked_and_queues_one_delivery(
    redis: Redis, tracker: AsyncTracker
) -> None:
    assert tracker.resolve(response("legacy-1234")) is None  # no record yet: kept
    assert tracker.resolve(response("legacy-1234", payload=None)) is None  # a duplicate: the first stays
    assert queued(redis) == []
    assert tracker.track("legacy-1234", "ep1", "GET", "/3303/0/5700", handler="h") == "legacy-1234"
    result = tracker.get("legacy-1234")
    assert (result.state, result.payload_b64, result.handler, result.path) == (
        RESOLVED, PAYLOAD, "h", "/3303/0/5700",
    )  # fmt: skip
    assert queued(redis) == [delivery_job_id("legacy-1234")]  # an explicit job, not a forged batch
    assert not redis.exists("devicehooks:async:early:legacy-1234")
    assert tracker.resolve(response("legacy-1234")) is None
    assert redis.zscore(tracker.deadlines_key, "legacy-1234") is None


def test_an_early_response_for_a_request_without_handler_queues_nothing(
    redis: Redis, tracker: AsyncTracker
) -> None:
    tracker.resolve(response("legacy-5678"))
    tracker.track("legacy-5678", "ep1", "GET", "/3/0/0")
    assert tracker.get("legacy-5678").state == RESOLVED
    assert queued(redis) == []


def test_a_timeout_settles_and_queues_the_delivery_in_one_step_and_a_late_answer_is_ignored(
    redis: Redis, tracker: AsyncTracker
) -> None:
    late = tracker.create("ep1", "GET", "/3/0/0", timeout=0, handler="h")
    fresh = tracker.create("ep1", "GET", "/3/0/1", timeout=300)
    (result,) = tracker.expire_overdue()
    assert (result.id, result.state, result.timed_out, result.status, result.error, result.handler) == (
        late, TIMEOUT, True, 504, "TIMEOUT", "h",
    )  # fmt: skip
    assert queued(redis) == [delivery_job_id(late)]
    assert tracker.expire_overdue() == []
    assert tracker.resolve(response(late)) is None
    assert tracker.get(late).state == TIMEOUT
    assert tracker.get(fresh).state == PENDING
    assert queued(redis) == [delivery_job_id(late)]


def test_a_full_redis_leaves_nothing_half_done_and_the_retry_completes(
    full_redis: Redis, tracker: AsyncTracker
) -> None:
    answered = tracker.create("ep1", "GET", "/3/0/0", handler="h")
    overdue = tracker.create("ep1", "GET", "/3/0/1", timeout=0, handler="h")
    tracker.resolve(response("legacy-full"))
    full_redis.config_set("maxmemory", 1)
    with pytest.raises(OutOfMemoryError):
        tracker.resolve(response(answered))
    with pytest.raises(OutOfMemoryError):
        tracker.expire_overdue()
    with pytest.raises(OutOfMemoryError):
        tracker.track("legacy-full", "ep1", "GET", "/3/0/2", handler="h")
    assert tracker.get(answered).state == PENDING
    assert tracker.get(overdue).state == PENDING
    assert full_redis.zscore(tracker.deadlines_key, overdue) is not None  # still owed to a sweep
    assert full_redis.exists("devicehooks:async:early:legacy-full")
    assert queued(full_redis) == []
    full_redis.config_set("maxmemory", 0)  # room again: the retried steps complete
    assert tracker.resolve(response(answered)) is not None
    assert [r.id for r in tracker.expire_overdue()] == [overdue]
    tracker.track("legacy-full", "ep1", "GET", "/3/0/2", handler="h")
    expected = {delivery_job_id(i) for i in (answered, overdue, "legacy-full")}
    assert set(queued(full_redis)) == expected


def test_wait_returns_when_another_client_resolves(redis_url: str, tracker: AsyncTracker) -> None:
    async_id = tracker.create("ep1", "GET", "/3303/0/5700")
    other_redis = Redis.from_url(redis_url)
    other = AsyncTracker(other_redis, queue_name=QUEUE)
    waiters = [threading.Thread(target=lambda: got.append(tracker.wait(async_id, 10))) for _ in range(3)]
    got: list[Any] = []
    for waiter in waiters:
        waiter.start()
    other.resolve(response(async_id))
    for waiter in waiters:
        waiter.join(10)
    other_redis.close()
    assert [result.payload_b64 for result in got] == [PAYLOAD] * 3


def test_sweep_forever_times_out_overdue_records_and_queues_their_deliveries(
    redis: Redis, tracker: AsyncTracker
) -> None:
    async_id = tracker.create("ep1", "GET", "/3/0/0", timeout=0, handler="h")
    stop = threading.Event()
    sweeper = threading.Thread(target=sweep_forever, args=(tracker, stop, 0.01))
    sweeper.start()
    try:
        wait_until(lambda: tracker.get(async_id).state == TIMEOUT, what="the sweep")
    finally:
        stop.set()
        sweeper.join(5)
    assert not sweeper.is_alive()
    assert queued(redis) == [delivery_job_id(async_id)]


def test_wait_gives_up_and_reports_pending_or_unknown(tracker: AsyncTracker) -> None:
    async_id = tracker.create("ep1", "GET", "/3/0/0")
    result = tracker.wait(async_id, 0.05)
    assert (result.state, result.timed_out, result.status) == (PENDING, True, None)
    assert tracker.wait("never-created", 5).state == UNKNOWN


def test_failed_request_marks_the_record_failed_and_tells_its_handler(
    redis: Redis, tracker: AsyncTracker
) -> None:
    async_id = tracker.create("ep1", "GET", "/3/0/0", handler="h")
    assert tracker.fail(async_id, 404, "not_found: DEVICE_NOT_FOUND") is not None
    result = tracker.wait(async_id, 1)
    assert (result.state, result.status, result.ok) == (FAILED, 404, False)
    assert queued(redis) == [delivery_job_id(async_id)]


def test_ids_are_validated_and_never_reused(tracker: AsyncTracker) -> None:
    with pytest.raises(ValueError, match="invalid async id"):
        tracker.create("ep1", "GET", "/3/0/0", async_id="no spaces allowed")
    async_id = tracker.create("ep1", "GET", "/3/0/0", async_id="my-id-1")
    with pytest.raises(ValueError, match="in use"):
        tracker.create("ep1", "GET", "/3/0/0", async_id=async_id)


def test_the_handler_call_is_claimed_once_released_only_by_its_claimant(tracker: AsyncTracker) -> None:
    async_id = tracker.create("ep1", "GET", "/3/0/0", handler="h")
    assert tracker.claim_call(async_id, "run-1") is None
    assert tracker.claim_call(async_id, "run-2") == "run-1"  # an earlier run holds it
    tracker.release_call(async_id, "run-2")  # not run-2's claim: kept
    assert tracker.claim_call(async_id, "run-3") == "run-1"
    tracker.release_call(async_id, "run-1")  # the call failed before it was made: free again
    assert tracker.claim_call(async_id, "run-4") is None
    tracker.finish_call(async_id)
    assert tracker.claim_call(async_id, "run-5") == CALL_DONE


def test_results_are_json_safe(tracker: AsyncTracker) -> None:
    async_id = tracker.create("ep1", "GET", "/3/0/0")
    result = tracker.resolve(response(async_id, payload="AAEC", ct="application/vnd.oma.lwm2m+tlv"))
    assert result is not None
    assert json.loads(json.dumps(result.to_dict()))["payload_b64"] == "AAEC"
