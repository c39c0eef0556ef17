"""Real worker processes against poison items, a full Redis (maxmemory + noeviction) and a READONLY blip.

Each test runs its own redis-server (on a free port, stopped by pid), a real ``devicehooks worker``
process and the web app on the same Redis; every wait is a poll with a deadline.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from redis import Redis
from redis.exceptions import OutOfMemoryError

from app import create_app
from app.batches import BatchQueue
from app.config import Settings
from app.redis_server import RedisServer, free_port
from tests.conftest import HEADERS, sample
from tests.fixtures.weather_handlers import ENTERED, GOT, HOLD
from tests.integration.workers import start_worker, worker_env
from tests.support import stop, wait_until
from workers.deadletters import DeadLetters

pytestmark = pytest.mark.slow

QUEUE = "weather"
FILLER = "weather:filler:"
SCHEDULER_OUT = re.compile(r"scheduler \w+: Redis is unavailable")
SCHEDULER_BACK = re.compile(r"scheduler \w+: Redis is back")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server with the eviction policy the README asks for."""
    server = RedisServer(directory=str(tmp_path / "redis")).start()
    client = Redis.from_url(server.url)
    client.config_set("maxmemory-policy", "noeviction")
    client.close()
    yield server
    server.stop()


@pytest.fixture
def redis(server: RedisServer) -> Iterator[Redis]:
    client = Redis.from_url(server.url, socket_timeout=10)
    yield client
    client.close()


def web(server: RedisServer) -> FlaskClient:
    """The real web app on the private Redis."""
    settings = Settings(redis_url=server.url, callback_headers=dict(HEADERS), queue_name=QUEUE)
    return create_app({"SETTINGS": settings, "REDIS": Redis.from_url(server.url)}).test_client()


def worker(server: RedisServer, router: str, log: Path) -> subprocess.Popen[bytes]:
    """A real worker process with fixture handlers."""
    return start_worker(worker_env(server.url, f"tests.fixtures.weather_handlers:{router}", QUEUE), log)


def batch(*uids: str) -> bytes:
    """A notifications batch with one item per uid."""
    payload = base64.b64encode(b"21.5").decode()
    items = [{"ep": f"dev-{u}", "path": "/3303/0/5700", "payload": payload, "uid": u} for u in uids]
    return json.dumps({"notifications": items}).encode()


def got(redis: Redis, handler: str) -> list[str]:
    """The uids a fixture handler recorded, in order."""
    return [bytes(v).decode() for v in redis.lrange(GOT + handler, 0, -1)]


def has_all(redis: Redis, handler: str, uids: list[str]) -> bool:
    """True when the handler recorded every one of uids."""
    return set(uids) <= set(got(redis, handler))


def fill(redis: Redis) -> None:
    """Write filler keys until Redis answers OOM, then hold it just past full.

    Measured: a write refused for its 64 KiB argument leaves headroom once the argument (and client
    buffers) are freed, enough for small writes to succeed again; maxmemory is therefore set 1 MiB below
    what is used (``noeviction`` evicts nothing), so every write that may grow memory is refused until
    the 2 MiB of fillers go.
    """
    used = int(redis.info("memory")["used_memory"])
    redis.config_set("maxmemory", str(used + 2 * 1024 * 1024))
    for written in range(1000):
        try:
            redis.set(f"{FILLER}{written}", b"x" * 64 * 1024)
        except OutOfMemoryError:
            used = int(redis.info("memory")["used_memory"])
            redis.config_set("maxmemory", str(used - 1024 * 1024))
            return
    raise AssertionError("Redis never filled up")


def log_count(log: Path, text: str) -> int:
    """Occurrences of text in the worker's log."""
    return log.read_text(errors="replace").count(text)


