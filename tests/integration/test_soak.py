"""A short soak under faults (tests/benchmarks/soak.py): a Redis restart, a worker SIGKILLed mid-batch, a web
restart, a Redis SIGKILL (appendfsync everysec), Redis full for 3 s, idle connections closed, poison bodies,
workers killed at each async hand-off point, and a handler failing 10% of its calls, while the simulator
sends 5,000 notifications and async requests. Nothing acknowledged may be lost (but the writes Redis' own
fsync contract allows it to lose, counted apart) and every async request reaches its handler exactly once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from redis import Redis
from rq.job import Job
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
from rq.serializers import JSONSerializer

from app.batches import BatchQueue, make_queue
from app.redis_server import RedisServer
from tests.benchmarks.common import product_env, start_worker
from tests.benchmarks.soak import Soak, SoakConfig
from tests.fixtures.soak_handlers import HEALTHY_KEY
from tests.support import stop, wait_until
from workers.dispatch import FOLLOW_UP_RETRY_INTERVALS, Dispatcher
from workers.handlers.delivery import Lanes
from workers.handlers.router import Router
from workers.recovery import release_dead_scheduler_lock

pytestmark = pytest.mark.slow


def test_nothing_lost_and_async_exactly_once_under_faults(tmp_path: Path) -> None:
    config = SoakConfig(
        notifications=5_000, duration=12, async_requests=30, kills=1, workers=1, batch_size=500,
        timeout=150, logs=tmp_path, redis_full=3.0, poison=5,
    )  # fmt: skip
    report = Soak(config, echo=lambda line: None).run()
    summary = report.markdown()
    assert report.finished, summary
    assert report.poison_sent >= 2, summary  # at least the bodies whose bad id is a number
    assert report.sent == 5_000 + 3 * report.poison_sent, summary  # the simulator's + the poison's good ones
    assert report.lost == 0, summary
    assert report.failed_jobs == 0, summary
    assert report.rejections >= report.poison_sent, summary  # each one's invalid item, with its reason
    assert report.async_issued > 0, summary
    assert report.async_calls == Counter({1: report.async_issued - report.async_window}), summary
    assert [f.name for f in report.faults] == [
        "redis-restart", "worker-kill-1", "web-restart", "redis-kill", "redis-full", "idle-timeout",
        "poison", "async-kill-batch-after-resolve", "async-kill-async-before-call",
        "async-kill-async-after-call",
    ], summary  # fmt: skip


# --- the fixes the soak led to, each on its own (fast) ----------------------------------------------


def test_redelivery_jobs_are_retried_when_their_worker_dies(redis: Redis) -> None:
    queue = make_queue(redis, "test")
    router = Router()
    handler = router.add(lambda event: None, "notifications", name="h")
    dispatcher = Dispatcher(router, Lanes(), redis, queue)
    job_id = dispatcher.schedule(handler, [{"kind": "notifications"}], 2, "src", "boom")
    job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
    assert job.retries_left == len(FOLLOW_UP_RETRY_INTERVALS)


def test_the_lock_of_a_dead_local_scheduler_is_released(redis: Redis) -> None:
    queue = make_queue(redis, "test")
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = RQScheduler.get_locking_key("test")
    redis.set(lock, "sched-dead")
    redis.hset(
        SCHEDULER_KEY_TEMPLATE % "sched-dead", mapping={"hostname": socket.gethostname(), "pid": dead.pid}
    )
    assert release_dead_scheduler_lock(queue)
    assert redis.get(lock) is None
    redis.set(lock, "sched-alive")
    redis.hset(
        SCHEDULER_KEY_TEMPLATE % "sched-alive", mapping={"hostname": socket.gethostname(), "pid": os.getpid()}
    )
    assert not release_dead_scheduler_lock(queue)
    assert redis.get(lock) == b"sched-alive"


def test_a_worker_resumes_after_redis_went_away_under_a_running_job(tmp_path: Path) -> None:
    server = RedisServer(directory=str(tmp_path / "redis"), appendonly=True).start()
    redis = Redis.from_url(server.url, socket_timeout=5)
    env = product_env(
        server.url, "tests.fixtures.soak_handlers", "soak", SOAK_HANDLER_MS="1500", SOAK_FAIL_RATE="0"
    )
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:
        body = b'{"notifications": [{"ep": "e", "path": "/3303/0/5700", "payload": "MjE=", "uid": "u1"}]}'
        job = BatchQueue(redis, "soak").enqueue(body, "blip")
        wait_until(lambda: redis.llen(HEALTHY_KEY) == 1, what="the handler taking the batch")
        server.stop()  # the job ends while Redis is away: the worker waits it out
        wait_until(lambda: "Redis is unavailable" in log.read_text(), what="the worker noticing the outage")
        server.start()
        wait_until(lambda: redis.hget(f"rq:job:{job}", "status") == b"finished", 30, "the job running again")
        assert worker.poll() is None, log.read_text()
        records = [json.loads(raw) for raw in redis.lrange(HEALTHY_KEY, 0, -1)]
        # u1 from this job: once when its end waited Redis out (twice if it ran again), never more
        assert [r["uids"] for r in records] in ([["u1"]], [["u1"], ["u1"]]), records
        assert {r["job"] for r in records} == {job}, records
    finally:
        stop(worker)
        redis.close()
        server.stop()
