"""Queue one received batch as one RQ job, atomically, in one round trip to Redis.

The request path is the channel's bottleneck (Device Management sends the next batch only
after the ack), so this module does the least work that still leaves a normal RQ job:

- the raw body is stored under its own key, derived from the job id; the job itself takes no
  arguments, so RQ never JSON-encodes and zlib-compresses a multi-megabyte body in the request
  (~10 ms for a 10,000-item batch);
- the job hash is built once per process by RQ's own ``Queue.create_job``/``Job.to_dict`` and
  only the per-job fields (timestamps, description, meta) are filled in per request;
- body, job hash, queue push and queue registration go to Redis as ONE Lua script call: atomic
  like MULTI/EXEC, one command to encode and one reply to parse instead of seven.

``tests/unit/test_batches.py`` checks the hash against what ``Queue.enqueue_job`` writes, so an
RQ upgrade that changes the job format fails the suite instead of the workers.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from redis import Redis
from rq import Queue, Retry
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq.utils import now, utcformat

logger = logging.getLogger(__name__)

JOB_FUNC = "workers.jobs.process_batch"
BODY_KEY_PREFIX = "devicehooks:body:"
JOB_TIMEOUT = 600
RESULT_TTL = 300
FAILURE_TTL = 7 * 24 * 3600
RETRY_INTERVALS = [5, 30, 120, 600, 1800]

_PER_JOB_FIELDS = ("created_at", "enqueued_at", "description", "meta")
_ENQUEUE_LUA = """
redis.call('SADD', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[3], 'created_at', ARGV[3], 'enqueued_at', ARGV[3], 'description', ARGV[4],
           'meta', ARGV[5]{static})
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('SET', KEYS[4], ARGV[2])
return 1
"""


def body_key(job_id: str) -> str:
    """Redis key of the raw body that a batch job processes."""
    return BODY_KEY_PREFIX + job_id


def make_queue(connection: Redis, name: str) -> Queue:
    """The batch queue, always with the JSON serializer."""
    return Queue(name, connection=connection, serializer=JSONSerializer)


def _lua_literal(value: Any) -> str:
    """A Lua string literal holding value as redis-py would encode it (every byte escaped)."""
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, JobStatus):
        raw = value.value.encode()
    else:
        raw = str(value).encode()
    return '"' + "".join(f"\\{byte}" for byte in raw) + '"'


def enqueue_script(template: dict[str, Any]) -> str:
    """The enqueue Lua script with the fields that are the same for every batch job inlined."""
    static = "".join(
        f", '{field}', {_lua_literal(value)}"
        for field, value in template.items()
        if field not in _PER_JOB_FIELDS
    )
    return _ENQUEUE_LUA.format(static=static)


def new_job_id() -> str:
    """A job id of letters and digits (RQ allows letters, digits, '_' and '-')."""
    return "b" + uuid.uuid4().hex


class BatchQueue:
    """Writes received batches to Redis as RQ jobs."""

    def __init__(self, connection: Redis, queue_name: str) -> None:
        self.connection = connection
        self.queue = make_queue(connection, queue_name)
        self.retry = Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS)
        self._script: Any = None
        self._queues_key = self.queue.redis_queues_keys
        self._queue_key = self.queue.key
        self._job_prefix = self.queue.job_class.redis_job_namespace_prefix

    def create_job_mapping(self, job_id: str, request_id: str, source: str, size: int) -> dict[str, Any]:
        """The job hash RQ would write for this batch (built by RQ itself, the slow way)."""
        job = self.queue.create_job(
            JOB_FUNC,
            job_id=job_id,
            timeout=JOB_TIMEOUT,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            retry=self.retry,
            meta={"request_id": request_id, "source": source, "bytes": size},
            description=f"batch {request_id}",
            status=JobStatus.QUEUED,
        )
        job.origin = self.queue.name
        job.enqueued_at = now()
        mapping = job.to_dict()
        mapping["status"] = JobStatus.QUEUED.value
        return mapping

    def _script_for_queue(self) -> Any:
        """Register the enqueue script, built from RQ's own job hash for this queue."""
        template = self.create_job_mapping("template", "", "", 0)
        return self.connection.register_script(enqueue_script(template))

    def enqueue(self, body: bytes, request_id: str, source: str = "callback") -> str:
        """Store the body and enqueue its job in one atomic call; return the job id."""
        if self._script is None:
            self._script = self._script_for_queue()
        job_id = new_job_id()
        keys = [self._queues_key, self._queue_key, self._job_prefix + job_id, BODY_KEY_PREFIX + job_id]
        meta = json.dumps({"request_id": request_id, "source": source, "bytes": len(body)})
        self._script(keys=keys, args=[job_id, body, utcformat(now()), f"batch {request_id}", meta])
        return job_id
