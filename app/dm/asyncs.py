"""Async device requests, tracked in Redis and resolved exactly once, waited for from any process.

A request's pending record is written BEFORE the request is sent (``POST /v2/device-requests/{ep}
?async-id=ID`` with a client-chosen id), so its async-response can never arrive unknown. The legacy flow
(``GET /v2/endpoints/{ep}/{path}`` -> 202 with a server-chosen id) can lose that race: an async-response
that arrives before its record is kept as an *early* response (with a TTL) and matched when the record
is created (:meth:`AsyncTracker.track`).

Keys, under ``devicehooks:async:``:

- ``rec:{id}``   the record (JSON: ep, path, method, handler, created_at, deadline);
- ``res:{id}``   the result (JSON); its existence is the "resolved" marker, set only by one Lua script;
- ``early:{id}`` an async-response that came before its record (SET NX: the first delivery wins);
- ``wake:{id}``  a one-token list; waiters ``BRPOPLPUSH`` it onto itself, so every waiter wakes;
- ``handoff:{id}`` the job that resolved a request naming a handler, until it confirmed the hand-off;
- ``deadlines``  a sorted set of pending ids by deadline, swept by :meth:`AsyncTracker.expire_overdue`.

How the worker uses it (the worker runs the handlers; the web side and the CLI only create and wait)::

    tracker = AsyncTracker(redis, queue_name=settings.queue_name)
    for item in message.get("async-responses", []):
        result = tracker.resolve(item, owner=job_id)  # AsyncResult the FIRST time an id resolves, else None
        if result is not None and result.handler:
            run_handler(result.handler, result)
            tracker.confirm_handoff([result.id])    # until then a re-run of job_id gets the result again
    # every few seconds (after each batch job and on an idle timer), or sweep_forever() in a thread:
    for result in tracker.expire_overdue():     # pending records past their deadline -> timed out
        if result.handler:
            run_handler(result.handler, result)

Timeouts are only as punctual as the sweep: run it every 1-5 s. A record is never stuck for good
without one: it expires from Redis after its timeout plus ``result_ttl``.

An early response matched by :meth:`track` is put back on the batch queue as a one-item batch
(``source="async-early"``), so that it, too, is resolved by the worker, which runs its handler.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from app.batches import BatchQueue
from app.dm.client import DMClient, normalize_uri
from app.errors import DMApiError
from app.weather import Outage

logger = logging.getLogger(__name__)

Decoder = Callable[[str | None, str | None, str], tuple[Any, str | None]]

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

# KEYS: rec, res, early, wake, deadlines, handoff.
# ARGV: id, result doc, result ttl, early item ('' = don't keep one), early ttl, owner ('' = none).
# Returns {0, ''} already resolved, {1, rec} resolved now, {2, ''} kept as early, {3, ''} no record,
# {4, rec, res} resolved earlier by this same owner, whose hand-off to the named handler is unconfirmed.
# Resolving a record that names a handler with an owner (the worker's job id) leaves a hand-off marker
# holding the owner until confirm_handoff(): a job killed in between resolves its ids again when it re-runs.
_RESOLVE_LUA = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  if ARGV[6] ~= '' and redis.call('GET', KEYS[6]) == ARGV[6] then
    return {4, redis.call('GET', KEYS[1]) or '{}', redis.call('GET', KEYS[2])}
  end
  return {0, ''}
end
local rec = redis.call('GET', KEYS[1])
if not rec then
  redis.call('ZREM', KEYS[5], ARGV[1])
  if ARGV[4] ~= '' then
    redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5], 'NX')
    return {2, ''}
  end
  return {3, ''}
end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('DEL', KEYS[4])
redis.call('LPUSH', KEYS[4], '1')
redis.call('EXPIRE', KEYS[4], ARGV[3])
if ARGV[6] ~= '' then
  local handler = cjson.decode(rec)['handler']
  if type(handler) == 'string' and handler ~= '' then
    redis.call('SET', KEYS[6], ARGV[6], 'EX', ARGV[3])
  end
end
return {1, rec}
"""

# KEYS: rec, early, deadlines, res. ARGV: id, record, record ttl, deadline.
# Returns {0, ''} id in use, {1, ''} created, {2, early item} created and an early response was waiting.
_CREATE_LUA = """
if redis.call('EXISTS', KEYS[4]) == 1 then return {0, ''} end
if not redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3], 'NX') then return {0, ''} end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
local early = redis.call('GET', KEYS[2])
if early then
  redis.call('DEL', KEYS[2])
  return {2, early}
end
return {1, ''}
"""


