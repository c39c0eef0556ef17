"""Recovery of interrupted jobs with real worker processes: a worker SIGKILLed mid-job on this host, or on
"another machine" (a worker in its own UTS namespace, so its hostname differs and only its heartbeat
tells that it lives), and a job left in RQ's intermediate list. The figures go to the README."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import OutOfMemoryError

from app.batches import BatchQueue, make_queue
from tests.benchmarks.common import process_tree
from tests.fixtures.recovery_handlers import BLOCK, CALLS, GATE
from tests.integration.workers import ROOT, running_worker, start_worker, worker_env
from tests.support import stop, wait_until
from workers.recovery import (
    HEARTBEAT_INTERVAL,
    HEARTBEAT_PREFIX,
    HEARTBEAT_SET,
    HEARTBEAT_TTL,
    Heartbeat,
    requeue_stuck_intermediate,
    worker_gone,
)

pytestmark = pytest.mark.slow
HANDLERS = "tests.fixtures.recovery_handlers"
OTHER_HOST = "other-machine"


def calls(redis: Redis) -> list[dict[str, object]]:
    """The blocker's calls so far."""
    return [json.loads(raw) for raw in redis.lrange(CALLS, 0, -1)]


def enqueue(redis: Redis, uid: str = "n1") -> str:
    """One batch of one notification; returns its job id."""
    body = {"notifications": [{"ep": "e", "path": "/3303/0/5700", "payload": "MjE=", "uid": uid}]}
    return BatchQueue(redis, "test").enqueue(json.dumps(body).encode(), "recovery-test")


