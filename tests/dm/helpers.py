"""Helpers of the Device Management tests: conditions with deadlines, a served app, a queue pump."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
from werkzeug.serving import BaseWSGIServer, make_server

from app.batches import body_key
from app.dm.asyncs import DELIVER_JOB_PREFIX, AsyncResult, AsyncTracker, Response
from workers.asyncs import response_of
from workers.batch import parse_batch
from workers.decoding import default_object_model


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
    """Pop one queued job (as a worker would): (source, parsed body) of a batch, ("deliver", {"async_id"})
    of an async result's delivery job."""
    popped = redis.blpop([f"rq:queue:{queue}"], timeout=timeout)
    if popped is None:
        return None
    job_id = popped[1].decode()
    if job_id.startswith(DELIVER_JOB_PREFIX):
        job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
        job.delete()
        return "deliver", {"async_id": job.args[0], "func": job.func_name}
    body = redis.get(body_key(job_id))
    meta = redis.hget(f"rq:job:{job_id}", "meta")
    redis.delete(body_key(job_id), f"rq:job:{job_id}")
    source = json.loads(meta or b"{}").get("source", "")
    return source, json.loads(body or b"{}")


def responses(body: dict[str, Any]) -> list[Response]:
    """The async-responses of a batch body, parsed as the worker parses them."""
    parsed = parse_batch(json.dumps(body), default_object_model())
    return [response_of(event) for event in parsed.events if event.kind == "async-responses"]


class Pump:
    """A stand-in worker: takes queued jobs, settles their async-responses, keeps everything seen."""

    def __init__(self, redis: Redis, queue: str, tracker: AsyncTracker) -> None:
        self.redis = redis
        self.queue = queue
        self.tracker = tracker
        self.batches: list[tuple[str, dict[str, Any]]] = []
        self.resolved: list[AsyncResult] = []
        self.deliveries: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="test-pump", daemon=True)
        self.lock = threading.Lock()

    def _run(self) -> None:
        """Take and process jobs until stopped."""
        while not self.stop.is_set():
            taken = take_batch(self.redis, self.queue)
            if taken is None:
                continue
            if taken[0] == "deliver":
                with self.lock:
                    self.deliveries.append(taken[1]["async_id"])
                continue
            results = [self.tracker.resolve(response) for response in responses(taken[1])]
            with self.lock:
                self.resolved.extend(result for result in results if result is not None)
                self.batches.append(taken)

    def items(self, kind: str) -> list[Any]:
        """Every item of ``kind`` seen so far."""
        with self.lock:
            return [item for _, body in self.batches for item in body.get(kind, [])]

    def handlers_of(self, async_id: str) -> list[str | None]:
        """The handler named by each delivery job queued for ``async_id`` (once: one name)."""
        with self.lock:
            count = self.deliveries.count(async_id)
        return [self.tracker.get(async_id).handler] * count

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
