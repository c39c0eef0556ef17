"""Soak under faults: the simulator sends notifications and async requests while Redis restarts, workers
are SIGKILLed mid-batch, the web process restarts and a handler fails at random. Then every notification
must have reached the healthy handler, and every async request must have reached its handler once.

    python -m tests.benchmarks.soak [--notifications 100000] [--duration 60] [--async-requests 200]
                                    [--kills 2] [--workers 1] [--timeout 600] [--report FILE]

- Redis: a private redis-server with ``appendonly yes`` (``appendfsync everysec``), restarted with
  SIGTERM on the same port and directory (``RedisServer.stop()``/``start()``), later SIGKILLed and
  started again, full for 10 s (``maxmemory`` 1 byte, ``noeviction``: every write refused), and closing
  idle client connections for a while (``CONFIG SET timeout 1``, as managed Redis does);
- what the soak checks after a Redis SIGKILL: with ``appendfsync everysec`` Redis may lose the writes of
  the last second before the kill, by its own contract, acknowledged batches included. A notification
  whose batch was acknowledged within FSYNC_WINDOW (2 s) before a SIGKILL and that never arrived is
  counted apart ("lost in Redis' fsync window", reported, allowed); so is an async request issued,
  answered or handed to its handler in that window (Redis may forget the settlement or the call's
  claim, so the handler may be called again). Anything else lost fails the run;
- poison: batches PUT straight to the web with an async-response whose id Redis cannot encode
  (``"\ud800"``) or whose id is a number, and an item that fails validation, next to good
  notifications that must all arrive;
- async hand-off kills: a worker started with ``DEVICEHOOKS_TEST_KILL_AT`` dies at each named point
  (after settling a batch's async-responses, before and after a named handler's call);
- settled means: the sender idle and nothing queued, in RQ's intermediate list, started, scheduled or
  deferred, twice in a row; jobs in ``rq:failed`` fail the run;
- the handlers record into a second Redis (the recorder) that is never faulted;
- web: the Procfile's command; restarted with SIGTERM (gunicorn's graceful stop) on the same port;
- workers: the Procfile's command; SIGKILLed with their scheduler child, like a dyno that dies, while a
  batch job is running and after the healthy handler took its events; a new worker is started at once;
- handlers (tests/fixtures/soak_handlers.py) record every call in Redis: ``soak-healthy``,
  ``soak-flaky`` (fails ``--fail-rate`` of its calls, retried by the product) and ``soak-async``
  (named by every async request, ``AsyncTracker.request(..., handler="soak-async")``);
- the sender is the simulator in this process, at ``notifications / duration`` per second.

A process that exits on its own is an incident: it is reported and started again, as a platform would.
Exit status: 0 when nothing was lost and every async request reached its handler exactly once, 1 when
something was lost or duplicated where it must not be, 2 when the run could not finish in time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.registry import DeferredJobRegistry, FailedJobRegistry

from app.config import KILL_POINTS
from app.dm.asyncs import AsyncTracker
from app.dm.client import DMClient
from app.redis_server import RedisServer, free_port
from app.simulator import SimulatorConfig, SimulatorServer
from app.simulator.load import LoadRun
from tests.benchmarks.common import (
    SECRET_HEADERS,
    process_tree,
    product_env,
    start_web,
    start_worker,
)
from tests.fixtures.soak_handlers import (
    ASYNC_HANDLER,
    ASYNC_KEY,
    FLAKY_FAILURES_KEY,
    FLAKY_KEY,
    HEALTHY_KEY,
    HEALTHY_LAST_KEY,
)
from tests.support import stop
from workers.deadletters import PREFIX as DEAD_PREFIX

logger = logging.getLogger(__name__)

API_KEY = "ak_simulator"
QUEUE = "soak"
POLL = 0.05
FSYNC_WINDOW = 2.0  # s before a Redis SIGKILL whose acknowledged writes Redis may lose (appendfsync everysec)
REDIS_FULL_SECONDS = 10.0
IDLE_TIMEOUT_SECONDS = 5.0
POISON_BODIES = 10
Echo = Callable[[str], object]


@dataclass
class SoakConfig:
    """What the soak sends and which faults it injects."""

    notifications: int = 100_000
    duration: float = 60.0  # s over which the simulator generates the notifications
    async_requests: int = 200
    kills: int = 2
    workers: int = 1
    batch_size: int = 1_000
    fail_rate: float = 0.1
    timeout: float = 600.0  # hard bound of the whole run
    async_timeout: float = 300.0  # s before an unanswered async request times out (to its handler)
    logs: Path | None = None
    redis_kill: bool = True
    redis_full: float = REDIS_FULL_SECONDS  # s; 0 = no Redis-full fault
    idle_timeout: bool = True
    poison: int = POISON_BODIES
    async_kills: tuple[str, ...] = KILL_POINTS

    def fault_names(self) -> list[str]:
        """The faults in order."""
        faults = ["redis-restart", "worker-kill", "web-restart"]
        faults += ["redis-kill"] if self.redis_kill else []
        faults += ["redis-full"] if self.redis_full else []
        faults += ["idle-timeout"] if self.idle_timeout else []
        faults += ["poison"] if self.poison else []
        faults += [f"async-kill-{point}" for point in self.async_kills]
        faults += ["worker-kill"] * (self.kills - 1)
        if self.kills == 0:
            faults.remove("worker-kill")
        return faults

    def schedule(self) -> list[tuple[float, str]]:
        """(share of notifications generated, fault) in order, spread over the sending."""
        faults = self.fault_names()
        step = 0.8 / (len(faults) + 1)
        return [(0.1 + step * (i + 1), name) for i, name in enumerate(faults)]


@dataclass
class Fault:
    """One injected fault: its window (time.time()) and what happened."""

    name: str
    start: float
    end: float = 0.0
    detail: str = ""
    pids: list[int] = field(default_factory=list)


@dataclass
class Delivery:
    """One handler call that carried an event."""

    t: float
    pid: int
    job: str | None
    enqueued: float | None


@dataclass
class HandlerLog:
    """Every delivery of every uid to one handler, read incrementally from its Redis list."""

    key: str
    offset: int = 0
    calls: int = 0
    deliveries: dict[str, list[Delivery]] = field(default_factory=lambda: defaultdict(list))

    def read(self, redis: Redis) -> None:
        """Fold in the records appended since the last read."""
        raw = redis.lrange(self.key, self.offset, self.offset + 49_999)
        self.offset += len(raw)
        for line in raw:
            rec = json.loads(line)
            self.calls += 1
            delivery = Delivery(rec["t"], rec["pid"], rec.get("job"), rec.get("enqueued"))
            for uid in rec["uids"] if "uids" in rec else [rec.get("id")]:
                self.deliveries[uid].append(delivery)

    def missing(self, expected: set[str]) -> set[str]:
        """Expected keys never delivered."""
        return {key for key in expected if key not in self.deliveries}

    def duplicates(self) -> dict[str, list[Delivery]]:
        """Keys delivered more than once."""
        return {key: d for key, d in self.deliveries.items() if len(d) > 1}


@dataclass
class SoakReport:
    """The outcome: what was sent, lost, duplicated (and why), and the faults."""

    config: SoakConfig
    seconds: float = 0.0
    sent: int = 0
    sim_stats: dict[str, Any] = field(default_factory=dict)
    healthy_missing: int = 0
    healthy_extra: int = 0
    healthy_dup_uids: int = 0
    healthy_causes: Counter[str] = field(default_factory=Counter)
    window_lost: int = 0  # lost within Redis' fsync window before a SIGKILL (allowed, reported)
    poison_sent: int = 0
    rejections: int = 0
    failed_jobs: int = 0
    flaky_failures: int = 0
    flaky_missing: int = 0
    flaky_dead: int = 0
    flaky_extra: int = 0
    flaky_causes: Counter[str] = field(default_factory=Counter)
    async_issued: int = 0
    async_refused: Counter[str] = field(default_factory=Counter)
    async_calls: Counter[int] = field(default_factory=Counter)  # calls per id -> how many ids
    async_window: int = 0  # async ids issued or answered in an fsync window, left out of async_calls
    async_states: Counter[str] = field(default_factory=Counter)
    faults: list[Fault] = field(default_factory=list)
    incidents: list[str] = field(default_factory=list)
    finished: bool = False
    logs: str = ""
    t0: float = 0.0  # time.time() at the start, the origin of the fault times

    @property
    def lost(self) -> int:
        """Notifications a handler never got (healthy, or flaky neither delivered nor dead-lettered)."""
        return self.healthy_missing + self.flaky_missing

    @property
    def async_exactly_once(self) -> bool:
        """Every issued async request reached its handler exactly once."""
        return set(self.async_calls) <= {1}

    @property
    def ok(self) -> bool:
        """Nothing lost, async exactly once, no job failed for good, and the run settled."""
        return self.finished and not self.lost and self.async_exactly_once and not self.failed_jobs

    def markdown(self) -> str:
        """The report."""
        cfg = self.config
        stats = self.sim_stats
        lines = [
            f"## Soak: {cfg.notifications:,} notifications + {cfg.async_requests} async requests, faults",
            "",
            f"{'PASS' if self.ok else 'FAIL'}: {self.lost} lost ({self.window_lost} in fsync windows), "
            f"{self.failed_jobs} failed jobs, "
            f"async exactly once: {self.async_exactly_once}, "
            f"settled: {self.finished}; {self.seconds:.0f} s; {cfg.workers} worker process(es), "
            f"{cfg.batch_size:,}-item batches at most, handler failure rate {cfg.fail_rate:.0%}",
            "",
            "| | count |",
            "|---|---|",
            f"| notifications sent (simulator) | {self.sent:,} |",
            f"| PUTs failed and retried by the sender | {stats.get('failures', 0):,} |",
            f"| events dropped by the sender | {stats.get('dropped', 0):,} |",
            f"| poison bodies PUT (their good notifications expected) / items rejected | "
            f"{self.poison_sent} / {self.rejections} |",
            f"| **healthy handler: notifications never delivered** | **{self.healthy_missing}** |",
            f"| lost in Redis' fsync window before a SIGKILL (allowed) | {self.window_lost} |",
            f"| **jobs failed for good (rq:failed)** | **{self.failed_jobs}** |",
            f"| healthy handler: duplicate deliveries | {self.healthy_extra:,} |",
            f"| healthy handler: uids delivered more than once | {self.healthy_dup_uids:,} |",
            f"| flaky handler: injected failures (retried) | {self.flaky_failures:,} |",
            f"| **flaky handler: never delivered nor dead-lettered** | **{self.flaky_missing}** |",
            f"| flaky handler: dead-lettered | {self.flaky_dead} |",
            f"| flaky handler: duplicate deliveries | {self.flaky_extra:,} |",
            f"| async requests issued | {self.async_issued} |",
            f"| async requests refused at creation (Redis down) | {sum(self.async_refused.values())} |",
            f"| **async handler calls per request** | **{_calls(self.async_calls)}** |",
            f"| async requests in an fsync window (not counted above) | {self.async_window} |",
            f"| async results | {', '.join(f'{k} {v}' for k, v in sorted(self.async_states.items()))} |",
            "",
            "| fault | at s | lasted s | detail |",
            "|---|---|---|---|",
        ]
        origin = self.t0
        for fault in self.faults:
            timing = f"{fault.start - origin:.1f} | {fault.end - fault.start:.2f}"
            lines.append(f"| {fault.name} | {timing} | {fault.detail} |")
        lines += ["", "| duplicates (healthy handler) by cause | deliveries |", "|---|---|"]
        lines += [f"| {cause} | {n:,} |" for cause, n in self.healthy_causes.most_common()] or [
            "| none | 0 |"
        ]
        if self.flaky_causes:
            lines += ["", "| duplicates (flaky handler) by cause | deliveries |", "|---|---|"]
            lines += [f"| {cause} | {n:,} |" for cause, n in self.flaky_causes.most_common()]
        if self.incidents:
            lines += ["", "Incidents (processes that exited on their own, restarted):", ""]
            lines += [f"- {incident}" for incident in self.incidents]
        lines += ["", f"Logs: {self.logs}", ""]
        return "\n".join(lines)


def _calls(counter: Counter[int]) -> str:
    """'1 call: 200 ids' style summary."""
    if not counter:
        return "none issued"
    return ", ".join(f"{calls} call(s): {ids} id(s)" for calls, ids in sorted(counter.items()))


class Soak:
    """One soak run: starts everything, injects the faults, checks, stops everything it started."""

    def __init__(self, cfg: SoakConfig, echo: Echo = print) -> None:
        self.cfg = cfg
        self.echo = echo
        self.logs = cfg.logs or Path(tempfile.mkdtemp(prefix="devicehooks-soak-"))
        self.redis_server = RedisServer(directory=str(self.logs / "redis"), appendonly=True)
        self.recorder_server = RedisServer(directory=str(self.logs / "recorder"))
        self.records: Redis | None = None
        self.async_issued_at: dict[str, float] = {}
        self.poison_uids: set[str] = set()
        self.poison_sent = 0
        self.redis_kills: list[float] = []  # time.time() of each Redis SIGKILL
        self.port = free_port()
        self.env: dict[str, str] = {}
        self.web: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.started: list[subprocess.Popen[bytes]] = []
        self.spawned = 0
        self.faults: list[Fault] = []
        self.incidents: list[str] = []
        self.culprits: dict[int, str] = {}  # pid -> the fault that ended it
        self.async_ids: list[str] = []
        self.async_refused: Counter[str] = Counter()
        self.healthy = HandlerLog(HEALTHY_KEY)
        self.flaky = HandlerLog(FLAKY_KEY)
        self.asyncs = HandlerLog(ASYNC_KEY)
        self.stop_event = threading.Event()
        self.idle_checks = 0
        self.t0 = time.time()
        self.redis: Redis | None = None
        self.sim: SimulatorServer | None = None
        self.load: LoadRun | None = None

    # --- processes -----------------------------------------------------------------------------------

    def start_web(self) -> None:
        """The Procfile's web command on our port."""
        self.web = start_web(self.env, self.port, self.logs / "web.log")
        self.started.append(self.web)

    def start_worker(self) -> subprocess.Popen[bytes]:
        """The Procfile's worker command; its log file is numbered."""
        self.spawned += 1
        proc = start_worker(self.env, self.logs / f"worker-{self.spawned}.log")
        self.workers.append(proc)
        self.started.append(proc)
        return proc

    def supervise(self) -> None:
        """Start again a web or worker process that exited on its own (an incident, reported)."""
        for proc in list(self.workers):
            if proc.poll() is not None:
                self.workers.remove(proc)
                self.incidents.append(f"{self._clock()} worker pid {proc.pid} exited with {proc.returncode}")
                self.culprits.setdefault(proc.pid, f"worker pid {proc.pid} exited on its own")
                self.start_worker()
        if self.web is not None and self.web.poll() is not None:
            self.incidents.append(f"{self._clock()} web pid {self.web.pid} exited with {self.web.returncode}")
            self.start_web()

    def _clock(self) -> str:
        """Seconds since the run started, for incident lines."""
        return f"t={time.time() - self.t0:.1f}s"

    def stop_all(self) -> None:
        """Stop every process this run started, by pid (children of workers too)."""
        for proc in self.started:
            tree = process_tree(proc.pid) if proc.poll() is None else []
            stop(proc, signal.SIGTERM, timeout=30)
            for pid in tree[1:]:
                _kill_quietly(pid, signal.SIGKILL)
        if self.sim is not None:
            self.sim.stop()
        self.redis_server.stop()
        self.recorder_server.stop()

    # --- faults --------------------------------------------------------------------------------------

    def restart_redis(self) -> Fault:
        """Stop Redis (SIGTERM: it writes its AOF), wait for the sender to see failures, start it again."""
        assert self.sim is not None
        fault = Fault("redis-restart", time.time())
        before = self.sim.sim.stats()["failures"]
        self.redis_server.stop()
        _wait(lambda: self.sim is not None and self.sim.sim.stats()["failures"] > before, 10)
        self.redis_server.start()
        fault.end = time.time()
        seen = self.sim.sim.stats()["failures"] - before
        fault.detail = f"SIGTERM, down {fault.end - fault.start:.1f} s, {seen} PUT(s) refused meanwhile"
        return fault

    def kill_redis(self) -> Fault:
        """SIGKILL Redis (no AOF rewrite, no fsync: up to ~1 s of writes may go), start it again at once."""
        assert self.redis_server.process is not None
        fault = Fault("redis-kill", time.time())
        self.redis_server.process.kill()
        self.redis_server.process.wait(10)
        self.redis_kills.append(time.time())
        self.redis_server.start()
        fault.end = time.time()
        fault.detail = f"SIGKILL (appendfsync everysec), down {fault.end - fault.start:.1f} s"
        return fault

    def fill_redis(self) -> Fault:
        """Redis full for REDIS_FULL_SECONDS: maxmemory 1 byte with noeviction refuses every write."""
        assert self.redis is not None
        fault = Fault("redis-full", time.time())
        self.redis.config_set("maxmemory-policy", "noeviction")
        self.redis.config_set("maxmemory", 1)
        self.wait_for(lambda: False, time.monotonic() + self.cfg.redis_full)
        self.redis.config_set("maxmemory", 0)
        fault.end = time.time()
        fault.detail = f"maxmemory 1 byte + noeviction for {fault.end - fault.start:.1f} s"
        return fault

    def idle_disconnects(self) -> Fault:
        """Redis closes client connections idle for 1 s (CONFIG SET timeout 1) for a few seconds."""
        assert self.redis is not None
        fault = Fault("idle-timeout", time.time())
        before = int(self.redis.info("stats").get("total_connections_received", 0))
        self.redis.config_set("timeout", 1)
        self.wait_for(lambda: False, time.monotonic() + IDLE_TIMEOUT_SECONDS)
        self.redis.config_set("timeout", 0)
        after = int(self.redis.info("stats").get("total_connections_received", 0))
        fault.end = time.time()
        fault.detail = (
            f"timeout 1 s for {IDLE_TIMEOUT_SECONDS:g} s; {after - before} new connection(s) meanwhile"
        )
        return fault

    def send_poison(self) -> Fault:
        """PUT bodies that mix good notifications with poison straight to the web (retrying a 503).

        Even bodies carry an async-response whose id Redis cannot encode (``"\\ud800"``, valid JSON);
        odd ones an async-response whose id is a number. Each also has a notification without a path.
        A web that refuses a body outright (4xx) is not retried and its good notifications not expected.
        """
        fault = Fault("poison", time.time())
        url = f"http://127.0.0.1:{self.port}/notify"
        headers = {**json.loads(SECRET_HEADERS), "Content-Type": "application/json"}
        refused = 0
        for i in range(self.cfg.poison):
            uids = [f"poison-{i}-{j}" for j in range(3)]
            bad_id: object = "\ud800" if i % 2 == 0 else 12345
            body = {
                "notifications": [
                    {"ep": "poison-ep", "path": "/3303/0/5700", "payload": "MjEuNQ==", "uid": uid}
                    for uid in uids
                ]
                + [{"ep": "poison-ep", "payload": "MQ=="}],  # no path: rejected with its reason
                "async-responses": [{"id": bad_id, "status": 200, "payload": "MQ=="}],
            }
            status = self._put(url, json.dumps(body), headers)
            if status == 204:
                self.poison_uids.update(uids)
                self.poison_sent += 1
            else:
                refused += 1
        fault.end = time.time()
        fault.detail = (
            f"{self.poison_sent} bodies acknowledged (3 good notifications + 2 poison items each), "
            f"{refused} refused by the web"
        )
        return fault

    def _put(self, url: str, body: str, headers: dict[str, str]) -> int:
        """PUT one body until answered other than 503 (at most 20 tries); the last status, 0 if none."""
        status = 0
        for _ in range(20):
            try:
                status = requests.put(url, data=body, headers=headers, timeout=10).status_code
            except requests.RequestException:
                status = 0
            if status not in (0, 503):
                return status
            self.wait_for(lambda: False, time.monotonic() + 0.5)
        return status

    def async_kill(self, point: str) -> Fault:
        """An extra worker that SIGKILLs itself at ``point`` (DEVICEHOOKS_TEST_KILL_AT); not restarted."""
        fault = Fault(f"async-kill-{point}", time.time())
        self.spawned += 1
        log = self.logs / f"worker-{self.spawned}-kill-{point}.log"
        proc = start_worker({**self.env, "DEVICEHOOKS_TEST_KILL_AT": point}, log)
        self.started.append(proc)
        self.culprits[proc.pid] = fault.name
        died = self._issue_async_until(lambda: proc.poll() is not None, 30)
        if not died:
            stop(proc, signal.SIGTERM, timeout=30)
        for pid in process_tree(proc.pid) if proc.poll() is None else []:
            _kill_quietly(pid, signal.SIGKILL)
        fault.end = time.time()
        fault.pids = [proc.pid]
        reached = died and proc.returncode == -signal.SIGKILL
        fault.detail = f"pid {proc.pid} {'died there' if reached else 'never reached it in 30 s; stopped'}"
        return fault

    def _issue_async_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Issue async requests (every 0.3 s, each naming the soak's handler) until done() or timeout."""
        assert self.sim is not None
        assert self.redis is not None
        tracker = AsyncTracker(self.redis, queue_name=QUEUE, default_timeout=self.cfg.async_timeout)
        client = DMClient(self.sim.url, API_KEY, timeout=10, max_retries=2, backoff=0.05, max_backoff=0.2)
        devices = [d["id"] for d in self.sim.sim.directory()]
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if done():
                    return True
                self._one_async_request(tracker, client, devices[len(self.async_ids) % len(devices)])
                self.wait_for(done, time.monotonic() + 0.3)
            return done()
        finally:
            client.close()

    def _one_async_request(self, tracker: AsyncTracker, client: DMClient, device: str) -> None:
        """Issue one device request naming the soak's async handler; count it, or count its refusal."""
        async_id = tracker.new_id()
        self.async_issued_at[async_id] = time.time()
        try:
            tracker.request(client, device, "GET", "/3/0/0", handler=ASYNC_HANDLER, async_id=async_id)
        except Exception as exc:
            self.async_refused[type(exc).__name__] += 1
            return
        self.async_ids.append(async_id)

    def kill_worker(self, number: int) -> Fault:
        """SIGKILL the oldest worker (and its scheduler) mid-batch, after the healthy handler took events."""
        assert self.redis is not None
        victim = self.workers[0]
        fault = Fault(f"worker-kill-{number}", time.time())
        job, held = self._wait_mid_batch(victim.pid, 20)
        tree = process_tree(victim.pid)
        for pid in tree:
            _kill_quietly(pid, signal.SIGKILL)
        victim.wait(10)
        self.workers.remove(victim)
        for pid in tree:
            self.culprits[pid] = fault.name
        self.start_worker()
        fault.end = time.time()
        fault.pids = tree
        state = f"after the healthy handler took its {held}" if held else "(handler not reached)"
        fault.detail = f"pid {victim.pid} (+{len(tree) - 1} child) in job {job} {state}; new worker started"
        return fault

    def _wait_mid_batch(self, pid: int, timeout: float) -> tuple[str | None, str]:
        """Wait until worker `pid` runs a job whose events the healthy handler took: preferably one with
        notifications and an async-response, later one with either; (job, what it held)."""
        assert self.redis is not None
        preference = ("mixed", "async", "notifications")
        started = time.monotonic()
        while time.monotonic() < started + timeout:
            try:
                assert self.records is not None
                last = self.records.get(f"{HEALTHY_LAST_KEY}{pid}")
                job, held = _text(last).split() if last else ("", "")
                running = bool(job) and self.redis.hget(f"rq:job:{job}", "status") == b"started"
            except RedisError:
                running = False
            accepted = preference[: 1 + int(3 * (time.monotonic() - started) / timeout)]
            if running and held in accepted:
                return job, held
            time.sleep(0.002)
        return None, ""

    def restart_web(self) -> Fault:
        """SIGTERM the web process (gunicorn finishes requests in hand) and start it on the same port."""
        assert self.web is not None
        fault = Fault("web-restart", time.time())
        old = self.web.pid
        stop(self.web, signal.SIGTERM, timeout=30)
        self.start_web()
        fault.end = time.time()
        fault.detail = f"pid {old} -> {self.web.pid}, same port"
        return fault

    def inject(self, name: str) -> None:
        """Run one fault and log it."""
        kills = sum(1 for f in self.faults if f.name.startswith("worker-kill"))
        if name == "redis-restart":
            fault = self.restart_redis()
        elif name == "worker-kill":
            fault = self.kill_worker(kills + 1)
        elif name == "redis-kill":
            fault = self.kill_redis()
        elif name == "redis-full":
            fault = self.fill_redis()
        elif name == "idle-timeout":
            fault = self.idle_disconnects()
        elif name == "poison":
            fault = self.send_poison()
        elif name.startswith("async-kill-"):
            fault = self.async_kill(name.removeprefix("async-kill-"))
        else:
            fault = self.restart_web()
        self.faults.append(fault)
        self.echo(f"soak: {fault.name}: {fault.detail}")

    # --- traffic -------------------------------------------------------------------------------------

    def start_sim(self) -> SimulatorServer:
        """The simulator, 20x faster than real time for its delays, with our web process as callback."""
        config = SimulatorConfig(
            api_keys=(API_KEY,), devices=20, batch_size=self.cfg.batch_size, time_scale=0.05,
            notification_interval=0, lifecycle=False, record_ids=True,
        )  # fmt: skip
        self.sim = SimulatorServer(config).start()
        client = DMClient(self.sim.url, API_KEY, timeout=10)
        client.put_callback(f"http://127.0.0.1:{self.port}/notify", json.loads(SECRET_HEADERS))
        client.close()
        return self.sim

    def send_notifications(self) -> threading.Thread:
        """Generate the notifications at a fixed rate in a thread."""
        assert self.sim is not None
        rate = self.cfg.notifications / self.cfg.duration
        self.load = LoadRun(self.sim.sim, self.cfg.notifications, rate, echo=lambda line: None)
        thread = threading.Thread(
            target=self.load.run, args=(self.stop_event,), name="soak-load", daemon=True
        )
        thread.start()
        return thread

    def send_async_requests(self) -> threading.Thread:
        """Issue the async requests evenly over the sending time, in a thread."""
        thread = threading.Thread(target=self._async_requests, name="soak-async", daemon=True)
        thread.start()
        return thread

    def _async_requests(self) -> None:
        """One device request at a time, each naming the soak's async handler."""
        assert self.sim is not None
        assert self.redis is not None
        tracker = AsyncTracker(self.redis, queue_name=QUEUE, default_timeout=self.cfg.async_timeout)
        client = DMClient(self.sim.url, API_KEY, timeout=10, max_retries=2, backoff=0.05, max_backoff=0.2)
        devices = [d["id"] for d in self.sim.sim.directory()]
        start = time.monotonic()
        for i in range(self.cfg.async_requests):
            pause = start + self.cfg.duration * i / max(1, self.cfg.async_requests) - time.monotonic()
            if self.stop_event.wait(max(0.0, pause)):
                break
            self._one_async_request(tracker, client, devices[i % len(devices)])
        client.close()

    # --- waiting and checking ------------------------------------------------------------------------

    def _reached(self, share: float) -> Callable[[], bool]:
        """A predicate: the sender generated at least `share` of the notifications."""
        return lambda: self.progress() >= share

    def progress(self) -> float:
        """Share of the notifications generated so far."""
        return self.load.generated / self.cfg.notifications if self.load else 0.0

    def read_logs(self) -> bool:
        """Fold in new handler records; False while Redis is unreachable."""
        assert self.records is not None
        try:
            for log in (self.healthy, self.flaky, self.asyncs):
                log.read(self.records)
        except RedisError:
            return False
        return True

    def sent_uids(self) -> set[str]:
        """Uids of every notification the simulator sent (other keys contain a colon)."""
        assert self.sim is not None
        return {key for key in self.sim.sim.sent_event_ids() if ":" not in key} | self.poison_uids

    def dead_lettered(self, handler: str) -> set[str]:
        """Uids in the dead letters of one handler."""
        assert self.redis is not None
        uids: set[str] = set()
        for key in self.redis.scan_iter(DEAD_PREFIX + "*", count=1000):
            values = self.redis.hmget(key, ["handler", "events"])
            if values[0] is not None and _text(values[0]) == handler and values[1]:
                uids.update(e.get("uid") for e in json.loads(values[1]))
        return uids

    def settled(self, sender_done: bool) -> bool:
        """Nothing left to do, twice in a row: the sender idle, no job queued, running or scheduled."""
        if not sender_done or not self.read_logs():
            self.idle_checks = 0
            return False
        try:
            idle = self._idle()
        except RedisError:
            idle = False
        self.idle_checks = self.idle_checks + 1 if idle else 0
        return self.idle_checks >= 2

    def _idle(self) -> bool:
        """The sender has nothing queued or in flight and RQ has no job queued, started or scheduled."""
        assert self.redis is not None
        assert self.sim is not None
        stats = self.sim.sim.stats()
        if stats["queued"] or stats["in_flight"]:
            return False
        queue = Queue(QUEUE, connection=self.redis)
        registries = (
            queue.started_job_registry,
            queue.scheduled_job_registry,
            DeferredJobRegistry(queue=queue),
        )
        intermediate = self.redis.llen(queue.intermediate_queue_key)
        return not (len(queue) or intermediate or any(len(r) for r in registries))

    def wait_for(self, predicate: Callable[[], bool], deadline: float, every: float = POLL) -> bool:
        """Poll a condition (supervising processes meanwhile) until it holds or the deadline passes."""
        while time.monotonic() < deadline:
            self.supervise()
            if predicate():
                return True
            time.sleep(every)
        return False

    # --- the run -------------------------------------------------------------------------------------

    def run(self) -> SoakReport:
        """Start, send, inject the faults, wait until settled, check; always stop what was started."""
        began = time.monotonic()
        deadline = began + self.cfg.timeout
        self.t0 = time.time()
        report = SoakReport(self.cfg, logs=str(self.logs), t0=self.t0)
        try:
            self.redis_server.start()
            self.recorder_server.start()
            self.redis = Redis.from_url(self.redis_server.url, socket_timeout=10, socket_connect_timeout=2)
            self.records = Redis.from_url(self.recorder_server.url, socket_timeout=10)
            self.env = product_env(
                self.redis_server.url,
                "tests.fixtures.soak_handlers",
                QUEUE,
                SOAK_FAIL_RATE=str(self.cfg.fail_rate),
                SOAK_RECORD_URL=self.recorder_server.url,
            )
            self.start_web()
            for _ in range(self.cfg.workers):
                self.start_worker()
            self.start_sim()
            load = self.send_notifications()
            requests_thread = self.send_async_requests()
            for share, name in self.cfg.schedule():
                if not self.wait_for(self._reached(share), deadline):
                    raise TimeoutError(f"the sender did not reach {share:.0%} in time")
                self.inject(name)
            self.echo("soak: faults done; waiting until every event is delivered and nothing is pending")

            def done() -> bool:
                return self.settled(not load.is_alive() and not requests_thread.is_alive())

            report.finished = self.wait_for(done, deadline, every=1.0)
            self.read_logs()
            self.check(report)
        finally:
            self.stop_event.set()
            self.stop_all()
        report.seconds = time.monotonic() - began
        return report

    def check(self, report: SoakReport) -> None:
        """Fill the report: losses, duplicates and their causes, async exactly-once, the faults."""
        assert self.sim is not None
        assert self.redis is not None
        sent = self.sent_uids()
        report.sent = len(sent)
        report.sim_stats = self.sim.sim.stats()
        acked_at = self.sim.sim.channel.acked_at()
        excused = {uid for uid in sent if self.in_fsync_window(acked_at.get(uid))}
        healthy_missing = self.healthy.missing(sent)
        report.window_lost = len(healthy_missing & excused)
        report.healthy_missing = len(healthy_missing - excused)
        report.poison_sent = self.poison_sent
        report.rejections = int(self.redis.llen("devicehooks:rejections"))
        queue = Queue(QUEUE, connection=self.redis)
        report.failed_jobs = len(FailedJobRegistry(queue=queue))
        dups = self.healthy.duplicates()
        report.healthy_dup_uids = len(dups)
        report.healthy_extra = sum(len(d) - 1 for d in dups.values())
        report.healthy_causes = self.causes(dups)
        dead = self.dead_lettered("soak-flaky")
        report.flaky_dead = len(dead & sent)
        report.flaky_missing = len(self.flaky.missing(sent) - dead - excused)
        flaky_dups = self.flaky.duplicates()
        report.flaky_extra = sum(len(d) - 1 for d in flaky_dups.values())
        report.flaky_causes = self.causes(flaky_dups)
        assert self.records is not None
        report.flaky_failures = int(self.records.get(FLAKY_FAILURES_KEY) or 0)
        report.async_issued = len(self.async_ids)
        report.async_refused = self.async_refused
        windowed = {
            i
            for i in self.async_ids
            if self.in_fsync_window(self.async_issued_at.get(i))
            or self.in_fsync_window(acked_at.get(f"async-responses:{i}"))
            or any(self.in_fsync_window(call.t) for call in self.asyncs.deliveries.get(i, []))
        }
        report.async_window = len(windowed)
        report.async_calls = Counter(
            len(self.asyncs.deliveries.get(i, [])) for i in self.async_ids if i not in windowed
        )
        tracker = AsyncTracker(self.redis, queue_name=QUEUE)
        report.async_states = Counter(tracker.get(i).state for i in self.async_ids)
        report.faults = self.faults
        report.incidents = self.incidents

    def in_fsync_window(self, t: float | None) -> bool:
        """True when time t falls within FSYNC_WINDOW before a Redis SIGKILL (its writes may be gone)."""
        return t is not None and any(kill - FSYNC_WINDOW <= t <= kill for kill in self.redis_kills)

    def causes(self, dups: dict[str, list[Delivery]]) -> Counter[str]:
        """Why each extra delivery happened: the same job ran again, or the sender sent the batch again."""
        counts: Counter[str] = Counter()
        for deliveries in dups.values():
            ordered = sorted(deliveries, key=lambda d: d.t)
            for i, extra in enumerate(ordered[1:], start=1):
                earlier = ordered[:i]
                same_job = next((d for d in earlier if d.job and d.job == extra.job), None)
                if same_job is not None:
                    why = self.culprits.get(same_job.pid) or self.window(same_job.t) or "unattributed"
                    counts[f"job ran again ({why})"] += 1
                else:
                    first = ordered[0]
                    when = first.enqueued if first.enqueued is not None else first.t
                    counts[f"sender sent it again: ack lost ({self.window(when) or 'unattributed'})"] += 1
        return counts

    def window(self, t: float) -> str | None:
        """The fault whose window (from 1 s before to 5 s after) contains time t."""
        for fault in self.faults:
            if fault.start - 1 <= t <= fault.end + 5:
                return fault.name
        return None


def _text(value: Any) -> str:
    """A Redis reply as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll a condition until it holds or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(POLL)
    return False


def _kill_quietly(pid: int, sig: int) -> None:
    """Signal a pid this run started; ignore one that is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def main() -> None:
    """Run the soak, print the report, exit non-zero on loss."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--notifications", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds over which they are sent")
    parser.add_argument("--async-requests", type=int, default=200)
    parser.add_argument("--kills", type=int, default=2, help="worker SIGKILLs")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--fail-rate", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=600.0, help="bound of the whole run, seconds")
    parser.add_argument("--report", type=Path, default=None, help="also write the report to this file")
    args = parser.parse_args()
    cfg = SoakConfig(
        notifications=args.notifications, duration=args.duration, async_requests=args.async_requests,
        kills=args.kills, workers=args.workers, batch_size=args.batch_size, fail_rate=args.fail_rate,
        timeout=args.timeout,
    )  # fmt: skip
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        report = Soak(cfg, lambda line: print(line, flush=True)).run()
    except TimeoutError as exc:
        print(f"soak: did not finish: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    text = report.markdown()
    print(text)
    if args.report:
        args.report.write_text(text)
    raise SystemExit(0 if report.ok else (2 if not report.finished and not report.lost else 1))


if __name__ == "__main__":
    main()
