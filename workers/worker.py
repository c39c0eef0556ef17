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
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.job import Job
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
from rq.scripts import release_lock
from rq.serializers import JSONSerializer

from app import weather
from app.backoff import jittered
from app.redis_conn import text
from app.stores import StoreLimits
from workers import asyncs, runtime
from workers.failed import trim_failed

logger = logging.getLogger(__name__)

WORKER_TTL = 60
MAINTENANCE_INTERVAL = 30
QUICK_END = 10.0  # s: a loop that ends on an error sooner than this is followed by a growing pause
RESTART_PAUSE_MAX = 30.0  # s: the longest pause between loops that keep ending at once (never giving up)
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


class WeatherproofScheduler(RQScheduler):
    """RQ's scheduler loop, waiting out Redis weather instead of dying on it.

    RQ's own loop lets any error end the scheduler process; the worker starts a new one only at its
    next maintenance pass (up to MAINTENANCE_INTERVAL later), and under a full Redis that one dies too.
    """

    def work(self) -> None:
        """Register, then heartbeat and move due jobs every interval until asked to stop."""
        self._install_signal_handlers()
        outage = weather.Outage(logger, f"scheduler {self.name}")
        born = False
        while not self._stop_requested:
            try:
                if not born:
                    self.register_birth()
                    born = True
                if self.should_reacquire_locks:
                    self.acquire_locks()
                self.heartbeat()
                self.enqueue_scheduled_jobs()
                outage.recovered()
            except RedisError as exc:
                outage.failed(exc)
            time.sleep(self.interval)
        try:
            self.stop()
        except RedisError as exc:
            logger.warning("scheduler %s stopped without releasing its locks: %s", self.name, exc)


class DevicehooksWorker(SimpleWorker):
    """SimpleWorker with a weatherproof scheduler that also recovers jobs abandoned by dead workers."""

    limits = StoreLimits()

    def handle_job_failure(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        """RQ's failure handling, then the cap on batches that failed for good (``workers.failed``)."""
        super().handle_job_failure(job, queue, *args, **kwargs)
        try:
            trim_failed(queue, self.limits.failed_batches_keep, self.limits.failed_batches_max_bytes)
        except RedisError as exc:
            logger.warning("capping the failed batches skipped: %s", exc)

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        """RQ's own start of the scheduler, with :class:`WeatherproofScheduler` in place of RQScheduler."""
        self.scheduler = WeatherproofScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return
        if not burst:
            self.scheduler.start()
            return
        try:
            self.scheduler.register_birth()
            self.scheduler.enqueue_scheduled_jobs()
        finally:
            self.scheduler.release_locks()
            self.scheduler.register_death()

    def run_maintenance_tasks(self) -> None:
        """Free a dead scheduler's lock, RQ's maintenance (which starts a scheduler if it can), recovery."""
        for queue in self.queues:
            release_dead_scheduler_lock(queue)
        super().run_maintenance_tasks()
        for queue in self.queues:
            recover_abandoned(queue)


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
    worker.limits = StoreLimits.from_settings(rt.settings)
    logger.info("worker %s on queue %s", worker.name, rt.queue.name)
    return worker


def _work_once(worker: DevicehooksWorker, rt: runtime.Runtime, burst: bool) -> bool:
    """RQ's work loop; a Redis error that escapes its teardown counts as an ended loop."""
    try:
        return worker.work(burst=burst, with_scheduler=True, logging_level=rt.settings.log_level)
    except RedisError as exc:
        logger.error("worker %s ended on a Redis error: %s", worker.name, exc)
        return False


def _recover(
    rt: runtime.Runtime, stop: threading.Event, outage: weather.Outage, gone: set[str], pause: float = 0.0
) -> bool:
    """After ``pause`` s, once Redis takes writes, free a dead scheduler's lock and hand abandoned jobs to
    their Retry. Redis errors meanwhile (full, read-only, away) are waited out with backoff; False on stop.
    """
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in STOP_SIGNALS}
    try:
        if stop.wait(pause):
            return False
        while weather.wait_until_writable(rt.redis, stop, outage):
            try:
                release_dead_scheduler_lock(rt.queue)
                recover_abandoned(rt.queue, gone=gone)
            except RedisError as exc:
                outage.failed(exc)
                stop.wait(weather.WAIT_MAX)
                continue
            outage.recovered()
            return not stop.is_set()
        return False
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(burst: bool = False, name: str | None = None) -> bool:
    """Work the batch queue until SIGTERM (or until it is empty, with ``burst``).

    RQ's loop quits on an error it does not handle, such as Redis going away, filling up (``OOM``) or
    turning read-only while a job records its result: then this process waits until Redis takes writes
    again, hands the interrupted job to its Retry and works on with a new worker, as often as it takes.
    The outage is logged once when it starts and once when it ends (``app.weather.Outage``).
    """
    rt = runtime.install(runtime.build())
    for handler in rt.router.handlers:
        logger.info("handler %s", handler.describe())
    stop = threading.Event()
    outage = weather.Outage(logger, "worker")
    if not _recover(rt, stop, outage, gone=set()):
        return False
    if not burst:
        asyncs.start_sweeper(rt.tracker, rt.queue.enqueue, stop)
    worked = False
    first = True
    quick = 0  # loops in a row that ended on an error within QUICK_END s of their start
    try:
        while True:
            worker = _new_worker(rt, name if first else None)
            first = False
            started = time.monotonic()
            worked = _work_once(worker, rt, burst) or worked
            if burst or _stop_requested(worker):
                return worked
            outage.failed(RuntimeError(f"worker {worker.name} ended on an error"))
            quick = quick + 1 if time.monotonic() - started < QUICK_END else 0
            pause = jittered(quick - 1, weather.WAIT_BASE, RESTART_PAUSE_MAX) if quick else 0.0
            if not _recover(rt, stop, outage, gone={worker.name}, pause=pause):
                return worked
    finally:
        stop.set()
        rt.lanes.shutdown()