def test_poison_items_beside_good_ones_are_contained_and_every_good_event_arrives_once(
    redis: Redis, server: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    proc = worker(server, "poison", log)
    try:
        job = BatchQueue(redis, QUEUE).enqueue(sample("poison/notifications.json"), "poison")
        good = [f"u{i}" for i in range(5)]
        wait_until(
            lambda: has_all(redis, "every", good) and has_all(redis, "second", good), 30, "good events"
        )
        wait_until(
            lambda: redis.hget(f"rq:job:{job}", "status") == b"finished", 30, "the batch job to finish"
        )
        wait_until(
            lambda: redis.zcard(f"rq:scheduled:{QUEUE}") == 0 and redis.llen(f"rq:queue:{QUEUE}") == 0, 30
        )
        wait_until(lambda: not redis.keys("devicehooks:retry:*"), 30, "every retry to be settled")
        dead = DeadLetters(redis)
        letters = [dead.get(row["id"]) for row in dead.list()]
        dead_uids = {(ltr["handler"], e["uid"]) for ltr in letters if ltr for e in ltr["events"]}
        for handler in ("every", "second"):
            received = got(redis, handler)
            assert sorted(u for u in received if u in good) == good, (handler, received)  # each exactly once
            assert len(received) == len(set(received)), (handler, received)  # no duplicate of anything
            for poison in ("p-bignum", "p-surrogate", "p-cbor-nan", "p-json-nan", "p-deep"):
                assert (poison in received) != ((handler, poison) in dead_uids), (handler, poison, received)
        assert redis.zcard(f"rq:failed:{QUEUE}") == 0
        reasons = [json.loads(r)["reason"] for r in redis.lrange("devicehooks:rejections", 0, -1)]
        assert len(reasons) == 2, reasons
        assert proc.poll() is None, log.read_text()
    finally:
        stop(proc)


def test_a_full_redis_answers_503_keeps_the_worker_alive_and_loses_nothing(
    redis: Redis, server: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    client = web(server)
    proc = worker(server, "held", log)
    try:
        assert client.put("/notify", data=batch("a1", "a2"), headers=HEADERS).status_code == 204
        wait_until(lambda: has_all(redis, "hold", ["a1", "a2"]), 30, "batch a")
        redis.set(HOLD, "1")
        assert client.put("/notify", data=batch("b1", "b2"), headers=HEADERS).status_code == 204
        wait_until(lambda: redis.llen(ENTERED) >= 1, 30, "the hold handler to take batch b")
        assert client.put("/notify", data=batch("d1"), headers=HEADERS).status_code == 204  # queued behind b
        fill(redis)
        refused = client.put("/notify", data=batch("c1"), headers=HEADERS)
        assert refused.status_code == 503
        assert refused.headers.get("Retry-After")
        redis.delete(HOLD)  # the hold handler now records into a full Redis: it fails, the retry must wait
        wait_until(lambda: "delivery: Redis is unavailable" in log.read_text(), 30, "the outage in the log")
        wait_until(
            lambda: SCHEDULER_OUT.search(log.read_text()), 30, "the RQ scheduler meeting the full Redis"
        )
        assert proc.poll() is None, log.read_text()
        redis.delete(*redis.keys(FILLER + "*"))
        accepted = client.put("/notify", data=batch("c1"), headers=HEADERS)
        assert accepted.status_code == 204
        everything = ["a1", "a2", "b1", "b2", "d1", "c1"]
        wait_until(lambda: has_all(redis, "every", everything) and has_all(redis, "hold", everything), 60)
        wait_until(lambda: "delivery: Redis is back" in log.read_text(), 30, "the recovery in the log")
        for handler in ("every", "hold"):
            assert sorted(got(redis, handler)) == sorted(everything), handler
        assert log_count(log, "delivery: Redis is unavailable") == 1
        wait_until(lambda: SCHEDULER_BACK.search(log.read_text()), 30, "the RQ scheduler resuming")
        assert len(SCHEDULER_OUT.findall(log.read_text())) == 1
        assert "raised an exception" not in log.read_text()  # the RQ scheduler did not die on the OOM
        assert proc.poll() is None, log.read_text()
        assert redis.zcard(f"rq:failed:{QUEUE}") == 0
    finally:
        stop(proc)


def test_a_read_only_blip_is_waited_out_and_the_worker_resumes_on_its_own(
    redis: Redis, server: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    client = web(server)
    proc = worker(server, "plain", log)
    try:
        assert client.put("/notify", data=batch("r1"), headers=HEADERS).status_code == 204
        wait_until(lambda: has_all(redis, "every", ["r1"]), 30, "batch r1")
        redis.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # a master nobody answers for
        assert client.put("/notify", data=batch("r2"), headers=HEADERS).status_code == 503
        wait_until(lambda: "worker: Redis is unavailable" in log.read_text(), 30, "the worker noticing")
        assert proc.poll() is None, log.read_text()
        redis.execute_command("REPLICAOF", "NO", "ONE")
        wait_until(lambda: "worker: Redis is back" in log.read_text(), 30, "the worker resuming")
        assert client.put("/notify", data=batch("r3"), headers=HEADERS).status_code == 204
        wait_until(lambda: has_all(redis, "every", ["r1", "r3"]), 30, "batch r3")
        assert got(redis, "every") == ["r1", "r3"]
        assert log_count(log, "worker: Redis is unavailable") == 1
        assert proc.poll() is None, log.read_text()
    finally:
        stop(proc)


def test_a_worker_started_against_a_full_redis_waits_and_then_works(
    redis: Redis, server: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    client = web(server)
    fill(redis)
    proc = worker(server, "plain", log)
    try:
        wait_until(lambda: "worker: Redis is unavailable" in log.read_text(), 30, "the worker noticing")
        assert client.put("/notify", data=batch("s1"), headers=HEADERS).status_code == 503
        assert proc.poll() is None, log.read_text()
        redis.delete(*redis.keys(FILLER + "*"))
        wait_until(lambda: "worker: Redis is back" in log.read_text(), 30, "the worker starting its work")
        assert client.put("/notify", data=batch("s2"), headers=HEADERS).status_code == 204
        wait_until(lambda: has_all(redis, "every", ["s2"]), 30, "batch s2")
        assert got(redis, "every") == ["s2"]
        assert log_count(log, "worker: Redis is unavailable") == 1
    finally:
        stop(proc)