def start_elsewhere(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A worker whose hostname is OTHER_HOST (its own UTS namespace): to the others, another machine."""
    command = f"hostname {OTHER_HOST} && exec {sys.executable} -m app worker"
    with log.open("ab") as out:
        return subprocess.Popen(
            ["unshare", "--uts", "sh", "-c", command], env=env, stdout=out, stderr=out, cwd=ROOT
        )


def kill_tree(proc: subprocess.Popen[bytes]) -> float:
    """SIGKILL a worker and its scheduler child, like a dyno that dies; return the time of the kill."""
    tree = process_tree(proc.pid)
    killed_at = time.time()
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(10)
    return killed_at


def finished(redis: Redis, job_id: str) -> bool:
    """True once the job finished."""
    return redis.hget(f"rq:job:{job_id}", "status") == b"finished"


def test_a_job_of_a_worker_killed_on_this_host_runs_again_within_15_s(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    env = worker_env(redis_url, HANDLERS)
    redis.set(BLOCK, 1)
    doomed = start_worker(env, tmp_path / "doomed.log")
    try:
        job = enqueue(redis)
        wait_until(lambda: calls(redis), 30, "the job to start")
        with running_worker(env, tmp_path / "survivor.log"):
            wait_until(lambda: redis.scard("rq:workers") >= 2, 30, "the second worker")
            killed_at = kill_tree(doomed)
            wait_until(lambda: len(calls(redis)) == 2, 15, "the job running again within 15 s")
            pickup = float(calls(redis)[1]["t"]) - killed_at  # type: ignore[arg-type]
            wait_until(lambda: finished(redis, job), 10, "the job to finish")
        print(f"\nrecovery pickup, same host: {pickup:.2f} s")
        assert pickup < 15
        assert len(calls(redis)) == 2
    finally:
        stop(doomed)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux) and root")
def test_a_job_of_a_worker_killed_on_another_machine_runs_again_within_30_s(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    env = worker_env(redis_url, HANDLERS)
    redis.set(BLOCK, 1)
    elsewhere = start_elsewhere(env, tmp_path / "elsewhere.log")
    try:
        job = enqueue(redis)
        wait_until(lambda: calls(redis), 30, "the job to start on the other machine")
        assert calls(redis)[0]["host"] == OTHER_HOST
        with running_worker(env, tmp_path / "survivor.log"):
            wait_until(lambda: redis.scard("rq:workers") >= 2, 30, "the local worker")
            killed_at = kill_tree(elsewhere)
            wait_until(lambda: len(calls(redis)) == 2, 30, "the job running again within 30 s")
            pickup = float(calls(redis)[1]["t"]) - killed_at  # type: ignore[arg-type]
            wait_until(lambda: finished(redis, job), 10, "the job to finish")
        print(f"\nrecovery pickup, another machine: {pickup:.2f} s")
        assert pickup < 30
        assert len(calls(redis)) == 2
    finally:
        stop(elsewhere)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux) and root")
def test_a_long_job_on_a_live_worker_elsewhere_never_runs_twice(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    env = worker_env(redis_url, HANDLERS)
    redis.set(BLOCK, 1)
    elsewhere = start_elsewhere(env, tmp_path / "elsewhere.log")
    try:
        job = enqueue(redis)
        wait_until(lambda: calls(redis), 30, "the job to start on the other machine")
        with running_worker(env, tmp_path / "local.log"):
            wait_until(lambda: redis.scard("rq:workers") >= 2, 30, "the local worker")
            # Well past the heartbeat's TTL and several recovery passes, the job is still only running there.
            deadline = time.monotonic() + 2 * HEARTBEAT_TTL
            while time.monotonic() < deadline:
                assert len(calls(redis)) == 1
                assert redis.hget(f"rq:job:{job}", "status") == b"started"
                time.sleep(0.2)  # sampling an invariant over a fixed window, not waiting for an event
            redis.rpush(GATE, 1)
            wait_until(lambda: finished(redis, job), 10, "the job to finish")
        assert len(calls(redis)) == 1
        assert elsewhere.poll() is None
    finally:
        stop(elsewhere)


def test_a_job_left_in_the_intermediate_list_is_run_within_15_s(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    queue = make_queue(redis, "test")
    job = enqueue(redis)
    # A worker moved it (RQ's LMOVE) and died before starting it: it is in no registry.
    assert redis.lmove(queue.key, queue.intermediate_queue_key) == job.encode()
    started_at = time.time()
    with running_worker(worker_env(redis_url, HANDLERS), tmp_path / "worker.log"):
        wait_until(lambda: calls(redis), 15, "the stuck job to run within 15 s")
        pickup = float(calls(redis)[0]["t"]) - started_at  # type: ignore[arg-type]
        wait_until(lambda: finished(redis, job), 10, "the job to finish")
    print(f"\nintermediate-list pickup (worker started with it stuck): {pickup:.2f} s")
    assert redis.llen(queue.intermediate_queue_key) == 0
    assert len(calls(redis)) == 1


def test_a_started_job_in_the_intermediate_list_is_left_alone(redis: Redis) -> None:
    queue = make_queue(redis, "test")
    job = enqueue(redis)
    redis.lmove(queue.key, queue.intermediate_queue_key)
    redis.hset(f"rq:job:{job}", "status", "started")  # a live worker is starting it right now
    now = time.time()
    assert requeue_stuck_intermediate(queue, now) == []  # first seen
    assert requeue_stuck_intermediate(queue, now + 60) == []
    assert redis.llen(queue.key) == 0
    redis.hset(f"rq:job:{job}", "status", "queued")  # ... and it died before starting it
    assert requeue_stuck_intermediate(queue, now + 61) == []  # seen anew
    assert requeue_stuck_intermediate(queue, now + 70) == [job]
    assert redis.lrange(queue.key, 0, -1) == [job.encode()]


def test_a_missing_heartbeat_is_not_trusted_right_after_an_outage(redis: Redis) -> None:
    redis.hset("rq:worker:w-elsewhere", mapping={"hostname": OTHER_HOST, "pid": 1})
    redis.sadd(HEARTBEAT_SET, "w-elsewhere")  # it kept a heartbeat, now expired
    assert worker_gone(redis, "w-elsewhere")
    assert not worker_gone(redis, "w-elsewhere", use_heartbeats=False)  # maybe it could not beat either
    redis.set(HEARTBEAT_PREFIX + "w-elsewhere", "beating", ex=HEARTBEAT_TTL)
    assert not worker_gone(redis, "w-elsewhere")


def test_heartbeats_are_trusted_only_after_two_good_beats_in_a_row(redis: Redis) -> None:
    beats = Heartbeat(redis, make_queue(redis, "test"), threading.Event())
    beats.serve("w-here")
    assert not beats.heartbeats_trusted()  # one beat: others may not have beaten since an outage
    assert redis.ttl(HEARTBEAT_PREFIX + "w-here") > 0
    beats._beating_since = time.monotonic() - 2 * HEARTBEAT_INTERVAL  # two intervals of good beats
    assert beats.heartbeats_trusted()
    redis.config_set("maxmemory-policy", "noeviction")
    redis.config_set("maxmemory", 1)
    try:
        with pytest.raises(OutOfMemoryError):
            beats.beat()
    finally:
        redis.config_set("maxmemory", 0)
    assert not beats.heartbeats_trusted()
    beats.close()
    assert not redis.exists(HEARTBEAT_PREFIX + "w-here")
