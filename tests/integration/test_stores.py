"""Bounded stores: rejections, quarantine and dead letters by count, bytes and time; status sizes."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner
from redis import Redis
from rq.serializers import JSONSerializer

from app import create_app
from app.batches import BODY_TTL, FAILURE_TTL, RETRY_INTERVALS, BatchQueue, body_key, make_queue
from app.cli import main
from app.config import Settings
from app.stores import DEAD_SIZES, QUARANTINE_INDEX, REJECTIONS, StoreLimits, redis_memory, store_sizes
from workers.batch import Rejection
from workers.deadletters import DeadLetters
from workers.dispatch import replay
from workers.failed import trim_failed
from workers.rejections import Rejections
from workers.status import gather, render
from workers.worker import DevicehooksWorker

LIMITS = StoreLimits(
    ttl=3600,
    rejections_keep=5,
    rejection_item_bytes=300,
    quarantine_keep=3,
    quarantine_body_bytes=1000,
    dead_letters_keep=4,
    dead_letters_max_bytes=64 * 1024,
)


def test_an_oversized_rejected_item_keeps_a_truncated_copy_and_the_digest_of_the_whole(redis: Redis) -> None:
    item = {"ep": "x" * 5000}
    Rejections(redis, LIMITS).record([Rejection("notifications", 0, "bad", item)], "job", "rid")
    (record,) = Rejections(redis).list()
    whole = json.dumps(item, separators=(",", ":")).encode()
    assert record["item"]["bytes"] == len(whole)
    assert record["item"]["sha256"] == hashlib.sha256(whole).hexdigest()
    assert len(record["item"]["truncated"]) == 300
    assert 0 < redis.ttl(REJECTIONS) <= 3600


def test_rejections_keep_only_the_newest_up_to_the_count_limit(redis: Redis) -> None:
    store = Rejections(redis, LIMITS)
    for batch in range(3):
        store.record([Rejection("notifications", i, f"b{batch}", {"i": i}) for i in range(4)], "job", None)
    records = store.list(100)
    assert len(records) == 5
    assert [r["reason"] for r in records] == ["b2"] * 4 + ["b1"]


def test_a_quarantined_body_past_the_limit_is_truncated_with_its_size_and_digest(redis: Redis) -> None:
    body = b"{" + b"x" * 5000
    Rejections(redis, LIMITS).quarantine(body, "not JSON", "job1", None)
    (record,) = Rejections(redis).list()
    assert record["body_bytes"] == len(body)
    assert record["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert Rejections(redis).body(record["body_key"]) == body[:1000]
    assert 0 < redis.ttl(record["body_key"]) <= 3600


def test_quarantine_keeps_at_most_the_newest_bodies(redis: Redis) -> None:
    store = Rejections(redis, LIMITS)
    for n in range(5):
        store.quarantine(b"{bad", "not JSON", f"job{n}", None)
    kept = sorted(k.decode() for k in redis.scan_iter("devicehooks:quarantine:*"))
    assert kept == [f"devicehooks:quarantine:job{n}" for n in (2, 3, 4)]
    assert redis.zcard(QUARANTINE_INDEX) == 3


def test_dead_letters_expire_and_the_oldest_go_beyond_the_count_limit(redis: Redis) -> None:
    dead = DeadLetters(redis, LIMITS)
    ids = [dead.add("h", [{"ep": f"d{n}"}], "err", "", 1, "src") for n in range(6)]
    assert [row["id"] for row in dead.list()] == ids[:1:-1]
    assert dead.get(ids[0]) is None
    assert 0 < redis.ttl("devicehooks:dead:" + ids[-1]) <= 3600
    assert redis.hlen(DEAD_SIZES) == 4


def test_dead_letters_stay_within_the_byte_budget(redis: Redis) -> None:
    dead = DeadLetters(redis, StoreLimits(dead_letters_keep=1000, dead_letters_max_bytes=64 * 1024))
    ids = [dead.add("h", [{"blob": "x" * 10_000}], "err", "", 1, "src") for _ in range(10)]
    sizes = [int(v) for v in redis.hvals(DEAD_SIZES)]
    assert sum(sizes) <= 64 * 1024
    assert len(sizes) == 6
    assert [row["id"] for row in dead.list(100)] == ids[:3:-1]


def test_an_oversized_dead_letter_keeps_a_truncated_copy_and_cannot_be_replayed(redis: Redis) -> None:
    dead = DeadLetters(redis, StoreLimits(dead_letters_max_bytes=64 * 1024))
    events = [{"blob": "y" * 40_000}]
    letter_id = dead.add("h", events, "err", "", 1, "src")
    letter = dead.get(letter_id)
    assert letter is not None
    whole = json.dumps(events, separators=(",", ":")).encode()
    assert letter["events"] == []
    assert letter["sha256"] == hashlib.sha256(whole).hexdigest()
    assert int(letter["bytes"]) == len(whole)
    with pytest.raises(ValueError, match="truncated"):
        replay(redis, make_queue(redis, "test"), letter_id)


def test_store_sizes_count_every_store_of_the_queue(redis: Redis) -> None:
    BatchQueue(redis, "test").enqueue(b'{"notifications": []}', "rid")
    Rejections(redis, LIMITS).record([Rejection("x", None, "unknown kind", 1)], "job", None)
    Rejections(redis, LIMITS).quarantine(b"{", "bad", "job9", None)
    DeadLetters(redis, LIMITS).add("h", [], "err", "", 1, "src")
    sizes = store_sizes(redis, "test")
    assert sizes == {
        "queued": 1, "intermediate": 0, "started": 0, "failed": 0, "scheduled": 0, "deferred": 0,
        "dead_letters": 1, "rejections": 2, "quarantine": 1,
    }  # fmt: skip


def test_status_shows_memory_headroom_and_warns_about_an_evicting_policy(redis: Redis) -> None:
    redis.config_set("maxmemory", str(512 * 1024 * 1024))
    try:
        status = gather(redis, "test")
        assert status["redis"]["headroom_bytes"] == 512 * 1024 * 1024 - status["redis"]["used_bytes"]
        lines = render({**status, "redis": {**status["redis"], "policy": "allkeys-lru"}})
        assert lines[0].startswith("redis memory: used ")
        assert "of 512.0 MiB" in lines[0]
        assert any("allkeys-lru" in line for line in lines)
        assert "  dead_letters   0" in lines
    finally:
        redis.config_set("maxmemory", "0")
    assert redis_memory(redis)["headroom_bytes"] is None


def test_a_batch_body_expires_after_every_run_of_its_job_and_the_failed_record(redis: Redis) -> None:
    job_id = BatchQueue(redis, "test").enqueue(b'{"notifications": []}', "rid")
    ttl = redis.ttl(body_key(job_id))
    assert BODY_TTL - 5 <= ttl <= BODY_TTL
    assert sum(RETRY_INTERVALS) + FAILURE_TTL < BODY_TTL


def test_devicehooks_status_prints_headroom_and_store_sizes(redis: Redis, redis_url: str) -> None:
    DeadLetters(redis, LIMITS).add("h", [], "err", "", 1, "src")
    result = CliRunner().invoke(
        main, ["status", "--json"], env={"REDIS_URL": redis_url, "DEVICEHOOKS_QUEUE": "q"}
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["stores"]["dead_letters"] == 1
    assert report["redis"]["policy"]
    text = CliRunner().invoke(main, ["status"], env={"REDIS_URL": redis_url})
    assert text.output.startswith("redis memory: used ")


def test_readyz_details_show_headroom_and_store_sizes(redis: Redis, settings: Settings) -> None:
    client = create_app({"SETTINGS": settings, "REDIS": redis}).test_client()
    Rejections(redis, LIMITS).record([Rejection("x", None, "unknown kind", 1)], "job", None)
    details = client.get("/readyz?details=1").get_json()
    assert details["status"] == "ready"
    assert details["stores"]["rejections"] == 1
    assert details["redis"]["used_bytes"] > 0
    assert client.get("/readyz").get_json() == {"status": "ready"}


def test_batches_that_failed_for_good_are_capped_by_count_and_by_body_bytes(redis: Redis) -> None:
    queue = make_queue(redis, "test")
    ids = []
    for n in range(4):
        job = queue.enqueue("tests.fixtures.weather_handlers.failing_job", job_id=f"bfail{n}")
        redis.set(body_key(job.id), b"x" * 1000)
        ids.append(job.id)
    worker = DevicehooksWorker([queue], connection=redis, serializer=JSONSerializer)
    worker.limits = StoreLimits(failed_batches_keep=3, failed_batches_max_bytes=10_000)
    worker.work(burst=True, with_scheduler=False)
    assert queue.failed_job_registry.get_job_ids() == ids[1:]
    assert redis.exists(body_key(ids[0])) == 0
    assert not redis.exists(f"rq:job:{ids[0]}")
    assert trim_failed(queue, keep=3, max_bytes=2_500) == [ids[1]]
    assert [redis.exists(body_key(i)) for i in ids] == [0, 0, 1, 1]
