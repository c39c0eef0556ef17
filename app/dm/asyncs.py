"""Async device requests, tracked in Redis and settled exactly once, waited for from any process.

A request's pending record is written BEFORE the request is sent (``POST /v2/device-requests/{ep}
?async-id=ID`` with a client-chosen id), so its async-response can never arrive unknown. The legacy flow
(``GET /v2/endpoints/{ep}/{path}`` -> 202 with a server-chosen id) can lose that race: an async-response
that arrives before its record is kept as an *early* response (with a TTL) and settles the request the
moment its record is created (:meth:`AsyncTracker.track`).

The tracker keeps the Redis protocol and returns what it stored: payloads stay base64 as received; the
worker decodes them once, with its configured object model (``workers/asyncs.py``). ``app/dm`` never
imports ``workers``: a named handler's delivery is queued by dotted path (:data:`DELIVER_FUNC`).

Keys, under ``devicehooks:async:``:

- ``rec:{id}``   the record (JSON: ep, path, method, handler, created_at, deadline);
- ``res:{id}``   the result (JSON); its existence is the "settled" marker, set only by one Lua script;
- ``early:{id}`` an async-response (its result doc) that came before its record (SET NX: first wins);
- ``wake:{id}``  a one-token list; waiters ``BRPOPLPUSH`` it onto itself, so every waiter wakes;
- ``call:{id}``  the named handler's call: a claim token while it runs, ``done`` once it returned;
- ``deadlines``  a sorted set of pending ids by deadline, swept by :meth:`AsyncTracker.expire_overdue`.

Settling is ONE Lua script (atomic, one round trip): the result is stored, waiters are woken, the id
leaves ``deadlines`` and, when the record names a handler, the RQ job ``deliver_async_result(id)`` is
written and queued, all or nothing. That holds for a response in a batch (:meth:`resolve`), for a
timeout (:meth:`expire_overdue`), for an early response matched by :meth:`track` and for a failed POST
(:meth:`fail`): no process can die between "settled" and "its handler's delivery is queued". On a full
Redis (``noeviction``) the script's first write fails with OOM before anything changed, so the caller
retries the whole step: the batch job through its Retry, the sweeper on its next pass (the id stays in
``deadlines`` until a sweep settles it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from redis import Redis
from redis.commands.core import Script
from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError, ResponseError
from rq import Retry
from rq.job import JobStatus
from rq.utils import now as rq_now

from app.batches import FAILURE_TTL, RESULT_TTL, make_queue
from app.dm.client import DMClient, normalize_uri
from app.errors import DMApiError
from app.weather import Outage

logger = logging.getLogger(__name__)

PREFIX = "devicehooks:async:"
CLIENT_ID = re.compile(r"^[A-Za-z0-9-]{1,40}$")
ANY_ID = re.compile(r"^[^\s]{1,200}$")
TIMEOUT_STATUS = 504
TIMEOUT_ERROR = "TIMEOUT"

RESOLVED = "resolved"
TIMEOUT = "timeout"
FAILED = "failed"
PENDING = "pending"
UNKNOWN = "unknown"

DELIVER_FUNC = "workers.jobs.deliver_async_result"
DELIVER_JOB_PREFIX = "async-"
DELIVER_TIMEOUT = 600
# A job killed with its worker runs again only with a Retry (RQ's abandoned-job handling): the Retry of
# every follow-up job, the delivery jobs queued here and the workers' redeliveries and replays alike.
FOLLOW_UP_RETRY_INTERVALS = [5, 30, 120]
CALL_DONE = "done"

# Enqueue the delivery job: the same three writes as RQ's own enqueue (job hash, queue set, queue list).
_ENQUEUE_DELIVERY = """
  redis.call('HSET', KEYS[8], unpack(ARGV, 7))
  redis.call('SADD', KEYS[6], KEYS[7])
  redis.call('RPUSH', KEYS[7], ARGV[6])
"""

# KEYS: rec, res, early, wake, deadlines, rq queues set, rq queue list, rq job hash.
# ARGV: id, result doc, result ttl, early doc ('' = don't keep one), early ttl,
#       delivery job id ('' = none built yet), then the job hash as field, value, ...
# Returns {0} already settled, {1, rec, job id or ''} settled now, {2} kept as early, {3} no record,
# {5} the record names a handler: call again with the delivery job's hash.
# The first write is the SET of the result: on a full Redis it fails before anything changed.
_SETTLE_LUA = (
    """