def default_decoder(payload_b64: str | None, ct: str | None, path: str) -> tuple[Any, str | None]:
    """Decode with the workers' decoding core, imported only when a payload is decoded."""
    from workers.decoding import decode_value

    return decode_value(payload_b64, ct, path)


def _text(value: Any) -> str | None:
    """Redis replies as text (bytes decoded as UTF-8)."""
    if value is None:
        return None
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int | None:
    """An int from an int or a numeric string (``status`` and ``max-age`` arrive as either)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _error(value: Any) -> str | None:
    """The item's error: ``null`` and empty are no error."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value)


def resource_of(uri: str | None) -> str:
    """The resource path of a request URI (without its query), for typing the decoded value."""
    return (uri or "/").split("?", 1)[0]


@dataclass(frozen=True)
class AsyncResult:
    """The outcome of an async request; ``state`` is resolved, timeout, failed, pending or unknown."""

    id: str
    ep: str | None
    path: str | None
    method: str | None
    status: int | None
    payload_b64: str | None
    ct: str | None
    value: Any
    error: str | None
    timed_out: bool
    resolved_at: float | None
    state: str = RESOLVED
    handler: str | None = None
    max_age: int | None = None
    decode_error: str | None = None

    @property
    def ok(self) -> bool:
        """Resolved with a 2xx status and no error."""
        in_2xx = self.status is not None and 200 <= self.status < 300
        return self.state == RESOLVED and in_2xx and not self.error

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return asdict(self)


def result_doc(item: Mapping[str, Any], state: str = RESOLVED, now: float | None = None) -> dict[str, Any]:
    """The stored form of an async-response item (status/max-age normalised to int, null error = none)."""
    payload = item.get("payload")
    ct = item.get("ct")
    return {
        "state": state,
        "status": _int(item.get("status")),
        "payload": payload if isinstance(payload, str) and payload else None,
        "ct": ct if isinstance(ct, str) and ct else None,
        "error": _error(item.get("error")),
        "max_age": _int(item.get("max-age")),
        "resolved_at": time.time() if now is None else now,
    }


