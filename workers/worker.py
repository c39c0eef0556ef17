"""The worker process: one queue, the JSON serializer, the scheduler for retries.

SimpleWorker runs jobs in this process (about three times the throughput of a forking worker,
DESIGN.md). A job interrupted by SIGKILL runs again through its Retry: ``workers/recovery.py`` keeps
this process's heartbeat and, every 2 s (and at startup), hands jobs of dead workers back to the queue.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from redis import Redis
from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from workers import asyncs, recovery, runtime

logger = logging.getLogger(__name__)

WORKER_TTL = 60
MAINTENANCE_INTERVAL = 30
RESTART_LIMIT = 10
RESTART_WINDOW = 600.0  # s
REDIS_WAIT_MAX = 5.0  # s between PINGs while Redis is away
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class DevicehooksWorker(SimpleWorker):
    """SimpleWorker that also recovers jobs abandoned by dead workers during maintenance."""

    def run_maintenance_tasks(self) -> None:
        """Free a dead scheduler's lock, RQ's maintenance (which starts a scheduler if it can), recovery."""
        for queue in self.queues:
            recovery.release_dead_scheduler_lock(queue)
        super().run_maintenance_tasks()
        for queue in self.queues:
            recovery.recover_quietly(queue)


def wait_for_redis(redis: Redis, stop: threading.Event) -> bool:
    """PING with backoff until Redis answers; False when a stop was requested meanwhile."""
    delay = 0.5
    while not stop.is_set():
        try:
            if redis.ping():
                return True
        except RedisError:
            pass
        stop.wait(delay)
        delay = min(delay * 2, REDIS_WAIT_MAX)
    return False


def _stop_requested(worker: DevicehooksWorker) -> bool:
    """True when the worker ended because it was asked to (SIGTERM, SIGINT), not on an error."""
    return bool(worker._stop_requested or worker._shutdown_requested_date is not None)


def _new_worker(rt: runtime.Runtime, name: str | None) -> DevicehooksWorker:
    """A worker on the batch queue."""
    worker = DevicehooksWorker(
        [rt.queue],
        connection=rt.redis,
        serializer=JSONSerializer,
        name=name,
        worker_ttl=WORKER_TTL,
        maintenance_interval=MAINTENANCE_INTERVAL,
    )
    logger.info("worker %s on queue %s", worker.name, rt.queue.name)
    return worker


def _work_once(worker: DevicehooksWorker, rt: runtime.Runtime, burst: bool) -> bool:
    """RQ's work loop; a Redis error that escapes its teardown counts as an ended loop."""
    try:
        return worker.work(burst=burst, with_scheduler=True, logging_level=rt.settings.log_level)
    except RedisError as exc:
        logger.error("worker %s ended on a Redis error: %s", worker.name, exc)
        return False


def _recover_after_error(rt: runtime.Runtime, worker: DevicehooksWorker, stop: threading.Event) -> bool:
    """Wait for Redis, then hand the job the ended worker had in hand to RQ's retry; False on stop."""
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in STOP_SIGNALS}
    try:
        if not wait_for_redis(rt.redis, stop):
            return False
        recovery.recover_quietly(rt.queue, gone={worker.name})
        return not stop.is_set()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(burst: bool = False, name: str | None = None) -> bool:
    """Work the batch queue until SIGTERM (or until it is empty, with ``burst``).

    RQ's loop quits on an error it does not handle, such as Redis going away while a job records its
    result: then this process waits for Redis, hands the interrupted job to its Retry and works on
    with a new worker (at most RESTART_LIMIT times within RESTART_WINDOW, then it exits with an error).
    """
    rt = runtime.install(runtime.build())
    for handler in rt.router.handlers:
        logger.info("handler %s", handler.describe())
    recovery.recover_quietly(rt.queue)
    stop = threading.Event()
    sweeper = None if burst else asyncs.start_sweeper(rt.tracker, stop)
    heartbeat = recovery.Heartbeat(rt.redis, rt.queue, threading.Event())
    if not burst:
        heartbeat.start()
    worked = False
    restarts: list[float] = []
    try:
        while True:
            worker = _new_worker(rt, name if not restarts else None)
            heartbeat.serve(worker.name)
            worked = _work_once(worker, rt, burst) or worked
            if burst or _stop_requested(worker):
                return worked
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < RESTART_WINDOW] + [now]
            if len(restarts) > RESTART_LIMIT:
                raise RuntimeError(f"the worker loop ended on errors {len(restarts)} times; giving up")
            logger.warning("worker %s ended on an error; resuming once Redis answers", worker.name)
            if not _recover_after_error(rt, worker, stop):
                return worked
    finally:
        heartbeat.close()
        if sweeper is not None:
            asyncs.stop_sweeper(sweeper, stop)
        stop.set()
        rt.lanes.shutdown()