if redis.call('EXISTS', KEYS[2]) == 1 then return {0} end
local rec = redis.call('GET', KEYS[1])
if not rec then
  if ARGV[4] ~= '' then
    redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5], 'NX')
    redis.call('ZREM', KEYS[5], ARGV[1])
    return {2}
  end
  redis.call('ZREM', KEYS[5], ARGV[1])
  return {3}
end
local handler = cjson.decode(rec)['handler']
local named = type(handler) == 'string' and handler ~= ''
if named and ARGV[6] == '' then return {5} end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('DEL', KEYS[4])
redis.call('LPUSH', KEYS[4], '1')
redis.call('EXPIRE', KEYS[4], ARGV[3])
if named then
"""
    + _ENQUEUE_DELIVERY
    + """
  return {1, rec, ARGV[6]}
end
return {1, rec, ''}
"""
)

# KEYS: rec, early, deadlines, res, wake, rq queues set, rq queue list, rq job hash.
# ARGV: id, record, record ttl, deadline, result ttl, delivery job id ('' = no handler), job hash pairs.
# Returns {0} id in use, {1} created (pending), {2} created and settled by the early response waiting.
_CREATE_LUA = (
    """
if redis.call('EXISTS', KEYS[4]) == 1 or redis.call('EXISTS', KEYS[1]) == 1 then return {0} end
local early = redis.call('GET', KEYS[2])
if not early then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
  return {1}
end
redis.call('SET', KEYS[4], early, 'EX', ARGV[5])
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[5])
redis.call('DEL', KEYS[2])
redis.call('DEL', KEYS[5])
redis.call('LPUSH', KEYS[5], '1')
redis.call('EXPIRE', KEYS[5], ARGV[5])
if ARGV[6] ~= '' then
"""
    + _ENQUEUE_DELIVERY
    + """