class AsyncTracker:
    """Creates, resolves, expires and waits for async requests in Redis."""

    def __init__(
        self,
        redis: Redis,
        result_ttl: int = 3600,
        default_timeout: float = 60,
        early_ttl: int = 600,
        queue_name: str = "devicehooks",
        decoder: Decoder | None = None,
        prefix: str = PREFIX,
    ) -> None:
        self.redis = redis
        self.result_ttl = int(result_ttl)
        self.default_timeout = default_timeout
        self.early_ttl = int(early_ttl)
        self.queue_name = queue_name
        self.decoder = decoder or default_decoder
        self.prefix = prefix
        self.deadlines_key = prefix + "deadlines"
        self._resolve_script = redis.register_script(_RESOLVE_LUA)
        self._create_script = redis.register_script(_CREATE_LUA)
        self._batches: BatchQueue | None = None

    # --- keys ---------------------------------------------------------------------------------

    def _key(self, kind: str, async_id: str) -> str:
        """``{prefix}{kind}:{id}``."""
        return f"{self.prefix}{kind}:{async_id}"

    def _resolve_keys(self, async_id: str) -> list[str]:
        """Keys of the resolve script."""
        kinds = ("rec", "res", "early", "wake")
        return [
            *(self._key(kind, async_id) for kind in kinds),
            self.deadlines_key,
            self._key("handoff", async_id),
        ]

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
        """Track a server-chosen id (legacy 202 ``async-response-id``); an early response is matched."""
        if not ANY_ID.match(async_id):
            raise ValueError(f"invalid async id {async_id!r}")
        return self._create(async_id, ep, method, uri, handler, timeout)

    def _create(
        self, async_id: str, ep: str, method: str, uri: str, handler: str | None, timeout: float | None
    ) -> str:
        """Run the create script; requeue an early response that was waiting for this record."""
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
        ]
        code, early = self._create_script(keys=keys, args=[async_id, json.dumps(record), ttl, now + timeout])
        if int(code) == 0:
            raise ValueError(f"async id {async_id!r} is already in use")
        if int(code) == 2:
            self._requeue_early(async_id, _text(early) or "{}")
        return async_id

    def _requeue_early(self, async_id: str, item_json: str) -> None:
        """Put an early async-response back on the batch queue, for the worker to resolve."""
        body = b'{"async-responses": [' + item_json.encode("utf-8") + b"]}"
        if self._batches is None:
            self._batches = BatchQueue(self.redis, self.queue_name)
        job_id = self._batches.enqueue(body, f"early-{async_id}", source="async-early")
        logger.info("async %s: its response came early; requeued as job %s", async_id, job_id)

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

    # --- resolving ----------------------------------------------------------------------------

    def resolve(self, response: Mapping[str, Any], owner: str = "") -> AsyncResult | None:
        """Resolve one async-responses item; the AsyncResult only for the call that resolved it.

        With an ``owner`` (the worker's job id), a result for a named handler stays owed to that owner
        until :meth:`confirm_handoff`: the same owner resolving the id again (its job re-ran after a
        crash) gets the stored result back instead of None, so the handler is not skipped.
        """
        async_id = _text(response.get("id"))
        if not async_id:
            logger.warning("async-response without an id ignored")
            return None
        doc = result_doc(response)
        early = json.dumps(dict(response), separators=(",", ":"), default=str)
        return self._finish(async_id, doc, early, owner)

    def confirm_handoff(self, async_ids: list[str]) -> None:
        """The named handlers of these ids have their results (delivered, or retries scheduled)."""
        if async_ids:
            self.redis.delete(*(self._key("handoff", async_id) for async_id in async_ids))

    def fail(self, async_id: str, status: int | None, error: str) -> AsyncResult | None:
        """Resolve a request as failed (its POST was refused or not sent)."""
        doc = result_doc({"status": status, "error": error}, state=FAILED)
        return self._finish(async_id, doc, "")

    def _finish(self, async_id: str, doc: dict[str, Any], early: str, owner: str = "") -> AsyncResult | None:
        """Run the resolve script; build the result when this call resolved the id."""
        reply = self._resolve_script(
            keys=self._resolve_keys(async_id),
            args=[async_id, json.dumps(doc), self.result_ttl, early, self.early_ttl, owner],
        )
        code, rec = int(reply[0]), reply[1]
        if code == 4:
            logger.warning(
                "async %s: resolved by %s before it stopped; handing it over again", async_id, owner
            )
            stored = json.loads(_text(reply[2]) or "{}")
            return self._build(async_id, json.loads(_text(rec) or "{}"), stored)
        if code == 0:
            logger.debug("async %s: already resolved; duplicate ignored", async_id)
            return None
        if code == 2:
            logger.info("async %s: response before its record; kept %d s", async_id, self.early_ttl)
            return None
        if code == 3:
            return None
        result = self._build(async_id, json.loads(_text(rec) or "{}"), doc)
        logger.info("async %s: %s status=%s error=%s", async_id, result.state, result.status, result.error)
        return result

    def expire_overdue(self, now: float | None = None, limit: int = 1000) -> list[AsyncResult]:
        """Time out pending records past their deadline; return their results (state ``timeout``)."""
        now = time.time() if now is None else now
        ids = self.redis.zrangebyscore(self.deadlines_key, "-inf", now, start=0, num=limit)
        results = []
        for raw in ids:
            async_id = _text(raw) or ""
            doc = result_doc({"status": TIMEOUT_STATUS, "error": TIMEOUT_ERROR}, state=TIMEOUT, now=now)
            result = self._finish(async_id, doc, "")
            if result is not None:
                results.append(result)
        return results

    # --- reading and waiting ------------------------------------------------------------------

    def _build(self, async_id: str, rec: Mapping[str, Any], doc: Mapping[str, Any]) -> AsyncResult:
        """An AsyncResult from a record and a result doc, its payload decoded."""
        state = str(doc.get("state") or RESOLVED)
        payload = doc.get("payload")
        value, decode_error = (None, None)
        if payload:
            value, decode_error = self.decoder(payload, doc.get("ct"), resource_of(rec.get("path")))
        return AsyncResult(
            id=async_id,
            ep=rec.get("ep"),
            path=rec.get("path"),
            method=rec.get("method"),
            status=doc.get("status"),
            payload_b64=payload,
            ct=doc.get("ct"),
            value=value,
            error=doc.get("error"),
            timed_out=state == TIMEOUT,
            resolved_at=doc.get("resolved_at"),
            state=state,
            handler=rec.get("handler"),
            max_age=doc.get("max_age"),
            decode_error=decode_error,
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
            value=None,
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


def sweep_forever(
    tracker: AsyncTracker,
    stop: threading.Event,
    interval: float = 2.0,
    on_timeout: Callable[[AsyncResult], None] | None = None,
) -> None:
    """Run ``expire_overdue`` every ``interval`` s until ``stop``; timed-out results go to ``on_timeout``.

    A Redis outage skips sweeps (logged once when it starts and once when it ends) until Redis is back.
    """
    outage = Outage(logger, "async sweeper")
    while not stop.wait(interval):
        try:
            expired = tracker.expire_overdue()
        except RedisError as exc:
            outage.failed(exc)
            continue
        outage.recovered()
        for result in expired:
            if on_timeout is not None:
                on_timeout(result)


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
