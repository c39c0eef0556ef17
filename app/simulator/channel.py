"""The account's notification channel and its single delivery thread.

Like Device Management: one channel (callback, websocket or long poll); events queue FIFO up to a byte
limit (oldest dropped); one batch of at most `batch_size` items in flight; a failed callback PUT (timeout,
4xx, 5xx) is retried with the SAME batch after 1 s, 2 s, 4 s ... capped at `max_backoff`; the callback is
removed, and its events dropped, once deliveries have failed for `failure_window`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import requests

from app.simulator.config import SimulatorConfig
from app.simulator.queue import Event, EventQueue, build_batch, item_size

logger = logging.getLogger(__name__)

CALLBACK = "CALLBACK"
WEB_SOCKET = "WEB_SOCKET"
LONG_POLLING = "LONG_POLLING"
OK_STATUSES = (200, 204)
GOING_AWAY = 1001


class WebSocketLike(Protocol):
    """What the channel needs from an open websocket (simple_websocket.Server fits)."""

    def send(self, data: str) -> None:
        """Send one text frame."""

    def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Close the socket with a status code."""


class ChannelConflict(Exception):
    """Another type of channel exists; it must be deleted first."""

    def __init__(self, existing: str) -> None:
        super().__init__(f"a {existing} notification channel exists; delete it first")
        self.existing = existing


class PullBusy(Exception):
    """A long-poll request is already open."""


class PullDeleted(Exception):
    """The long-poll channel was deleted and not purged yet: Device Management answers 410 CHANNEL_DELETED."""


class NoWebsocketChannel(Exception):
    """websocket-connect without a websocket channel registered first."""


@dataclass
class Counters:
    """Delivery counters reported by /stats."""

    generated: int = 0  # events created while a channel existed or not
    sent: int = 0  # events sent at least once
    acknowledged: int = 0  # events acknowledged (200/204, websocket frame written, poll answered)
    retried: int = 0  # PUTs that repeated a failed batch
    dropped: int = 0  # events dropped: queue limit, channel deleted or removed
    no_channel: int = 0  # events discarded because no channel existed
    batches: int = 0  # batches acknowledged
    attempts: int = 0  # PUTs / frames attempted
    failures: int = 0  # attempts that failed


@dataclass
class _Job:
    """One transmission attempt, prepared under the lock and carried out without it."""

    mechanism: str
    batch: list[Event]
    body: str
    generation: int
    url: str = ""
    headers: dict[str, str] | None = None
    ws: WebSocketLike | None = None