end
return {2}
"""
)

# KEYS: call. ARGV: token. Delete the claim only while it is still this token's.
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _text(value: Any) -> str | None:
    """Redis replies as text (bytes decoded as UTF-8)."""
    if value is None:
        return None
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def run_script(script: Script, keys: list[str], args: list[Any]) -> Any:
    """Run a Lua script; a write refused inside it (full or read-only Redis) raises what the command would.

    Redis wraps such an error in a generic script error; callers must tell weather from a bug.
    """
    try:
        return script(keys=keys, args=args)
    except ResponseError as exc:
        message = str(exc)
        if "OOM command not allowed" in message:
            raise OutOfMemoryError(message) from exc
        if "READONLY" in message:
            raise ReadOnlyError(message) from exc
        raise


def resource_of(uri: str | None) -> str:
    """The resource path of a request URI (without its query), for typing the decoded value."""
    return (uri or "/").split("?", 1)[0]


def delivery_job_id(async_id: str) -> str:
    """The id of the one delivery job of a request (RQ ids: letters, digits, '_' and '-')."""
    return DELIVER_JOB_PREFIX + hashlib.sha256(async_id.encode("utf-8")).hexdigest()[:40]


@dataclass(frozen=True)
class Response:
    """One async-responses item as the worker parsed it: status and max-age ints, no error = None."""

    id: str
    status: int | None = None
    payload_b64: str | None = None
    ct: str | None = None
    error: str | None = None
    max_age: int | None = None


@dataclass(frozen=True)
class AsyncResult:
    """What is stored about a request; ``state`` is resolved, timeout, failed, pending or unknown.

    ``payload_b64`` is the payload as Device Management sent it; decoding is the worker's (one object
    model, ``LWM2M_OBJECTS``), so the tracker never guesses types.
    """

    id: str
    ep: str | None
    path: str | None
    method: str | None
    status: int | None
    payload_b64: str | None
    ct: str | None
    error: str | None
    timed_out: bool
    resolved_at: float | None
    state: str = RESOLVED
    handler: str | None = None
    max_age: int | None = None

    @property
    def ok(self) -> bool:
        """Resolved with a 2xx status and no error."""
        in_2xx = self.status is not None and 200 <= self.status < 300
        return self.state == RESOLVED and in_2xx and not self.error

    @property
    def settled(self) -> bool:
        """True once the request has its outcome (resolved, timed out or failed)."""
        return self.state in (RESOLVED, TIMEOUT, FAILED)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return asdict(self)


def result_doc(response: Response, state: str = RESOLVED, now: float | None = None) -> dict[str, Any]:
    """The stored form of a settled request."""
    return {
        "state": state,
        "status": response.status,
        "payload": response.payload_b64 or None,
        "ct": response.ct or None,
        "error": response.error or None,
        "max_age": response.max_age,
        "resolved_at": time.time() if now is None else now,
    }


class AsyncTracker:
    """Creates, settles, expires and waits for async requests in Redis."""

    def __init__(
        self,
        redis: Redis,
        result_ttl: int = 3600,
        default_timeout: float = 60,
        early_ttl: int = 600,
        queue_name: str = "devicehooks",
        prefix: str = PREFIX,
    ) -> None:
        self.redis = redis
        self.result_ttl = int(result_ttl)
        self.default_timeout = default_timeout
        self.early_ttl = int(early_ttl)
        self.queue = make_queue(redis, queue_name)
        self.prefix = prefix
        self.deadlines_key = prefix + "deadlines"
        self._settle_script = redis.register_script(_SETTLE_LUA)
        self._create_script = redis.register_script(_CREATE_LUA)
        self._release_script = redis.register_script(_RELEASE_LUA)
        self._retry = Retry(max=len(FOLLOW_UP_RETRY_INTERVALS), interval=FOLLOW_UP_RETRY_INTERVALS)

    # --- keys ---------------------------------------------------------------------------------

    def _key(self, kind: str, async_id: str) -> str:
        """``{prefix}{kind}:{id}``."""
        return f"{self.prefix}{kind}:{async_id}"

    def _job_keys(self, async_id: str) -> list[str]:
        """The RQ keys the delivery job of ``async_id`` is written to."""
        job_key = self.queue.job_class.redis_job_namespace_prefix + delivery_job_id(async_id)
        return [self.queue.redis_queues_keys, self.queue.key, job_key]

    def delivery_job(self, async_id: str) -> list[Any]:
        """The delivery job's id and hash (field, value, ...), built by RQ itself."""
        job_id = delivery_job_id(async_id)
        job = self.queue.create_job(
            DELIVER_FUNC,
            args=(async_id,),
            job_id=job_id,
            timeout=DELIVER_TIMEOUT,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            retry=self._retry,
            description=f"deliver async result {async_id}",
            status=JobStatus.QUEUED,
        )
        job.origin = self.queue.name
        job.enqueued_at = rq_now()
        mapping = job.to_dict()
        mapping["status"] = JobStatus.QUEUED.value
        return [job_id, *(part for pair in mapping.items() for part in pair)]

    # --- creating -----------------------------------------------------------------------------

    @staticmethod
    def new_id() -> str:
        """A client-chosen async id: 32 hex digits (the API allows 1-40 letters, digits and dashes)."""
        return uuid.uuid4().hex

    def create(
        self,
        ep: str,
        method: str,
        uri: str,
        *,
        async_id: str | None = None,
        handler: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Write the pending record of a request about to be sent; return its id."""
        async_id = async_id or self.new_id()
        if not CLIENT_ID.match(async_id):
            raise ValueError(f"invalid async id {async_id!r}: 1-40 letters, digits and dashes")
        return self._create(async_id, ep, method, uri, handler, timeout)

    def track(
        self,
        async_id: str,
        ep: str,
        method: str,
        uri: str,
        *,
        handler: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Track a server-chosen id (legacy 202 ``async-response-id``); an early response settles it."""
        if not ANY_ID.match(async_id):
            raise ValueError(f"invalid async id {async_id!r}")
        return self._create(async_id, ep, method, uri, handler, timeout)

    def _create(
        self, async_id: str, ep: str, method: str, uri: str, handler: str | None, timeout: float | None
    ) -> str:
        """Run the create script: pending, or settled at once by an early response (its delivery queued)."""
        timeout = self.default_timeout if timeout is None else timeout
        now = time.time()
        record = {
            "id": async_id,
            "ep": ep,
            "path": normalize_uri(uri),
            "method": method.upper(),
            "handler": handler,
            "created_at": now,
            "deadline": now + timeout,
        }
        ttl = int(timeout) + self.result_ttl + 60
        keys = [
            self._key("rec", async_id),
            self._key("early", async_id),
            self.deadlines_key,
            self._key("res", async_id),
            self._key("wake", async_id),
            *self._job_keys(async_id),
        ]
        job = self.delivery_job(async_id) if handler else [""]
        args = [async_id, json.dumps(record), ttl, now + timeout, self.result_ttl, *job]
        code = int(run_script(self._create_script, keys, args)[0])
        if code == 0:
            raise ValueError(f"async id {async_id!r} is already in use")
        if code == 2:
            queued = f"; delivery to {handler} queued as job {job[0]}" if handler else ""
            logger.info("async %s: its response came early and settles it now%s", async_id, queued)
        return async_id

    def request(
        self,
        client: DMClient,
        ep: str,
        method: str,
        path: str,
        payload: bytes | str | None = None,
        ct: str | None = None,
        handler: str | None = None,
        *,
        timeout: float | None = None,
        accept: str | None = None,
        async_id: str | None = None,
    ) -> str:
        """Create the record, then send the device request; a failed POST marks the record failed."""
        async_id = self.create(ep, method, path, async_id=async_id, handler=handler, timeout=timeout)
        try:
            client.device_request(ep, method, path, async_id, payload=payload, content_type=ct, accept=accept)
        except DMApiError as exc:
            self.fail(async_id, exc.status, f"{exc.error_type}: {exc.message} (request_id={exc.request_id})")
            raise
        except Exception as exc:
            self.fail(async_id, None, f"{type(exc).__name__}: the request was not sent")
            raise
        return async_id

    # --- settling -----------------------------------------------------------------------------

    def resolve(self, response: Response) -> AsyncResult | None:
        """Settle a request with its async-response; the stored result only for the call that settled it.

        A response whose record does not exist yet is kept as early; a duplicate returns None.
        """
        if not response.id:
            logger.warning("async-response without an id ignored")
            return None
        doc = json.dumps(result_doc(response))
        return self._settle(response.id, doc, doc)

    def fail(self, async_id: str, status: int | None, error: str) -> AsyncResult | None:
        """Settle a request as failed (its POST was refused or not sent)."""
        doc = result_doc(Response(async_id, status=status, error=error), state=FAILED)
        return self._settle(async_id, json.dumps(doc), "")

    def expire_overdue(self, now: float | None = None, limit: int = 1000) -> list[AsyncResult]:
        """Time out pending records past their deadline, each in one atomic step; return their results.

        A Redis error stops the pass: the ids not settled yet stay in ``deadlines`` for the next one.
        """
        now = time.time() if now is None else now
        ids = self.redis.zrangebyscore(self.deadlines_key, "-inf", now, start=0, num=limit)
        results = []
        for raw in ids:
            async_id = _text(raw) or ""
            timed_out = Response(async_id, status=TIMEOUT_STATUS, error=TIMEOUT_ERROR)
            result = self._settle(async_id, json.dumps(result_doc(timed_out, state=TIMEOUT, now=now)), "")
            if result is not None:
                logger.warning("async request %s to %s %s timed out", async_id, result.ep, result.path)
                results.append(result)
        return results

    def _settle(self, async_id: str, doc: str, early: str) -> AsyncResult | None:
        """Run the settle script (again with the delivery job when the record names a handler)."""
        keys = [
            *(self._key(kind, async_id) for kind in ("rec", "res", "early", "wake")),
            self.deadlines_key,
            *self._job_keys(async_id),
        ]
        args: list[Any] = [async_id, doc, self.result_ttl, early, self.early_ttl, ""]
        reply = run_script(self._settle_script, keys, args)
        if int(reply[0]) == 5:
            reply = run_script(self._settle_script, keys, args[:5] + self.delivery_job(async_id))
        code = int(reply[0])
        if code == 0:
            logger.debug("async %s: already settled; duplicate ignored", async_id)
            return None
        if code == 2:
            logger.info("async %s: response before its record; kept %d s", async_id, self.early_ttl)
            return None
        if code == 3:
            return None
        result = self._build(async_id, json.loads(_text(reply[1]) or "{}"), json.loads(doc))
        job = _text(reply[2])
        logger.info(
            "async %s: %s status=%s error=%s%s",
            async_id, result.state, result.status, result.error, f"; delivery job {job}" if job else "",
        )  # fmt: skip
        return result

    # --- the named handler's one call ---------------------------------------------------------

    def claim_call(self, async_id: str, token: str) -> str | None:
        """Claim the named handler's call before making it: None when claimed, else the holder.

        The holder is ``done`` after a call returned, or the token of a run that claimed the call and
        never recorded its end (its worker died during the call, or right after it).
        """
        key = self._key("call", async_id)
        if self.redis.set(key, token, nx=True, ex=self.result_ttl):
            return None
        return _text(self.redis.get(key)) or CALL_DONE

    def finish_call(self, async_id: str) -> None:
        """Record that the named handler's call returned (delivered, or its retry scheduled)."""
        self.redis.set(self._key("call", async_id), CALL_DONE, ex=self.result_ttl)

    def release_call(self, async_id: str, token: str) -> None:
        """Drop this run's claim (the call failed before it was made durable): a re-run calls again."""
        run_script(self._release_script, [self._key("call", async_id)], [token])

    # --- reading and waiting ------------------------------------------------------------------

    def _build(self, async_id: str, rec: Mapping[str, Any], doc: Mapping[str, Any]) -> AsyncResult:
        """An AsyncResult from a record and a result doc, as stored."""
        state = str(doc.get("state") or RESOLVED)
        return AsyncResult(
            id=async_id,
            ep=rec.get("ep"),
            path=rec.get("path"),
            method=rec.get("method"),
            status=doc.get("status"),
            payload_b64=doc.get("payload"),
            ct=doc.get("ct"),
            error=doc.get("error"),
            timed_out=state == TIMEOUT,
            resolved_at=doc.get("resolved_at"),
            state=state,
            handler=rec.get("handler"),
            max_age=doc.get("max_age"),
        )

    def _unresolved(self, async_id: str, rec: Mapping[str, Any] | None, waited: float | None) -> AsyncResult:
        """The result of a request that is still pending (or unknown)."""
        state = PENDING if rec is not None else UNKNOWN
        rec = rec or {}
        error = f"{TIMEOUT_ERROR}: no async-response within {waited:g} s" if waited is not None else None
        return AsyncResult(
            id=async_id,
            ep=rec.get("ep"),
            path=rec.get("path"),
            method=rec.get("method"),
            status=None,
            payload_b64=None,
            ct=None,
            error=error if state == PENDING else "unknown async id (never created, or expired)",
            timed_out=waited is not None and state == PENDING,
            resolved_at=None,
            state=state,
            handler=rec.get("handler"),
        )

    def _load(self, async_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The record and the result doc, either None when absent."""
        rec, res = self.redis.mget([self._key("rec", async_id), self._key("res", async_id)])
        rec_text, res_text = _text(rec), _text(res)
        return (json.loads(rec_text) if rec_text else None, json.loads(res_text) if res_text else None)

    def get(self, async_id: str) -> AsyncResult:
        """The current state of a request, without waiting."""
        rec, res = self._load(async_id)
        if res is not None:
            return self._build(async_id, rec or {}, res)
        return self._unresolved(async_id, rec, None)

    def _block_slice(self, remaining: float) -> float:
        """How long one blocking call may last: below the client's socket timeout."""
        kwargs = getattr(getattr(self.redis, "connection_pool", None), "connection_kwargs", {})
        socket_timeout = kwargs.get("socket_timeout")
        limit = max(0.1, float(socket_timeout) - 0.5) if socket_timeout else 30.0
        return max(0.01, min(remaining, limit))

    def wait(self, async_id: str, timeout: float) -> AsyncResult:
        """Block until the request resolves (from any process) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        wake = self._key("wake", async_id)
        while True:
            rec, res = self._load(async_id)
            if res is not None:
                return self._build(async_id, rec or {}, res)
            if rec is None:
                return self._unresolved(async_id, None, None)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._unresolved(async_id, rec, timeout)
            self.redis.brpoplpush(wake, wake, timeout=self._block_slice(remaining))

    def call(
        self,
        client: DMClient,
        ep: str,
        method: str,
        path: str,
        payload: bytes | str | None = None,
        ct: str | None = None,
        *,
        timeout: float | None = None,
        accept: str | None = None,
    ) -> AsyncResult:
        """Send a device request and wait for its result (a worker must be resolving responses)."""
        timeout = self.default_timeout if timeout is None else timeout
        async_id = self.request(client, ep, method, path, payload, ct, timeout=timeout, accept=accept)
        return self.wait(async_id, timeout)


def sweep_forever(tracker: AsyncTracker, stop: threading.Event, interval: float = 2.0) -> None:
    """Run ``expire_overdue`` every ``interval`` s until ``stop``; a Redis outage is logged once when it
    starts and once when it ends, and sweeps resume once Redis answers.

    Each timeout is settled with its delivery job in one script, so a stop between two ids loses
    nothing: the rest are still in ``deadlines`` for the next sweep (of this or any other worker).
    """
    outage = Outage(logger, "async sweeper")
    while not stop.wait(interval):
        try:
            tracker.expire_overdue()
        except RedisError as exc:
            outage.failed(exc)
            continue
        outage.recovered()


def request_ids(tracker: AsyncTracker, limit: int = 10_000) -> list[str]:
    """Ids of the requests whose records still exist (pending and settled), sorted; at most ``limit``.

    Records expire after their timeout plus ``result_ttl``, so the set is bounded by the request rate.
    """
    pattern = f"{tracker.prefix}rec:*"
    start = len(tracker.prefix) + len("rec:")
    ids = []
    for key in tracker.redis.scan_iter(match=pattern, count=1000):
        ids.append((_text(key) or "")[start:])
        if len(ids) >= limit:
            break
    return sorted(ids)
