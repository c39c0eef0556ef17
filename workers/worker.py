"""The worker process: one queue, the JSON serializer, the scheduler for retries.

SimpleWorker runs jobs in this process (about three times the throughput of a forking worker,
DESIGN.md). A job interrupted by SIGKILL runs again through its Retry: ``workers/recovery.py`` keeps
this process's heartbeat and, every 2 s (and at startup), hands jobs of dead workers back to the queue.
A full, read-only or absent Redis is waited out (``app.weather``), never a reason to give up.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.job import Job
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from app import weather
from app.backoff import jittered
from app.stores import StoreLimits
from workers import asyncs, recovery, runtime
from workers.failed import trim_failed

logger = logging.getLogger(__name__)

WORKER_TTL = 60
MAINTENANCE_INTERVAL = 30
QUICK_END = 10.0  # s: a loop that ends on an error sooner than this is followed by a growing pause
RESTART_PAUSE_MAX = 30.0  # s: the longest pause between loops that keep ending at once (never giving up)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class WeatherproofScheduler(RQScheduler):
    """RQ's scheduler loop, waiting out Redis weather instead of dying on it.

    RQ's own loop lets any error end the scheduler process; the worker starts a new one only at its
    next maintenance pass (up to MAINTENANCE_INTERVAL later), and under a full Redis that one dies too.
    """

    def work(self) -> None:
        """Register, then heartbeat and move due jobs every interval until asked to stop, or until the
        worker that forked this process is gone (a SIGKILLed worker's scheduler went on forever, waiting
        out a Redis that had long been torn down; stopping releases the lock for another worker's)."""
        self._install_signal_handlers()
        outage = weather.Outage(logger, f"scheduler {self.name}")
        worker_pid = os.getppid()
        born = False
        while not self._stop_requested:
            if os.getppid() != worker_pid:
                logger.warning("scheduler %s: its worker (pid %d) is gone; stopping", self.name, worker_pid)
                break
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
            recovery.release_dead_scheduler_lock(queue)
        super().run_maintenance_tasks()
        for queue in self.queues:
            recovery.recover_quietly(queue)


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
                recovery.release_dead_scheduler_lock(rt.queue)
                recovery.recover(rt.queue, gone=gone, use_heartbeats=False)
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
    sweeper = None if burst else asyncs.start_sweeper(rt.tracker, stop)
    heartbeat = recovery.Heartbeat(rt.redis, rt.queue, threading.Event())
    if not burst:
        heartbeat.start()
    worked = False
    first = True
    quick = 0  # loops in a row that ended on an error within QUICK_END s of their start
    try:
        while True:
            worker = _new_worker(rt, name if first else None)
            first = False
            heartbeat.serve(worker.name)
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
        heartbeat.close()
        if sweeper is not None:
            asyncs.stop_sweeper(sweeper, stop)
        stop.set()
        rt.lanes.shutdown()
