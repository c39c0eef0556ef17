"""Recovery of interrupted jobs: a job never waits long for a dead worker, and never runs twice while
its worker lives.

Each worker process keeps a short heartbeat key per RQ worker name, ``devicehooks:alive:<name>``
(TTL :data:`HEARTBEAT_TTL`, refreshed every :data:`HEARTBEAT_INTERVAL` by a thread that a long job
in the main thread does not stop), and every :data:`RECOVERY_INTERVAL` one worker at a time (a lock)
looks for interrupted jobs:

- in the started registry, a job whose worker is dead: on this host, its pid is gone (known at once);
  on any host, its heartbeat expired (within ``HEARTBEAT_TTL``). It is queued again at once, as one
  try of its Retry (with none left: RQ's abandoned-job handling, ``rq:failed``). RQ alone waits for
  the job's heartbeat (job timeout + 60 s, ~11 minutes) and a maintenance pass (every 45 s idle);
- in ``rq:queue:<name>:intermediate``, a job a worker moved there (``LMOVE``) but never started, so it is
  in no registry (the worker or Redis died in between): seen on two passes :data:`INTERMEDIATE_GRACE`
  apart and still not started, it is put back on its queue in one Lua step (RQ alone: > 1 minute and a
  second maintenance pass).

A worker that never wrote a heartbeat (another version) is judged by RQ's registration as before: dead
when its ``rq:worker`` key is gone or, on this host, when its pid is. The lock of a scheduler whose
process died on this host is freed too, so retries do not wait 61 s for it to expire.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.job import Job, JobStatus
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
from rq.scripts import release_lock
from rq.serializers import JSONSerializer

from app.redis_conn import text

logger = logging.getLogger(__name__)

HEARTBEAT_PREFIX = "devicehooks:alive:"
HEARTBEAT_SET = "devicehooks:heartbeat-workers"  # names of workers that keep a heartbeat key
HEARTBEAT_TTL = 10  # s: a worker on another machine is known dead this long after its last beat
HEARTBEAT_INTERVAL = 2.0  # s
RECOVERY_INTERVAL = 2.0  # s
RECOVERY_LOCK = "devicehooks:recovery:lock"
RECOVERY_LOCK_TTL = 30  # s: a pass that dies holding the lock delays the next one at most this long
INTERMEDIATE_GRACE = 5.0  # s a job may sit in the intermediate list between LMOVE and its start
INTERMEDIATE_SEEN = "devicehooks:intermediate:seen:"  # + queue name: hash job id -> first seen

# KEYS: intermediate list, queue list, job hash, seen hash. ARGV: job id.
# Put a job that never started back on its queue, unless a worker started it meanwhile.
_REQUEUE_LUA = """
local status = redis.call('HGET', KEYS[3], 'status')
redis.call('HDEL', KEYS[4], ARGV[1])
if status == 'started' or not status then return 0 end
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
"""


def pid_alive(pid: int) -> bool:
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


def worker_gone(redis: Redis, name: str | None, use_heartbeats: bool = True) -> bool:
    """True when the named worker is dead: its heartbeat expired, its pid on this host is gone, or (a
    worker without heartbeat) its RQ registration expired or recorded its death.

    ``use_heartbeats=False`` right after Redis was away or full: heartbeats could not be refreshed then,
    so a missing one proves nothing until every live worker had the time to beat again.
    """
    if not name:
        return True
    data = redis.hmget(f"rq:worker:{name}", ["hostname", "pid", "death"])
    hostname, pid, death = (text(v) if v is not None else None for v in data)
    if death:
        return True
    if hostname == socket.gethostname() and pid is not None and not pid_alive(int(pid)):
        return True
    if use_heartbeats and redis.sismember(HEARTBEAT_SET, name):
        return not redis.exists(HEARTBEAT_PREFIX + name)
    return hostname is None


def recover_abandoned(queue: Queue, gone: Collection[str] = (), use_heartbeats: bool = True) -> list[str]:
    """Put started jobs whose worker is dead back on the queue now, counting one try of their Retry.

    An interruption is no failure to back off from, so the job is queued at once (RQ's own ``retry``
    with its interval would also wait for a scheduler, which may have died with the worker); a job with
    no tries left goes to RQ's abandoned-job handling, which records it in ``rq:failed``.
    """
    registry = queue.started_job_registry
    redis = queue.connection
    requeued, exhausted = [], []
    for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
        job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
        if job.worker_name not in gone and not worker_gone(redis, job.worker_name, use_heartbeats):
            continue
        member = f"{job_id}:{execution_id}"
        if job.retries_left and job.get_status() == JobStatus.STARTED:
            job.retries_left -= 1
            with redis.pipeline() as pipe:
                pipe.zrem(registry.key, member)
                queue._enqueue_job(job, pipeline=pipe)
                pipe.execute()
            requeued.append(job_id)
        else:
            redis.zadd(registry.key, {member: 0}, xx=True)
            exhausted.append(job_id)
    if exhausted:
        registry.cleanup()
    if requeued or exhausted:
        logger.warning(
            "jobs of dead workers: %s queued again, %s with no tries left (RQ's failed registry)",
            requeued, exhausted,
        )  # fmt: skip
    return requeued + exhausted


def requeue_stuck_intermediate(queue: Queue, now: float | None = None) -> list[str]:
    """Put back on the queue the jobs that sat in its intermediate list, never started, for the grace."""
    redis = queue.connection
    now = time.time() if now is None else now
    intermediate = queue.intermediate_queue_key
    seen_key = INTERMEDIATE_SEEN + queue.name
    present = list(dict.fromkeys(text(raw) for raw in redis.lrange(intermediate, 0, -1)))
    seen = {text(k): float(v) for k, v in redis.hgetall(seen_key).items()}
    requeue = redis.register_script(_REQUEUE_LUA)
    moved = []
    for job_id in present:
        first = seen.get(job_id)
        if first is None:
            redis.hsetnx(seen_key, job_id, now)
        elif now - first >= INTERMEDIATE_GRACE:
            job_key = queue.job_class.redis_job_namespace_prefix + job_id
            if requeue(keys=[intermediate, queue.key, job_key, seen_key], args=[job_id]):
                moved.append(job_id)
    stale = set(seen) - set(present)
    if stale:
        redis.hdel(seen_key, *stale)
    if moved:
        logger.warning("jobs %s were stuck in %s (never started); put back on the queue", moved, intermediate)
    return moved


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
    if hostname != socket.gethostname() or not pid or int(pid) <= 0 or pid_alive(int(pid)):
        return False
    released = bool(release_lock(redis, lock_key, name))
    if released:
        logger.warning("scheduler lock of %s released: its scheduler (pid %s) is gone", queue.name, pid)
    return released


def prune_heartbeats(redis: Redis) -> None:
    """Forget worker names that have neither a heartbeat nor an RQ registration left."""
    for raw in redis.smembers(HEARTBEAT_SET):
        name = text(raw)
        if not redis.exists(HEARTBEAT_PREFIX + name, f"rq:worker:{name}"):
            redis.srem(HEARTBEAT_SET, name)


def recover(queue: Queue, gone: Collection[str] = (), use_heartbeats: bool = True) -> list[str]:
    """One recovery pass: a dead scheduler's lock, dead workers' started jobs, stuck intermediate jobs.

    One pass at a time across every worker and machine (a lock), so a job is never queued twice.
    """
    redis = queue.connection
    token = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    if not redis.set(RECOVERY_LOCK, token, nx=True, ex=RECOVERY_LOCK_TTL):
        return []
    try:
        release_dead_scheduler_lock(queue)
        recovered = recover_abandoned(queue, gone, use_heartbeats) + requeue_stuck_intermediate(queue)
        prune_heartbeats(redis)
    finally:
        release_lock(redis, RECOVERY_LOCK, token)
    return recovered


def recover_quietly(queue: Queue, gone: Collection[str] = ()) -> list[str]:
    """:func:`recover` without trusting heartbeats (at startup, after an outage), Redis trouble taken as
    weather: logged, left to the next pass of the recovery thread."""
    try:
        return recover(queue, gone, use_heartbeats=False)
    except RedisError as exc:
        logger.warning("recovery pass skipped: Redis unavailable (%s); the next pass retries", exc)
        return []


class Heartbeat:
    """This process's liveness, per RQ worker name, and the periodic recovery pass, in two threads."""

    def __init__(self, redis: Redis, queue: Queue, stop: threading.Event) -> None:
        self.redis = redis
        self.queue = queue
        self.stop = stop
        self.name: str | None = None
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._failing: set[str] = set()
        self._beating_since: float | None = None  # monotonic time of the first good beat since an outage

    def serve(self, name: str) -> None:
        """Beat for worker ``name`` from now on (a restarted RQ worker gets a new name); beat at once."""
        with self._lock:
            previous, self.name = self.name, name
        if previous and previous != name:
            self._quietly("heartbeat", lambda: self.redis.delete(HEARTBEAT_PREFIX + previous))
        self._quietly("heartbeat", self.beat)

    def beat(self) -> None:
        """Refresh the heartbeat key of the current worker name."""
        name = self.name
        if name:
            pipe = self.redis.pipeline(transaction=True)
            pipe.sadd(HEARTBEAT_SET, name)
            pipe.set(HEARTBEAT_PREFIX + name, f"{socket.gethostname()} {os.getpid()}", ex=HEARTBEAT_TTL)
            try:
                pipe.execute()
            except RedisError:
                self._beating_since = None
                raise
            if self._beating_since is None:
                self._beating_since = time.monotonic()

    def heartbeats_trusted(self) -> bool:
        """True once this process has beaten for two intervals in a row: a live worker anywhere had the
        time to refresh a heartbeat that an outage (Redis away, full) let expire."""
        since = self._beating_since
        return since is not None and time.monotonic() - since >= 2 * HEARTBEAT_INTERVAL

    def recover_once(self) -> list[str]:
        """One recovery pass (skipped while another worker runs one)."""
        return recover(self.queue, use_heartbeats=self.heartbeats_trusted())

    def start(self) -> None:
        """Start the heartbeat and recovery threads (daemons; they end with ``stop``)."""
        for what, func, every in (
            ("heartbeat", self.beat, HEARTBEAT_INTERVAL),
            ("recovery", self.recover_once, RECOVERY_INTERVAL),
        ):
            thread = threading.Thread(target=self._loop, args=(what, func, every), name=what, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _loop(self, what: str, func: Callable[[], object], every: float) -> None:
        """Call func every ``every`` s until stop."""
        while not self.stop.wait(every):
            self._quietly(what, func)

    def _quietly(self, what: str, func: Callable[[], object]) -> None:
        """Run one step; a Redis error is said once per outage, then retried on the next tick."""
        try:
            func()
        except RedisError as exc:
            if what not in self._failing:
                logger.warning("%s: Redis unavailable (%s); retrying every few seconds", what, exc)
            self._failing.add(what)
            return
        if what in self._failing:
            logger.warning("%s: Redis answers again", what)
            self._failing.discard(what)

    def close(self) -> None:
        """Stop the threads and drop the heartbeat (a worker that stops cleanly has no job in hand)."""
        self.stop.set()
        for thread in self._threads:
            thread.join(5)
        name = self.name
        if name:
            self._quietly("heartbeat", lambda: self.redis.delete(HEARTBEAT_PREFIX + name))
