"""The websocket and long-poll channels, for apps without a public callback URL.

``devicehooks channel`` (``DEVICEHOOKS_CHANNEL=websocket|pull``) runs one of them as a long-lived
process. Each batch it receives goes to the very same queue as the callback's PUTs
(``BatchQueue.enqueue(body, request_id, source="websocket"|"pull")``), so the workers do not know the
difference. Only one channel exists per API key: the callback (or the other channel) is deleted first,
and a Redis lock makes sure only one process runs the channel (the others stand by).

- websocket: ``PUT /v2/notification/websocket``, then ``wss://…/v2/notification/websocket-connect``
  with the key in the ``Authorization`` header and in ``Sec-WebSocket-Protocol: wss,pelion_<key>``
  (the spec's form for clients that cannot send the header); each text frame is one batch;
- pull (deprecated by Device Management, for development): ``GET /v2/notification/pull`` in a loop;
  a 200 body is one batch, a 204 means nothing came.

A received batch has no ack on these channels, so a failed enqueue (Redis down) is retried until it
succeeds rather than dropped. Reconnects use exponential backoff with jitter.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from typing import Any

import websocket
from redis import Redis
from redis.exceptions import LockError, RedisError

from app.backoff import jittered
from app.batches import BatchQueue
from app.dm.client import DMClient
from app.errors import DevicehooksError, DMApiError, DMBadRequest, DMConflict, DMNotFound, DMUnauthorized

logger = logging.getLogger(__name__)

LOCK_NAME = "devicehooks:dm:channel:lock"
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_UNEXPECTED = 1011


class ChannelFatal(DevicehooksError):
    """The channel cannot run (the API key was refused); retrying will not help."""

    code = 401
    type = "invalid_auth"


def close_code(frame: Any) -> int | None:
    """The status code of a close frame, or None when it carries none."""
    data = getattr(frame, "data", b"") or b""
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    return int.from_bytes(data[:2], "big") if len(data) >= 2 else None


def new_request_id(source: str) -> str:
    """A request id for a batch that came without one."""
    return f"{source}-{uuid.uuid4().hex[:24]}"


class ChannelRunner:
    """Common loop of both channels: lock, prepare, session, reconnect with backoff."""

    source = "channel"
    mechanism = ""

    def __init__(
        self,
        client: DMClient,
        redis: Redis,
        batches: BatchQueue,
        *,
        lock_ttl: float = 30.0,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        self.client = client
        self.redis = redis
        self.batches = batches
        self.lock_ttl = lock_ttl
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.batches_received = 0
        self.connected = threading.Event()

    # --- the queue ------------------------------------------------------------------------------

    def deliver(self, body: bytes, halt: threading.Event) -> str | None:
        """Enqueue one received batch, retrying while Redis is unavailable; the job id."""
        request_id = new_request_id(self.source)
        attempt = 0
        while True:
            try:
                job_id = self.batches.enqueue(body, request_id, source=self.source)
            except RedisError as exc:
                delay = self._delay(attempt)
                logger.error("%s: cannot queue a batch (%s); retry in %.1f s", self.source, exc, delay)
                if halt.wait(delay) and attempt > 3:
                    logger.error("%s: stopped; batch not queued (request_id=%s)", self.source, request_id)
                    return None
                attempt += 1
                continue
            self.batches_received += 1
            logger.info(
                "%s: queued batch request_id=%s job=%s bytes=%d", self.source, request_id, job_id, len(body)
            )
            return job_id

    # --- the loop -----------------------------------------------------------------------------

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter, capped."""
        return jittered(attempt, self.backoff, self.max_backoff)

    def clear_other_channels(self) -> None:
        """Delete the callback or the other channel type, so this one can exist."""
        mechanism = self.client.get_channel()
        if mechanism == "CALLBACK":
            logger.warning("%s: deleting the callback registration (one channel per API key)", self.source)
            self.client.delete_callback()
        elif mechanism == "WEB_SOCKET" and self.mechanism != "WEB_SOCKET":
            self.client.delete_websocket()
        elif mechanism == "LONG_POLLING" and self.mechanism != "LONG_POLLING":
            self.client.delete_pull()

    def prepare(self) -> None:
        """Make this channel the account's channel."""
        self.clear_other_channels()

    def session(self, halt: threading.Event) -> None:
        """Receive until the connection ends or ``halt`` is set."""
        raise NotImplementedError

    def _acquire(self, lock: Any, stop: threading.Event) -> bool:
        """Take the channel lock, standing by while another process holds it."""
        announced = False
        while not stop.is_set():
            try:
                if lock.acquire(blocking=False):
                    return True
            except RedisError as exc:
                logger.warning("%s: Redis unavailable (%s)", self.source, type(exc).__name__)
            if not announced:
                logger.info("%s: another process runs the channel; standing by", self.source)
                announced = True
            stop.wait(self.lock_ttl / 3)
        return False

    def _keep_lock(self, lock: Any, stop: threading.Event, halt: threading.Event) -> None:
        """Extend the lock while the session runs; set ``halt`` on ``stop`` or when the lock is lost."""
        renew_at = time.monotonic() + self.lock_ttl / 3
        while not halt.is_set() and not stop.wait(0.1):
            if time.monotonic() < renew_at:
                continue
            try:
                lock.reacquire()
            except (LockError, RedisError) as exc:
                logger.error("%s: lost the channel lock (%s); stopping this session", self.source, exc)
                break
            renew_at = time.monotonic() + self.lock_ttl / 3
        halt.set()

    def run(self, stop: threading.Event) -> None:
        """Run the channel until ``stop`` is set; ChannelFatal when the API key is refused."""
        while not stop.is_set():
            lock = self.redis.lock(LOCK_NAME, timeout=self.lock_ttl)
            if not self._acquire(lock, stop):
                return
            halt = threading.Event()
            keeper = threading.Thread(target=self._keep_lock, args=(lock, stop, halt), daemon=True)
            keeper.start()
            try:
                self._run_locked(halt)
            finally:
                halt.set()
                keeper.join()
                self.connected.clear()
                with contextlib.suppress(LockError, RedisError):
                    lock.release()

    def _run_locked(self, halt: threading.Event) -> None:
        """Prepare and run sessions, reconnecting with backoff, until ``halt`` is set."""
        attempt = 0
        while not halt.is_set():
            received = self.batches_received
            try:
                self.prepare()
                self.session(halt)
            except DMUnauthorized as exc:
                raise ChannelFatal(f"{self.source}: the API key was refused: {exc}") from None
            except (DMApiError, websocket.WebSocketException, OSError) as exc:
                logger.warning("%s: %s: %s", self.source, type(exc).__name__, exc)
            except Exception:
                logger.exception("%s: unexpected error; reconnecting", self.source)
            if halt.is_set():
                return
            attempt = 0 if self.batches_received > received else attempt + 1
            delay = self._delay(attempt)
            logger.info("%s: reconnecting in %.1f s", self.source, delay)
            halt.wait(delay)


