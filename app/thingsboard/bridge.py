"""``devicehooks thingsboard``: the long-lived bridge process (one gateway connection to ThingsBoard).

Loop: connect (jittered backoff, 0.5 s doubling to 30 s, while ThingsBoard or Redis is unreachable) -> re-send
``connect`` for every live device (ThingsBoard dropped the child sessions with the gateway's) ->
re-publish this consumer's unacknowledged stream entries -> read new entries, group them into gateway
messages, publish at QoS 1, wait for every PUBACK, then XACK+XDEL them. A lost connection between
publish and PUBACK leaves the entries pending, so they go out again after the reconnect (at least
once, in order). SIGTERM stops reading, lets the chunk in flight and the RPCs in flight finish
(their replies published), then disconnects.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from app.backoff import jittered
from app.config import Settings
from app.dm.asyncs import AsyncResult, AsyncTracker
from app.dm.client import DMClient
from app.errors import DMApiError
from app.thingsboard import rpc, stream
from app.thingsboard.gateway import ConnectionLost, Gateway
from app.thingsboard.mapping import ATTRIBUTES, CONNECT, RPC, MappingError, Message, encode, group, validate

logger = logging.getLogger(__name__)

CHUNK = 2000
BLOCK_MS = 500
PUBACK_TIMEOUT = 30.0
BACKOFF_START, BACKOFF_MAX = 0.5, 30.0
RPC_THREADS = 8


class Bridge:
    """Owns the gateway connection, the stream consumer and the RPC threads."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        client: DMClient | None,
        decode: Callable[[AsyncResult], Any],
    ) -> None:
        self.settings = settings
        self.decode = decode
        self.redis = redis
        self.client = client
        self.tracker = AsyncTracker(redis, queue_name=settings.queue_name)
        self.stopping = threading.Event()
        self.gateway: Gateway | None = None
        self.rpcs = ThreadPoolExecutor(RPC_THREADS, thread_name_prefix="tb-rpc")
        self.max_payload = settings.thingsboard_max_payload

    # --- lifecycle ----------------------------------------------------------------------------

    def stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        """Ask the loop to drain and exit (the SIGTERM/SIGINT handler)."""
        if not self.stopping.is_set():
            logger.info("thingsboard: stopping: finishing the messages and RPCs in flight")
        self.stopping.set()

    def run(self) -> int:
        """Connect and pump until stopped; reconnect with backoff."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        attempt = 0
        while not self.stopping.is_set():
            try:
                stream.ensure_group(self.redis)
                self.gateway = Gateway(self.settings, self.on_message)
                self.gateway.connect()
                attempt = 0
                self.resend_connects()
                self.pump()
            except (ConnectionLost, RedisError) as exc:
                delay = jittered(attempt, BACKOFF_START, BACKOFF_MAX)
                attempt += 1
                logger.warning("thingsboard: %s; retrying in %.1f s", exc, delay)
                self._close_gateway()
                self.stopping.wait(delay)
        self.rpcs.shutdown(wait=True)
        self._close_gateway()
        logger.info("thingsboard: stopped")
        return 0

    def _close_gateway(self) -> None:
        """Drop the current connection, if any."""
        if self.gateway is not None:
            self.gateway.close()

    # --- uplink -------------------------------------------------------------------------------

    def _publish_all(self, messages: list[Message]) -> None:
        """Publish in order at QoS 1 and wait for every PUBACK."""
        gateway = self.gateway
        if gateway is None:
            raise ConnectionLost("no gateway connection")
        infos = [gateway.publish(m.topic, m.payload) for m in messages]
        gateway.wait(infos, PUBACK_TIMEOUT)

    def resend_connects(self) -> None:
        """``connect`` again for every device whose last lifecycle event was a (re-)registration."""
        live = stream.live_devices(self.redis)
        bodies = [{"device": name, "type": kind} for name, kind in live]
        messages = [Message(CONNECT, encode(body), 1, body) for body in bodies]
        for message in messages:
            validate(message.topic, message.body, self.max_payload, len(message.payload))
        for start in range(0, len(messages), CHUNK):
            self._publish_all(messages[start : start + CHUNK])
        if live:
            logger.info("thingsboard: re-sent connect for %d live devices", len(live))

    def pump(self) -> None:
        """Deliver this consumer's pending entries, then new ones, until stopped."""
        pending = True
        while not self.stopping.is_set():
            entries = stream.read(self.redis, CHUNK, BLOCK_MS, pending)
            if pending and not entries:
                pending = False
                continue
            if entries:
                self.deliver(entries)

    def plan(self, entries: list[stream.Entry]) -> tuple[list[Message], list[dict[str, Any]], list[str]]:
        """Messages for the entries, their fragments, and the ids of entries that cannot be published."""
        readable = [e for e in entries if e.fragments is not None]
        bad = [e.id for e in entries if e.fragments is None]
        try:
            return self._checked(readable), [f for e in readable for f in e.fragments or ()], bad
        except MappingError:
            good = []
            for entry in readable:
                try:
                    self._checked([entry])
                    good.append(entry)
                except MappingError as exc:
                    logger.error("thingsboard: stream entry %s cannot be published: %s", entry.id, exc)
                    bad.append(entry.id)
            return self._checked(good), [f for e in good for f in e.fragments or ()], bad

    def _checked(self, entries: list[stream.Entry]) -> list[Message]:
        """Group the entries' fragments and validate every message."""
        messages = group([f for e in entries for f in e.fragments or ()], self.max_payload)
        for message in messages:
            validate(message.topic, message.body, self.max_payload, len(message.payload))
        return messages

    def deliver(self, entries: list[stream.Entry]) -> None:
        """Publish one chunk; acknowledge it in Redis only after every PUBACK."""
        messages, fragments, bad = self.plan(entries)
        self._publish_all(messages)
        stream.record_lifecycle(self.redis, fragments)
        stream.count_invalid(self.redis, len(bad))
        stream.ack(self.redis, [e.id for e in entries])
        logger.debug("thingsboard: %d events delivered in %d messages", len(entries), len(messages))

    # --- downlink -----------------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes) -> None:
        """Downlink from the network thread: RPCs and attribute updates run on the RPC threads."""
        try:
            doc = json.loads(payload)
        except ValueError:
            logger.warning("thingsboard: %s: payload is not JSON; ignored", topic)
            return
        if topic == RPC and rpc.is_rpc_request(doc):
            self._submit(self.answer_rpc, doc)
        elif topic == ATTRIBUTES and rpc.is_attribute_update(doc):
            self._submit(self.write_attributes, doc)
        else:
            logger.debug("thingsboard: %s: not a downlink message; ignored", topic)

    def _submit(self, func: Any, doc: dict[str, Any]) -> None:
        """Run on an RPC thread; after shutdown (stopping) the message is logged as not handled."""
        try:
            self.rpcs.submit(func, doc)
        except RuntimeError:
            logger.warning("thingsboard: stopping: downlink message for %s not handled", doc.get("device"))

    def _endpoint(self, name: str) -> str | None:
        """The endpoint of a ThingsBoard device name, None when it was never registered."""
        record = stream.device(self.redis, name)
        return record.get("ep") if record else None

    def _call(self, ep: str, call: rpc.DeviceCall) -> Any:
        """One device request through the tracker (requires DM_API_KEY)."""
        if self.client is None:
            raise rpc.RpcError(503, "DM_API_KEY is not set: the bridge cannot send device requests")
        return rpc.send_and_wait(self.tracker, self.client, ep, call, self.settings.thingsboard_rpc_timeout)

    def answer_rpc(self, doc: dict[str, Any]) -> None:
        """Turn one RPC into a device request and publish exactly one reply."""
        try:
            request = rpc.parse_rpc(doc)
        except rpc.RpcError as exc:
            logger.warning("thingsboard: RPC for %s cannot be answered: %s", doc.get("device"), exc)
            return
        try:
            ep = self._endpoint(request.device)
            if ep is None:
                raise rpc.RpcError(404, f"device {request.device!r} was never registered through this bridge")
            result = self._call(ep, rpc.device_call(request))
            answer = rpc.reply(request, result, self.decode(result) if result.ok else None)
        except rpc.RpcError as exc:
            answer = rpc.error_reply(request.device, request.id, exc.status, str(exc))
        except DMApiError as exc:
            status = exc.status or 502
            answer = rpc.error_reply(request.device, request.id, status, f"{exc.error_type}: {exc.message}")
        except (RedisError, OSError) as exc:
            answer = rpc.error_reply(request.device, request.id, 503, f"{type(exc).__name__}: {exc}")
        self._send_reply(answer)

    def _send_reply(self, answer: dict[str, Any]) -> None:
        """Publish an RPC reply (validated); a reply with the connection down is logged as lost."""
        payload = encode(answer)
        try:
            validate(RPC, answer, self.max_payload, len(payload))
        except MappingError as exc:
            logger.error("thingsboard: RPC %s reply not publishable (%s)", answer["id"], exc)
            payload = encode(
                rpc.error_reply(answer["device"], answer["id"], 500, f"reply not publishable: {exc}")
            )
        try:
            gateway = self.gateway
            if gateway is None:
                raise ConnectionLost("no gateway connection")
            gateway.wait([gateway.publish(RPC, payload)], PUBACK_TIMEOUT)
        except ConnectionLost as exc:
            logger.warning("thingsboard: reply to RPC %s of %s lost: %s", answer["id"], answer["device"], exc)

    def write_attributes(self, doc: dict[str, Any]) -> None:
        """Shared attributes named by resource paths -> PUTs; other keys are logged and ignored."""
        name, data = doc["device"], doc["data"]
        calls, ignored = rpc.attribute_writes(data if isinstance(data, dict) else {})
        if ignored:
            logger.info("thingsboard: attributes of %s not resource paths, ignored: %s", name, ignored)
        ep = self._endpoint(name)
        if ep is None:
            if calls:
                logger.warning("thingsboard: attribute update for unknown device %r ignored", name)
            return
        for call in calls:
            try:
                result = self._call(ep, call)
                logger.info(
                    "thingsboard: %s %s = %s: status %s", name, call.path, call.payload, result.status
                )
            except (rpc.RpcError, DMApiError, RedisError, OSError) as exc:
                logger.warning("thingsboard: attribute write %s %s failed: %s", name, call.path, exc)
