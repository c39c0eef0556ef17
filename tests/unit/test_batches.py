"""The one-call enqueue writes exactly the job that RQ's own Queue.enqueue_call writes."""

from __future__ import annotations

from collections.abc import Sequence

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


def jobs_of(batches: BatchQueue, count: int) -> list[tuple[str, bytes, str, str, str]]:
    """count jobs as ``enqueue`` hands them to ``write``: id, body, stamp, description, meta."""
    from app.batches import job_meta, new_job_id, utc_stamp

    made = []
    for n in range(count):
        body = b'{"n": %d}' % n
        made.append(
            (new_job_id(), body, utc_stamp(), f"batch g{n}", job_meta(f"g{n}", "callback", len(body)))
        )
    return made


def script_calls(redis: Redis) -> int:
    """EVALSHA calls since the last CONFIG RESETSTAT."""
    return int(redis.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def test_a_group_is_one_script_call_and_each_of_its_jobs_a_normal_rq_job(redis: Redis) -> None:
    batches = BatchQueue(redis, "test")
    batches.enqueue(b"{}", "warm")  # loads the script
    group = jobs_of(batches, 3)
    redis.config_resetstat()
    batches.write(group)
    assert script_calls(redis) == 1
    queue = Queue("test", connection=redis, serializer=JSONSerializer)
    assert queue.job_ids[1:] == [job[0] for job in group]
    for job_id, body, _, _, _ in group:
        job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
        assert job.func_name == JOB_FUNC
        assert job.get_status().value == "queued"
        assert job.meta["request_id"] == job.description.split()[-1]
        assert redis.get(body_key(job_id)) == body


def test_a_group_sent_again_makes_no_second_job(redis: Redis) -> None:
    batches = BatchQueue(redis, "test")
    group = jobs_of(batches, 3)
    batches.write(group)
    batches.write(group)  # the one resend after a reply lost on a reused connection
    assert redis.llen("rq:queue:test") == 3
    assert len(redis.keys("rq:job:*")) == 3


def test_puts_arriving_while_a_write_is_in_flight_share_the_next_script_call(redis: Redis) -> None:
    import threading

    from tests.support import wait_until

    batches = BatchQueue(redis, "test")
    batches.enqueue(b"{}", "warm")
    redis.config_resetstat()
    group = batches._group
    gate, started = threading.Event(), threading.Event()
    write = group._write

    def gated(jobs: Sequence[tuple[str, bytes, str, str, str]]) -> None:
        if not started.is_set():
            started.set()
            assert gate.wait(10)
        write(jobs)

    group._write = gated
    ids: list[str] = []
    threads = [
        threading.Thread(target=lambda n=n: ids.append(batches.enqueue(b"{}", f"c{n}"))) for n in range(6)
    ]
    threads[0].start()
    assert started.wait(10)
    for thread in threads[1:]:
        thread.start()
    wait_until(lambda: len(group._waiting) == 5, timeout=10, what="five PUTs waiting behind the first")
    gate.set()
    for thread in threads:
        thread.join(10)
    assert len(set(ids)) == 6
    assert redis.llen("rq:queue:test") == 7
    assert script_calls(redis) == 2  # the first PUT's own call, then one for the five


def test_a_body_over_the_group_limit_is_written_alone(redis: Redis) -> None:
    from app.batches import GROUP_BYTES

    batches = BatchQueue(redis, "test")
    big = b'{"pad": "' + b"x" * GROUP_BYTES + b'"}'
    job_id = batches.enqueue(big, "big")
    assert batches._group.items == 0
    assert redis.get(body_key(job_id)) == big
