"""Helpers of the Device Management tests: conditions with deadlines, a served app, a queue pump."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis import Redis
from werkzeug.serving import BaseWSGIServer, make_server

from app.batches import body_key
from app.dm.asyncs import AsyncResult, AsyncTracker


@contextmanager
def serving(app: Any, port: int = 0) -> Iterator[str]:
    """Serve a WSGI app on ``port`` (0: a free one) in a thread; yield its base URL; stop it after."""
    server: BaseWSGIServer = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def take_batch(redis: Redis, queue: str, timeout: float = 0.1) -> tuple[str, dict[str, Any]] | None:
    """Pop one queued batch job (as a worker would) and return (source, parsed body)."""
    popped = redis.blpop([f"rq:queue:{queue}"], timeout=timeout)
    if popped is None:
        return None
    job_id = popped[1].decode()
    body = redis.get(body_key(job_id))
    meta = redis.hget(f"rq:job:{job_id}", "meta")
    redis.delete(body_key(job_id), f"rq:job:{job_id}")
    source = json.loads(meta or b"{}").get("source", "")
    return source, json.loads(body or b"{}")


class Pump:
    """A stand-in worker: takes queued batches, resolves their async-responses, keeps everything seen."""

    def __init__(self, redis: Redis, queue: str, tracker: AsyncTracker) -> None:
        self.redis = redis
        self.queue = queue
        self.tracker = tracker
        self.batches: list[tuple[str, dict[str, Any]]] = []
        self.resolved: list[AsyncResult] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="test-pump", daemon=True)
        self.lock = threading.Lock()

    def _run(self) -> None:
        """Take and process batches until stopped."""
        while not self.stop.is_set():
            taken = take_batch(self.redis, self.queue)
            if taken is None:
                continue
            results = [self.tracker.resolve(item) for item in taken[1].get("async-responses", [])]
            with self.lock:
                self.resolved.extend(result for result in results if result is not None)
                self.batches.append(taken)

    def items(self, kind: str) -> list[Any]:
        """Every item of ``kind`` seen so far."""
        with self.lock:
            return [item for _, body in self.batches for item in body.get(kind, [])]

    def handlers_of(self, async_id: str) -> list[str | None]:
        """The handler names of the results resolved for ``async_id`` (once: one name)."""
        with self.lock:
            return [result.handler for result in self.resolved if result.id == async_id]

    def sources(self) -> set[str]:
        """The sources of the batches seen."""
        with self.lock:
            return {source for source, _ in self.batches}

    def __enter__(self) -> Pump:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