class WebsocketChannel(ChannelRunner):
    """The websocket channel."""

    source = "websocket"
    mechanism = "WEB_SOCKET"

    def __init__(
        self,
        client: DMClient,
        redis: Redis,
        batches: BatchQueue,
        *,
        ping_interval: float = 30.0,
        poll_interval: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(client, redis, batches, **kwargs)
        self.ping_interval = ping_interval
        self.poll_interval = poll_interval

    def prepare(self) -> None:
        """Delete the callback or pull channel, then register the websocket channel."""
        self.clear_other_channels()
        self.client.put_websocket()

    def connect(self) -> websocket.WebSocket:
        """Open the websocket (the key in Authorization and Sec-WebSocket-Protocol, never logged)."""
        key = self.client.api_key
        ws = websocket.WebSocket()
        ws.connect(
            self.client.websocket_url(),
            header=[f"Authorization: Bearer {key}", f"Sec-WebSocket-Protocol: wss,pelion_{key}"],
            timeout=self.client.timeout,
        )
        return ws

    def session(self, halt: threading.Event) -> None:
        """Receive frames until the socket closes or ``halt`` is set."""
        try:
            ws = self.connect()
        except websocket.WebSocketBadStatusException as exc:
            if exc.status_code in (401, 403):
                raise DMUnauthorized(exc.status_code, "invalid_auth", "websocket-connect refused") from None
            raise
        logger.info("websocket: connected")
        self.connected.set()
        try:
            self._receive(ws, halt)
        finally:
            self.connected.clear()
            ws.close(timeout=1)

    def _receive(self, ws: websocket.WebSocket, halt: threading.Event) -> None:
        """The receive loop: batches to the queue, pings to keep the socket open, close codes handled."""
        ws.settimeout(self.poll_interval)
        last_ping = time.monotonic()
        while not halt.is_set():
            try:
                opcode, frame = ws.recv_data_frame(control_frame=True)
            except websocket.WebSocketTimeoutException:
                if time.monotonic() - last_ping >= self.ping_interval:
                    ws.ping()
                    last_ping = time.monotonic()
                continue
            except websocket.WebSocketConnectionClosedException:
                logger.warning("websocket: connection closed")
                return
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                data = frame.data
                body = data.encode("utf-8") if isinstance(data, str) else bytes(data)
                if body.strip():
                    self.deliver(body, halt)
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                self._closed(close_code(frame))
                return

    def _closed(self, code: int | None) -> None:
        """Log a close by the server; a policy violation means the key was refused."""
        if code == CLOSE_POLICY_VIOLATION:
            raise DMUnauthorized(401, "invalid_auth", "the websocket was closed with 1008 (API key refused)")
        reasons = {
            CLOSE_GOING_AWAY: "going away (another socket, the channel deleted, or a server restart)",
            CLOSE_UNEXPECTED: "unexpected condition (no channel?)",
        }
        logger.warning("websocket: closed by the server with %s: %s", code, reasons.get(code or 0, "closed"))


class PullChannel(ChannelRunner):
    """The (deprecated) long-poll channel."""

    source = "pull"
    mechanism = "LONG_POLLING"

    def __init__(
        self, client: DMClient, redis: Redis, batches: BatchQueue, *, wait: float = 90.0, **kwargs: Any
    ) -> None:
        super().__init__(client, redis, batches, **kwargs)
        self.wait = wait

    def session(self, halt: threading.Event) -> None:
        """Poll until ``halt`` is set; errors end the session (and the loop reconnects with backoff)."""
        while not halt.is_set():
            try:
                body = self.client.pull(wait=self.wait)
            except DMNotFound:
                logger.warning("pull: 410, the channel is being purged; polling again later")
                return
            except DMConflict:
                logger.warning("pull: 409, another long poll is open for this API key")
                return
            except DMBadRequest as exc:
                logger.warning("pull: %s (another channel type exists?)", exc.message)
                return
            self.connected.set()
            if body:
                self.deliver(body, halt)


def runner_for(
    mode: str, client: DMClient, redis: Redis, batches: BatchQueue, **kwargs: Any
) -> ChannelRunner:
    """The runner of ``DEVICEHOOKS_CHANNEL`` (websocket or pull)."""
    if mode == "websocket":
        return WebsocketChannel(client, redis, batches, **kwargs)
    if mode == "pull":
        return PullChannel(client, redis, batches, **kwargs)
    raise ValueError(f"no channel runner for {mode!r}: use websocket or pull")
