"""The worker process: one queue, the JSON serializer, the scheduler for retries.

SimpleWorker runs jobs in this process (about three times the throughput of a forking worker,
DESIGN.md). A job interrupted by SIGKILL runs again through its Retry: at startup, and at each
maintenance pass, jobs started by workers that are gone are handed back to the queue.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Collection
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
from rq.scripts import release_lock
from rq.serializers import JSONSerializer

from app.redis_conn import text
from workers import asyncs, runtime

logger = logging.getLogger(__name__)

WORKER_TTL = 60
MAINTENANCE_INTERVAL = 30
RESTART_LIMIT = 10
RESTART_WINDOW = 600.0  # s
REDIS_WAIT_MAX = 5.0  # s between PINGs while Redis is away
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _pid_alive(pid: int) -> bool:
    """True when a process with this pid exists on this machine (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """True when the process exited and waits to be reaped (a killed worker's scheduler child)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[-1].split()
    return bool(fields) and fields[0] == "Z"


def _worker_gone(redis: Redis, name: str | None) -> bool:
    """True when the named worker's key expired, or it ran on this host and its process is dead."""
    if not name:
        return True
    data = redis.hmget(f"rq:worker:{name}", ["hostname", "pid", "death"])
    hostname, pid, death = (text(v) if v is not None else None for v in data)
    if hostname is None or death:
        return True
    return hostname == socket.gethostname() and pid is not None and not _pid_alive(int(pid))


def recover_abandoned(queue: Queue, gone: Collection[str] = ()) -> list[str]:
    """Hand jobs whose worker is gone to RQ's own abandoned-job handling (retry, else failed).

    RQ notices an abandoned job only when its execution heartbeat expires (~90 s); a worker killed
    on this machine is known dead at once, so its executions are marked expired now.
    """
    registry = queue.started_job_registry
    expired = []
    for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
        job = Job.fetch(job_id, connection=queue.connection, serializer=JSONSerializer)
        if job.worker_name in gone or _worker_gone(queue.connection, job.worker_name):
            queue.connection.zadd(registry.key, {f"{job_id}:{execution_id}": 0}, xx=True)
            expired.append(job_id)
    if expired:
        registry.cleanup()
        logger.warning("jobs %s were abandoned by dead workers; retried through their Retry", expired)
    return expired


def release_dead_scheduler_lock(queue: Queue) -> bool:
    """Free the queue's scheduler lock when its holder was a scheduler process on this host that is gone.

    RQ's scheduler runs in a child of one worker and holds a lock that expires 61 s after its last
    heartbeat; a worker killed with its children (a dyno restart) left retries and re-runs of abandoned
    jobs waiting that long, and up to one maintenance interval more, for another scheduler to start.
    """
    redis = queue.connection
    lock_key = RQScheduler.get_locking_key(queue.name)
    holder = redis.get(lock_key)
    if holder is None:
        return False
    name = text(holder)
    hostname, pid = (
        text(v) if v is not None else None
        for v in redis.hmget(SCHEDULER_KEY_TEMPLATE % name, ["hostname", "pid"])
    )
    if hostname != socket.gethostname() or not pid or int(pid) <= 0 or _pid_alive(int(pid)):
        return False
    released = bool(release_lock(redis, lock_key, name))
    if released:
        logger.warning("scheduler lock of %s released: its scheduler (pid %s) is gone", queue.name, pid)
    return released


class DevicehooksWorker(SimpleWorker):
    """SimpleWorker that also recovers jobs abandoned by dead workers during maintenance."""

    def run_maintenance_tasks(self) -> None:
        """Free a dead scheduler's lock, RQ's maintenance (which starts a scheduler if it can), recovery."""
        for queue in self.queues:
            release_dead_scheduler_lock(queue)
        super().run_maintenance_tasks()
        for queue in self.queues:
            recover_abandoned(queue)


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
        release_dead_scheduler_lock(rt.queue)
        recover_abandoned(rt.queue, gone={worker.name})
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
    release_dead_scheduler_lock(rt.queue)
    recover_abandoned(rt.queue)
    stop = threading.Event()
    sweeper = None if burst else asyncs.start_sweeper(rt.tracker, stop)
    worked = False
    restarts: list[float] = []
    try:
        while True:
            worker = _new_worker(rt, name if not restarts else None)
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
        if sweeper is not None:
            asyncs.stop_sweeper(sweeper, stop)
        stop.set()
        rt.lanes.shutdown()
