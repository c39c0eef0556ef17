"""The one-call enqueue writes exactly the job that RQ's own Queue.enqueue_call writes."""

from __future__ import annotations

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from app.batches import FAILURE_TTL, JOB_FUNC, JOB_TIMEOUT, RESULT_TTL, BatchQueue, body_key

VARYING = {b"created_at", b"enqueued_at", b"description", b"meta"}


def test_enqueued_hash_matches_rq_own_enqueue(redis: Redis) -> None:
    batches = BatchQueue(redis, "test")
    ours = batches.enqueue(b'{"notifications": []}', "rid-1")
    queue = Queue("test", connection=redis, serializer=JSONSerializer)
    reference = queue.enqueue_call(
        JOB_FUNC,
        job_id="reference",
        timeout=JOB_TIMEOUT,
        result_ttl=RESULT_TTL,
        failure_ttl=FAILURE_TTL,
        retry=batches.retry,
        meta={"request_id": "rid-1", "source": "callback", "bytes": 21},
        description="batch rid-1",
    )
    ours_hash = redis.hgetall(Job.key_for(ours))
    ref_hash = redis.hgetall(reference.key)
    assert set(ours_hash) == set(ref_hash)
    assert {k: v for k, v in ours_hash.items() if k not in VARYING} == {
        k: v for k, v in ref_hash.items() if k not in VARYING
    }


def test_enqueued_job_is_a_normal_rq_job_with_retry_and_meta(redis: Redis) -> None:
    batches = BatchQueue(redis, "test")
    job_id = batches.enqueue(b'{"notifications": []}', "rid-2")
    job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
    assert job.func_name == "workers.jobs.process_batch"
    assert job.meta == {"request_id": "rid-2", "source": "callback", "bytes": 21}
    assert job.retries_left == 5
    assert job.get_status().value == "queued"
    queue = Queue("test", connection=redis, serializer=JSONSerializer)
    assert queue.job_ids == [job_id]
    assert redis.get(body_key(job_id)) == b'{"notifications": []}'


def test_each_enqueue_is_one_job_and_one_body(redis: Redis) -> None:
    batches = BatchQueue(redis, "test")
    ids = {batches.enqueue(b"{}", f"r{i}") for i in range(3)}
    assert len(ids) == 3
    assert redis.llen("rq:queue:test") == 3
    assert len(redis.keys("devicehooks:body:*")) == 3


def test_utc_stamp_writes_what_rq_utcformat_writes() -> None:
    from datetime import UTC, datetime

    from rq.utils import utcformat

    from app.batches import utc_stamp

    for at in (0.0, 1_700_000_000.5, 1_764_633_599.999999, 1_764_633_600.000001):
        assert utc_stamp(at) == utcformat(datetime.fromtimestamp(at, UTC))


def test_job_meta_is_what_json_dumps_writes() -> None:
    import json

    from app.batches import job_meta

    for rid, source in (("abc-123", "callback"), ('we"ird\\\u00e9\n', "async-early")):
        meta = {"request_id": rid, "source": source, "bytes": 7}
        assert job_meta(rid, source, 7) == json.dumps(meta)