class Channel:
    """The notification channel, its queue and the delivery thread."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.cond = threading.Condition()
        self.mechanism: str | None = None
        self.url: str | None = None
        self.headers: dict[str, str] = {}
        self.ws: WebSocketLike | None = None
        self.pull_open = False
        self.callback_removed = False
        self.counters = Counters()
        self.queue = EventQueue()
        self.in_flight: list[Event] = []
        self._in_flight_body = ""
        self._in_flight_bytes = 0
        self._attempt = 0
        self._failing_since: float | None = None
        self._next_attempt_at = 0.0
        self._generation = 0
        self._pull_purged_at = 0.0  # monotonic time until which a deleted pull channel answers 410
        self._seq = 0
        self._sent_ids: list[str] = []
        self._acked_at: dict[str, float] = {}  # event key -> when its batch was first acknowledged
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="simulator-delivery", daemon=True)
        self._session = requests.Session()
        self._session.trust_env = False
        self._session.cert = config.client_cert
        self._session.verify = config.tls_verify

    # lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the delivery thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop delivering, close the websocket, wake long polls, join the thread."""
        with self.cond:
            self._stopping = True
            ws, self.ws = self.ws, None
            self.cond.notify_all()
        if ws is not None:
            _close_quietly(ws, GOING_AWAY, "server shutting down")
        if self._thread.is_alive():
            self._thread.join(timeout=self.config.http_timeout + 5)
        self._session.close()

    # publishing ------------------------------------------------------------------------------

    def publish(self, kind: str, item: Any, key: str) -> int:
        """Queue one event for delivery; return its sequence number."""
        return self.publish_many([(kind, item, key)])

    def publish_many(self, events: list[tuple[str, Any, str]]) -> int:
        """Queue (kind, item, key) events at once (one batch can take them all); return the last seq."""
        sized = [(kind, item, key, item_size(item)) for kind, item, key in events]
        with self.cond:
            for kind, item, key, size in sized:
                self._seq += 1
                self.counters.generated += 1
                if self.mechanism is None:
                    self.counters.no_channel += 1
                    continue
                self._make_room(size)
                self.queue.append(Event(kind, item, key, size, self._seq))
            self.cond.notify_all()
            return self._seq

    def _make_room(self, size: int) -> None:
        """Drop the oldest queued events until `size` more bytes fit under the limit."""
        limit = self.config.queue_limit_bytes
        while self.queue and self.queue.bytes + self._in_flight_bytes + size > limit:
            self.queue.pop_oldest()
            self.counters.dropped += 1

    def settled_through(self) -> int:
        """Every event with a sequence number up to this one was acknowledged or dropped."""
        if self.in_flight:
            return self.in_flight[0].seq - 1
        first = self.queue.first_seq()
        return self._seq if first is None else first - 1

    def wait_settled(self, seq: int, timeout: float) -> bool:
        """Wait until event `seq` was acknowledged or dropped; False on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: self._stopping or self.settled_through() >= seq, timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or in flight; False on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: not self.queue and not self.in_flight, timeout)

    def backlog(self) -> int:
        """Events queued or in flight."""
        with self.cond:
            return len(self.queue) + len(self.in_flight)

    def wait_backlog_below(self, limit: int, timeout: float) -> bool:
        """Wait until fewer than `limit` events are queued or in flight; False on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: len(self.queue) + len(self.in_flight) < limit, timeout)

    def exists(self) -> bool:
        """True when some notification channel is in place."""
        with self.cond:
            return self.mechanism is not None

    # callback --------------------------------------------------------------------------------

    def check_can_set_callback(self) -> None:
        """Raise ChannelConflict when a websocket or long-poll channel is in place."""
        with self.cond:
            if self.mechanism in (WEB_SOCKET, LONG_POLLING):
                raise ChannelConflict(self.mechanism)

    def set_callback(self, url: str, headers: dict[str, str]) -> None:
        """Register (or replace) the callback; a pending retry goes to the new URL at once."""
        with self.cond:
            if self.mechanism in (WEB_SOCKET, LONG_POLLING):
                raise ChannelConflict(self.mechanism)
            self.mechanism, self.url, self.headers = CALLBACK, url, dict(headers)
            self.callback_removed = False
            self._reset_failures()
            self._generation += 1
            self.cond.notify_all()
        logger.info("callback registered url=%s", url)

    def callback(self) -> dict[str, Any] | None:
        """The registered Webhook, None when there is none."""
        with self.cond:
            if self.mechanism != CALLBACK:
                return None
            return {"url": self.url, "headers": dict(self.headers)}

    def delete_callback(self) -> bool:
        """Delete the callback and its queued events; False when there was none."""
        with self.cond:
            if self.mechanism != CALLBACK:
                return False
            self._delete()
            return True

    # websocket -------------------------------------------------------------------------------

    def create_websocket(self) -> bool:
        """Create the websocket channel; False when it existed already."""
        with self.cond:
            if self.mechanism in (CALLBACK, LONG_POLLING):
                raise ChannelConflict(self.mechanism)
            if self.mechanism == WEB_SOCKET:
                return False
            self.mechanism = WEB_SOCKET
            self.callback_removed = False
            return True

    def websocket_status(self) -> dict[str, Any] | None:
        """The WebsocketChannel, None when there is none."""
        with self.cond:
            if self.mechanism != WEB_SOCKET:
                return None
            return {
                "queueSize": len(self.queue) + len(self.in_flight),
                "status": "connected" if self.ws is not None else "disconnected",
            }

    def delete_websocket(self) -> bool:
        """Delete the websocket channel (closing its socket with 1001); False when there was none."""
        with self.cond:
            if self.mechanism != WEB_SOCKET:
                return False
            ws, self.ws = self.ws, None
            self._delete()
        if ws is not None:
            _close_quietly(ws, GOING_AWAY, "channel deleted")
        return True

    def attach_websocket(self, ws: WebSocketLike) -> None:
        """Bind an opened socket to the channel; an older socket is closed with 1001."""
        with self.cond:
            if self.mechanism != WEB_SOCKET:
                raise NoWebsocketChannel("no websocket channel: PUT /v2/notification/websocket first")
            old, self.ws = self.ws, ws
            self._generation += 1
            self.cond.notify_all()
        if old is not None:
            _close_quietly(old, GOING_AWAY, "another socket was opened on this channel")

    def detach_websocket(self, ws: WebSocketLike) -> None:
        """Forget a socket that closed."""
        with self.cond:
            if self.ws is ws:
                self.ws = None

    # long polling ----------------------------------------------------------------------------

    def poll(self, timeout: float) -> dict[str, list[Any]] | None:
        """One long poll: create the pull channel if needed, wait for events, return a batch or None.

        After DELETE /v2/notification/pull the channel waits to be purged (`pull_purge_time`): a poll
        then, and a poll that was waiting when it was deleted, raise PullDeleted (410 CHANNEL_DELETED)
        instead of recreating it, so a client can register a callback meanwhile (as the spec says)."""
        with self.cond:
            if self.mechanism in (CALLBACK, WEB_SOCKET):
                raise ChannelConflict(self.mechanism)
            if self.pull_open:
                raise PullBusy("a long-poll request is already open")
            if self.mechanism is None and time.monotonic() < self._pull_purged_at:
                raise PullDeleted()
            self.mechanism, self.pull_open = LONG_POLLING, True
            self.callback_removed = False
            generation = self._generation
            try:
                self.cond.wait_for(
                    lambda: self._stopping or self.mechanism != LONG_POLLING or bool(self.queue), timeout
                )
                if self._generation != generation and time.monotonic() < self._pull_purged_at:
                    raise PullDeleted()
                if self.mechanism != LONG_POLLING or not self.queue:
                    return None
                batch = self.queue.take(self.config.batch_size)
                self._count_sent(batch)
                self._count_acked(batch)
                return build_batch(batch)
            finally:
                self.pull_open = False
                self.cond.notify_all()

    def delete_pull(self) -> str:
        """Delete the long-poll channel: "REMOVED", or "ALREADY_DELETED" when there was none."""
        with self.cond:
            if self.mechanism != LONG_POLLING:
                return "ALREADY_DELETED"
            self._delete()
            self._pull_purged_at = time.monotonic() + self.config.delay(self.config.pull_purge_time)
            return "REMOVED"

    # state shared by the channel types -------------------------------------------------------

    def _delete(self) -> None:
        """Remove the channel and drop its events (lock held)."""
        self.counters.dropped += self.queue.clear() + len(self.in_flight)
        self._clear_in_flight()
        self.mechanism, self.url, self.headers = None, None, {}
        self._reset_failures()
        self._generation += 1
        self.cond.notify_all()

    def _reset_failures(self) -> None:
        """Forget the failure history (lock held)."""
        self._attempt, self._failing_since, self._next_attempt_at = 0, None, 0.0

    def _clear_in_flight(self) -> None:
        """Forget the in-flight batch (lock held)."""
        self.in_flight, self._in_flight_body, self._in_flight_bytes = [], "", 0

    def channel_name(self) -> str | None:
        """CALLBACK, WEB_SOCKET, LONG_POLLING or None."""
        with self.cond:
            return self.mechanism

    def stats(self) -> dict[str, Any]:
        """The delivery counters and the queue's state."""
        with self.cond:
            stats = asdict(self.counters)
            stats.update(
                in_flight=len(self.in_flight),
                queued=len(self.queue),
                queued_bytes=self.queue.bytes + self._in_flight_bytes,
                callback_removed=self.callback_removed,
                channel=self.mechanism,
            )
            return stats

    def sent_event_ids(self) -> list[str]:
        """Keys of the events sent so far, in the order first sent (config.record_ids)."""
        with self.cond:
            return list(self._sent_ids)

    def _count_sent(self, batch: list[Event]) -> None:
        """Count events sent for the first time (lock held)."""
        self.counters.sent += len(batch)
        if self.config.record_ids:
            self._sent_ids.extend(event.key for event in batch)

    def acked_at(self) -> dict[str, float]:
        """When each event's batch was first acknowledged (time.time(); config.record_ids)."""
        with self.cond:
            return dict(self._acked_at)

    def _count_acked(self, batch: list[Event]) -> None:
        """Count an acknowledged batch (lock held)."""
        self.counters.acknowledged += len(batch)
        self.counters.batches += 1
        if self.config.record_ids:
            now = time.time()
            for event in batch:
                self._acked_at.setdefault(event.key, now)

    # the delivery thread ---------------------------------------------------------------------

    def _run(self) -> None:
        """Deliver batches one at a time until stopped."""
        while (job := self._next_job()) is not None:
            ok, detail = self._transmit(job)
            with self.cond:
                self._settle(job, ok, detail)

    def _next_job(self) -> _Job | None:
        """Wait until a batch can be sent; None when stopping."""
        with self.cond:
            while not self._stopping:
                job = self._ready_job()
                if job is not None:
                    return job
                wait = None
                if self.mechanism == CALLBACK and self.in_flight:
                    wait = max(0.0, self._next_attempt_at - time.monotonic())
                self.cond.wait(wait)
            return None

    def _ready_job(self) -> _Job | None:
        """The next transmission when one is due (lock held)."""
        pushing = self.mechanism == CALLBACK or (self.mechanism == WEB_SOCKET and self.ws is not None)
        if not pushing or not (self.in_flight or self.queue):
            return None
        if not self.in_flight:
            self._load_batch()
        if self.mechanism == CALLBACK and time.monotonic() < self._next_attempt_at:
            return None
        if self._attempt > 0:
            self.counters.retried += 1
        return _Job(
            mechanism=self.mechanism or "",
            batch=self.in_flight,
            body=self._in_flight_body,
            generation=self._generation,
            url=self.url or "",
            headers=self.headers,
            ws=self.ws,
        )

    def _load_batch(self) -> None:
        """Move the oldest events into the in-flight batch (lock held)."""
        batch = self.queue.take(self.config.batch_size)
        self.in_flight = batch
        self._in_flight_bytes = sum(event.size for event in batch)
        self._in_flight_body = json.dumps(build_batch(batch), separators=(",", ":"))
        self._count_sent(batch)

    def _transmit(self, job: _Job) -> tuple[bool, str]:
        """Send one batch (no lock held): (acknowledged, what happened)."""
        if job.mechanism == WEB_SOCKET and job.ws is not None:
            try:
                job.ws.send(job.body)
            except Exception as exc:
                return False, f"websocket send failed: {exc!r}"
            return True, "sent"
        headers = {**(job.headers or {}), "Content-Type": "application/json"}
        try:
            response = self._session.put(
                job.url,
                data=job.body.encode("utf-8"),
                headers=headers,
                timeout=self.config.http_timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return response.status_code in OK_STATUSES, f"HTTP {response.status_code}"

    def _settle(self, job: _Job, ok: bool, detail: str) -> None:
        """Record the outcome of one attempt (lock held)."""
        self.counters.attempts += 1
        if job.batch is not self.in_flight:
            return  # the channel was deleted meanwhile: the batch was dropped
        if ok:
            self._count_acked(job.batch)
            self._clear_in_flight()
            self._reset_failures()
            self.cond.notify_all()
            return
        self.counters.failures += 1
        if job.mechanism == WEB_SOCKET:
            logger.info("websocket delivery failed, batch kept for the next socket: %s", detail)
            if self.ws is job.ws:
                self.ws = None
            return
        self._callback_failed(job, detail)

    def _callback_failed(self, job: _Job, detail: str) -> None:
        """Schedule the retry of a failed PUT, or remove the callback after the failure window."""
        now = time.monotonic()
        if job.generation != self._generation:
            self._next_attempt_at = now  # re-registered meanwhile: try the new callback at once
            return
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failing_since >= self.config.delay(self.config.failure_window):
            logger.warning(
                "callback %s removed: deliveries failed for the failure window (%s)", job.url, detail
            )
            self._delete()
            self.callback_removed = True
            return
        self._attempt += 1
        backoff = min(2.0 ** (self._attempt - 1), self.config.max_backoff)
        self._next_attempt_at = now + self.config.delay(backoff)
        logger.info(
            "callback PUT failed (%s); retry %d in %.3f s", detail, self._attempt, self.config.delay(backoff)
        )


def _close_quietly(ws: WebSocketLike, code: int, message: str) -> None:
    """Close a socket, ignoring one that is already gone."""
    try:
        ws.close(code, message)
    except Exception:
        logger.debug("closing a websocket failed", exc_info=True)
