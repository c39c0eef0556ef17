"""Queue one received batch as one RQ job, atomically, in one round trip to Redis.

The request path is the channel's bottleneck (Device Management sends the next batch only
after the ack), so this module does the least work that still leaves a normal RQ job:

- the raw body is stored under its own key, derived from the job id; the job itself takes no
  arguments, so RQ never JSON-encodes and zlib-compresses a multi-megabyte body in the request
  (~10 ms for a 10,000-item batch);
- the job hash is built once per process by RQ's own ``Queue.create_job``/``Job.to_dict`` and
  only the per-job fields (timestamps, description, meta) are filled in per request;
- body, job hash, queue push and queue registration go to Redis as ONE Lua script call: atomic
  like MULTI/EXEC, one command to encode and one reply to parse instead of seven;
- the PUTs that a process's threads answer at the same time share that call (``app.groupcommit``):
  under load one round trip, one script run and one reply carry several batches;
- the script writes nothing for a job that already exists, so sending it again with the same job ids
  (the one retry after a lost connection) can never make a second job; and as its first write is
  the one Redis may refuse (OOM, READONLY), a call writes all of its jobs or none.

``tests/unit/test_batches.py`` checks the hash against what ``Queue.enqueue_call`` writes, so an
RQ upgrade that changes the job format fails the suite instead of the workers.
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from rq import Queue, Retry
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq.utils import now

from app.groupcommit import GroupCommit
from app.redis_conn import text

try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency; redis-py's packer still works
    _hiredis_pack = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

JOB_FUNC = "workers.jobs.process_batch"
BODY_KEY_PREFIX = "devicehooks:body:"
JOB_TIMEOUT = 600
RESULT_TTL = 300
FAILURE_TTL = 7 * 24 * 3600
RETRY_INTERVALS = [5, 30, 120, 600, 1800]
# A body outlives every run of its job (timeouts and retry waits) and then the failed job's record, so a
# job that failed for good leaves no body behind for longer than RQ keeps the job itself.
BODY_TTL = FAILURE_TTL + sum(RETRY_INTERVALS) + (len(RETRY_INTERVALS) + 1) * JOB_TIMEOUT
# A group is what arrived during the previous write, at most this many jobs; a body over GROUP_BYTES
# goes alone (its transfer, not the round trip, is its cost, and a group must not wait behind it).
GROUP_MAX_JOBS = 32
GROUP_BYTES = 64 * 1024

_PER_JOB_FIELDS = ("created_at", "enqueued_at", "description", "meta")
# KEYS: the queues set, the queue, then each job's hash and body key; ARGV: 5 values a job.
_ENQUEUE_LUA = """
local ids = {{}}
for i = 1, (#KEYS - 2) / 2 do
  local job, at = KEYS[1 + 2 * i], (i - 1) * 5
  if redis.call('EXISTS', job) == 0 then
    redis.call('SET', KEYS[2 + 2 * i], ARGV[at + 2], 'EX', {body_ttl})
    redis.call('HSET', job, 'created_at', ARGV[at + 3], 'enqueued_at', ARGV[at + 3],
               'description', ARGV[at + 4], 'meta', ARGV[at + 5]{static})
    ids[#ids + 1] = ARGV[at + 1]
  end
end
if #ids > 0 then
  redis.call('SADD', KEYS[1], KEYS[2])
  redis.call('RPUSH', KEYS[2], unpack(ids))
end
return #ids
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
    return _ENQUEUE_LUA.format(static=static, body_ttl=BODY_TTL)


def new_job_id() -> str:
    """A job id of letters and digits (RQ allows letters, digits, '_' and '-'): 128 random bits."""
    return "b" + os.urandom(16).hex()  # as uuid4().hex without building a UUID (~4x less CPU)


_second_cache: tuple[int, str] = (-1, "")


def utc_stamp(at: float | None = None) -> str:
    """``at`` (default now) as RQ's ``utcformat`` writes it, ``%Y-%m-%dT%H:%M:%S.%fZ``.

    The date and time part is formatted once per second: ``utcformat(now())`` cost ~10 µs a PUT.
    """
    global _second_cache
    second, micro = divmod(round((time.time() if at is None else at) * 1_000_000), 1_000_000)
    cached_second, prefix = _second_cache
    if cached_second != second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_cache = (second, prefix)
    return f"{prefix}.{micro:06d}Z"


def job_meta(request_id: str, source: str, size: int) -> str:
    """The job's meta as ``json.dumps`` writes it, without building a dict and an encoder."""
    rid, src = encode_basestring_ascii(request_id), encode_basestring_ascii(source)
    return f'{{"request_id": {rid}, "source": {src}, "bytes": {size}}}'


class BatchQueue:
    """Writes received batches to Redis as RQ jobs."""

    def __init__(self, connection: Redis, queue_name: str) -> None:
        self.connection = connection
        self.queue = make_queue(connection, queue_name)
        self.retry = Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS)
        self._sha: str | None = None
        self._lua = ""
        self._wire = _Wire(connection)
        self._group: GroupCommit[tuple[str, bytes, str, str, str]] = GroupCommit(self.write, GROUP_MAX_JOBS)
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

    def _script_sha(self) -> str:
        """Load the enqueue script, built from RQ's own job hash for this queue; return its SHA."""
        if self._sha is None:
            template = self.create_job_mapping("template", "", "", 0)
            self._lua = enqueue_script(template)
            self._sha = text(self._wire.call("SCRIPT", "LOAD", self._lua))
        return self._sha

    def enqueue(self, body: bytes, request_id: str, source: str = "callback") -> str:
        """Store the body and enqueue its job, atomically; return the job id once both are in Redis."""
        job_id = new_job_id()
        job = (job_id, body, utc_stamp(), f"batch {request_id}", job_meta(request_id, source, len(body)))
        if len(body) > GROUP_BYTES:
            self.write((job,))
        else:
            self._group.submit(job)
        return job_id

    def write(self, jobs: Sequence[tuple[str, bytes, str, str, str]]) -> None:
        """Write jobs (id, body, stamp, description, meta) in one script call, reloading it once if lost."""
        keys: list[Any] = [self._queues_key, self._queue_key]
        argv: list[Any] = []
        for job in jobs:
            keys += (self._job_prefix + job[0], BODY_KEY_PREFIX + job[0])
            argv += job
        try:
            self._wire.call("EVALSHA", self._script_sha(), len(keys), *keys, *argv)
        except NoScriptError:  # Redis restarted or flushed its scripts
            self._sha = None
            self._wire.call("EVALSHA", self._script_sha(), len(keys), *keys, *argv)


def _pack(conn: Any, args: tuple[Any, ...]) -> Any:
    """RESP-encode a command: hiredis's C packer when installed, else redis-py's."""
    if _hiredis_pack is not None:
        return [_hiredis_pack(args)]
    return conn.pack_command(*args)


def connection_name() -> str:
    """The name the request path's connections give themselves (``CLIENT LIST``): role and pid."""
    return f"devicehooks-web:{os.getpid()}"


def _stale(conn: Any) -> bool:
    """True when an idle connection has something to read: Redis closed it (idle timeout, restart).

    One zero-timeout poll(2) of its socket (~1 µs; redis-py's ``can_read`` took ~10 µs).
    """
    sock = getattr(conn, "_sock", None)
    if sock is None:
        return False  # not connected yet: sending connects it
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


class _Wire:
    """The request path's connections to Redis, outside redis-py's pool and retry layers.

    The pool's get/release, health check and retry wrapper cost ~40 µs of CPU per call here, a third
    of the enqueue. Connections are shared by the process's threads, last used first (a list's
    ``pop``/``append`` are atomic), so a few stay warm however many threads the worker runs.

    Managed Redis closes idle connections and a restarted Redis has dropped them all, so an idle
    connection is checked before use (a zero-timeout poll) and replaced when Redis closed it.
    A reused connection that still fails with a connection error (reset, EOF, broken pipe) is
    replaced and the command sent ONCE more: the enqueue script is idempotent by job id, so even a
    reply lost after Redis ran it makes no second job. A fresh connection failing, or a timeout, is
    Redis really unavailable: it raises (RedisError) and the caller answers 503.
    """

    def __init__(self, connection: Redis) -> None:
        self._pool = connection.connection_pool
        self._idle: list[Any] = []

    def _new(self) -> Any:
        """A new, not yet connected connection with the pool's settings and this process's name."""
        kwargs = {**self._pool.connection_kwargs, "client_name": connection_name()}
        return self._pool.connection_class(**kwargs)

    def _take(self) -> tuple[Any, bool]:
        """An idle connection that Redis has not closed, or a new one; and whether it was reused."""
        while self._idle:
            try:
                conn = self._idle.pop()
            except IndexError:  # another thread took the last one
                break
            if not _stale(conn):
                return conn, True
            conn.disconnect()
        return self._new(), False

    def _send(self, conn: Any, args: tuple[Any, ...]) -> Any:
        """Send one command and read its reply; the connection goes back to the idle list unless broken."""
        try:
            conn.send_packed_command(_pack(conn, args), check_health=False)
            reply = conn.read_response()
        except ResponseError:
            self._idle.append(conn)
            raise
        except BaseException:
            conn.disconnect()
            raise
        self._idle.append(conn)
        return reply

    def call(self, *args: Any) -> Any:
        """Send one command; reconnect and send it once more when a reused connection was lost."""
        conn, reused = self._take()
        try:
            return self._send(conn, args)
        except RedisConnectionError:
            if not reused:
                raise
            logger.info("redis connection lost since its last use; reconnecting once")
        return self._send(self._new(), args)
