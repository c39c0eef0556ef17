"""The worker process: one queue, the JSON serializer, the scheduler for retries.

SimpleWorker runs jobs in this process (about three times the throughput of a forking worker,
DESIGN.md). A job interrupted by SIGKILL runs again through its Retry: at startup, and at each
maintenance pass, jobs started by workers that are gone are handed back to the queue.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from redis import Redis
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


def _pid_alive(pid: int) -> bool:
    """True when a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _worker_gone(redis: Redis, name: str | None) -> bool:
    """True when the named worker's key expired, or it ran on this host and its process is dead."""
    if not name:
        return True
    data = redis.hmget(f"rq:worker:{name}", ["hostname", "pid", "death"])
    hostname, pid, death = (text(v) if v is not None else None for v in data)
    if hostname is None or death:
        return True
    return hostname == socket.gethostname() and pid is not None and not _pid_alive(int(pid))


def recover_abandoned(queue: Queue) -> list[str]:
    """Hand jobs whose worker is gone to RQ's own abandoned-job handling (retry, else failed).

    RQ notices an abandoned job only when its execution heartbeat expires (~90 s); a worker killed
    on this machine is known dead at once, so its executions are marked expired now.
    """
    registry = queue.started_job_registry
    expired = []
    for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
        job = Job.fetch(job_id, connection=queue.connection, serializer=JSONSerializer)
        if _worker_gone(queue.connection, job.worker_name):
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


def run(burst: bool = False, name: str | None = None) -> bool:
    """Work the batch queue until SIGTERM (or until it is empty, with ``burst``)."""
    rt = runtime.install(runtime.build())
    for handler in rt.router.handlers:
        logger.info("handler %s", handler.describe())
    release_dead_scheduler_lock(rt.queue)
    recover_abandoned(rt.queue)
    worker = DevicehooksWorker(
        [rt.queue],
        connection=rt.redis,
        serializer=JSONSerializer,
        name=name,
        worker_ttl=WORKER_TTL,
        maintenance_interval=MAINTENANCE_INTERVAL,
    )
    logger.info("worker %s on queue %s", worker.name, rt.queue.name)
    stop = threading.Event()
    if not burst:
        asyncs.start_sweeper(rt.tracker, rt.queue.enqueue, stop)
    try:
        return worker.work(burst=burst, with_scheduler=True, logging_level=rt.settings.log_level)
    finally:
        stop.set()
        rt.lanes.shutdown()
