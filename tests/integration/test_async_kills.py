"""Real worker processes SIGKILLed at the async hand-off points (``DEVICEHOOKS_TEST_KILL_AT``, or a handler
that kills its own worker inside the call): the next worker settles what is owed, and a named handler
is called at most once per settled request, exactly once unless the kill landed inside its call."""

from __future__ import annotations

import base64
import json
import signal
from pathlib import Path

import pytest
from redis import Redis

from app.batches import BatchQueue
from app.dm.asyncs import AsyncTracker, delivery_job_id
from tests.fixtures import async_handlers
from tests.integration.workers import running_worker, start_worker, worker_env
from tests.support import stop, wait_until
from workers.asyncs import INTERRUPTED
from workers.deadletters import DeadLetters

pytestmark = pytest.mark.slow
HANDLERS = "tests.fixtures.async_handlers"


def calls(redis: Redis, handler: str) -> list[dict[str, object]]:
    """What a fixture handler recorded."""
    return [json.loads(raw) for raw in redis.lrange(async_handlers.PREFIX + handler, 0, -1)]


def finished(redis: Redis, job_id: str) -> bool:
    """True once an RQ job finished."""
    return redis.hget(f"rq:job:{job_id}", "status") == b"finished"


def kill_then_recover(redis: Redis, redis_url: str, tmp_path: Path, handler: str, point: str) -> str:
    """Queue a batch answering a request that names ``handler``; a worker dies at ``point`` (SIGKILL);
    a second worker runs until the delivery job finished. Returns the async id."""
    async_id = AsyncTracker(redis, queue_name="test").create("ep1", "GET", "/3303/0/5700", handler=handler)
    payload = base64.b64encode(b"21.5").decode()
    body = {
        "notifications": [{"ep": "ep1", "path": "/3303/0/5700", "payload": payload, "uid": "n1"}],
        "async-responses": [{"id": async_id, "status": 200, "payload": payload, "ct": "text/plain"}],
    }
    batch = BatchQueue(redis, "test").enqueue(json.dumps(body).encode(), "kill-test")
    env = worker_env(redis_url, HANDLERS)
    doomed = start_worker({**env, "DEVICEHOOKS_TEST_KILL_AT": point} if point else env, tmp_path / "a.log")
    try:
        wait_until(lambda: doomed.poll() is not None, 30, f"the worker to die at {point or 'the handler'}")
    finally:
        stop(doomed)
    assert doomed.returncode == -signal.SIGKILL, (tmp_path / "a.log").read_text()
    with running_worker(env, tmp_path / "b.log"):
        wait_until(lambda: finished(redis, delivery_job_id(async_id)), 40, "the delivery job to finish")
        wait_until(lambda: finished(redis, batch), 40, "the batch job to finish")
    return async_id


def test_killed_after_settling_the_batch_still_hands_the_result_over_once(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    async_id = kill_then_recover(redis, redis_url, tmp_path, "named", "batch-after-resolve")
    assert [c["id"] for c in calls(redis, "named")] == [async_id]
    assert "n1" in [c["uid"] for c in calls(redis, "seen")]  # the batch ran again: at least once
    assert DeadLetters(redis).count() == 0


def test_killed_before_the_handler_call_calls_it_once_on_the_rerun(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    async_id = kill_then_recover(redis, redis_url, tmp_path, "named", "async-before-call")
    assert [c["id"] for c in calls(redis, "named")] == [async_id]
    assert DeadLetters(redis).count() == 0


def test_killed_after_the_handler_call_returned_does_not_call_it_again(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    async_id = kill_then_recover(redis, redis_url, tmp_path, "named", "async-after-call")
    named = calls(redis, "named")
    assert [c["id"] for c in named] == [async_id]
    (row,) = DeadLetters(redis).list()  # visible: the run could not record that the call returned
    assert (row["handler"], row["error"]) == ("named", INTERRUPTED)


def test_killed_inside_the_handler_call_is_not_called_again_and_is_dead_lettered(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    redis.set(async_handlers.DIE_KEY, 1)
    async_id = kill_then_recover(redis, redis_url, tmp_path, "dies-in-call", "")
    assert [c["id"] for c in calls(redis, "dies-in-call")] == [async_id]  # the one (interrupted) call
    (row,) = DeadLetters(redis).list()
    assert (row["handler"], row["error"]) == ("dies-in-call", INTERRUPTED)
