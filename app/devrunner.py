"""``devicehooks run``: Redis (embedded unless REDIS_URL is set), the simulator, web and worker, together.

Every child runs in its own process group (session), so the terminal's Ctrl-C reaches only the runner;
before that, Ctrl-C also reached redis-server, Redis exited before the worker and the worker and its
scheduler died on connection errors (6 tracebacks, a stale scheduler lock on the next start). The
runner stops the children in tiers (:data:`FRONT`: web and channel; :data:`BACK`: the workers;
:data:`OUTSIDE`: the simulator; then Redis), on SIGINT and SIGTERM alike, also when SIGINT was
ignored at start (a shell's background job) and when its output pipe is gone. The children write
into pipes the runner reads, so a closed terminal never reaches them, and each of their lines
reaches the person whole, filtered by :mod:`app.devconsole`.

To add a child process: one :class:`Child` in :meth:`DevRunner.children_for`; to add a banner line:
one string in :meth:`DevRunner.banner`.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import requests

from app import config as config_module
from app import devconsole
from app.redis_server import RedisServer

STATE_DIR = Path(".devicehooks")
LOG_HANDLER = "workers.handlers.log"
# stop tiers, in order: what feeds the queue, what works it, the simulated Device Management they talk to
FRONT, BACK, OUTSIDE = 0, 1, 2
STARTUP_TIMEOUT = 60.0  # s for every child to become ready
STOP_TIMEOUT = 10.0  # s per tier before SIGKILL
SUMMARY_EVERY = 5.0  # s between summary lines (printed only when something happened)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SAMPLE_BATCH = (
    '{"notifications":[{"ep":"dev-1","path":"/3303/0/5700","ct":"text/plain","payload":"MjMuNQ=="}]}'
)


class RunError(RuntimeError):
    """Why the runner cannot start or keep running; printed as one line."""


class StopRequested(BaseException):
    """SIGINT or SIGTERM arrived (a BaseException: no ``except Exception`` on the way swallows it)."""


class Output:
    """The runner's own output: whole lines, flushed at once, and silent once the reader is gone.

    Under ``devicehooks run | tee log`` a Ctrl-C ends tee first; a print then raised EPIPE in the
    middle of the stop and left the simulator running. Once a write fails, stdout is pointed at
    /dev/null so that neither a later line nor the interpreter's final flush raises, and the runner
    stops (what SIGPIPE would do to a program that does not ignore it, as Python does).
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.lock = threading.RLock()  # re-entrant: a signal may arrive while the main thread holds it
        self.broken = False

    def __call__(self, text: str) -> None:
        """Print ``text`` (one or more lines)."""
        with self.lock:
            if self.broken:
                return
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno not in (errno.EPIPE, errno.EBADF, None):
                    raise
                self._silence()

    def _silence(self) -> None:
        """Send everything further to /dev/null."""
        self.broken = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)


@dataclass
class Child:
    """One child process of the runner: its command, its stop tier, and how to tell it is ready."""

    name: str
    args: list[str]
    tier: int = FRONT
    ready: Callable[[], bool] | None = None  # polled during startup; None: ready once started
    first: bool = False  # the others need it: wait until it is ready before starting them
    process: subprocess.Popen[bytes] | None = None
    last_words: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=5))
    readers: list[threading.Thread] = field(default_factory=list)

    @property
    def pid(self) -> int:
        """The child's pid (also its process group id)."""
        assert self.process is not None
        return self.process.pid


def port_in_use(port: int) -> bool:
    """True when 127.0.0.1:port cannot be bound the way gunicorn binds it (SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _group_alive(pgid: int) -> bool:
    """True when some process of group ``pgid`` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DevRunner:
    """Owns every process the development runner starts."""

    def __init__(
        self,
        env: dict[str, str],
        echo: Callable[[str], Any] | None = None,
        *,
        verbose: bool = False,
        reset: bool = False,
    ) -> None:
        self.env = env
        self.echo: Callable[[str], Any] = echo or Output()
        self.verbose = verbose
        self.reset = reset
        self.redis: RedisServer | None = None
        self.children: list[Child] = []
        self.simulator: Any = None  # app.simulator.devrun.DevSimulator when DM_API_KEY is unset
        self.made_up: set[str] = set()  # variables whose value the runner invented (safe to print)
        self.stopping = False
        self.deferring = False  # a stop signal now is acted on once the child is recorded
        self.stop_pending = False
        self.window = devconsole.Counts()
        self.total = devconsole.Counts()
        self.counts_lock = threading.Lock()
        self.env_file_written = False

    # --- configuration ------------------------------------------------------------------------

    def prepare(self) -> config_module.Settings:
        """Fill in what is missing for local use (Redis, a callback secret, the simulator); validate."""
        settings = config_module.from_env(self.env)
        if port_in_use(settings.port):
            raise RunError(
                f"port {settings.port} is already in use (another devicehooks run?): "
                "choose another with --port or PORT"
            )
        if self.reset:
            self._reset(settings)
        if settings.redis_url:
            _require_redis(settings.redis_url, settings.redis_tls_verify)
        else:
            self.redis = RedisServer(directory=str(STATE_DIR / "redis"), appendonly=True)
            with self._deferred_stop():
                self.redis.start()
            self.env["REDIS_URL"] = self.redis.url
        if not settings.callback_headers and not settings.insecure_no_auth:
            secret = f"Bearer {secrets.token_urlsafe(24)}"
            self.env["CALLBACK_HEADERS"] = json.dumps({"Authorization": secret})
            self.made_up.add("CALLBACK_HEADERS")
        self.env.setdefault("WEB_CONCURRENCY", "1")
        self.env["PYTHONUNBUFFERED"] = "1"  # a handler's print() reaches the runner at once
        if not settings.management_api_keys:
            self.env["MANAGEMENT_API_KEYS"] = secrets.token_urlsafe(24)
            self.made_up.add("MANAGEMENT_API_KEYS")
        if not settings.dm_api_key:
            from app.simulator.devrun import DevSimulator

            self.simulator = DevSimulator()
            self.simulator.configure(self.env, settings)
        handlers = [h for h in self.env.get("HANDLERS", "").split(",") if h.strip()]
        if LOG_HANDLER not in handlers:
            self.env["HANDLERS"] = ",".join([LOG_HANDLER, *handlers])
        return config_module.from_env(self.env)

    def _reset(self, settings: config_module.Settings) -> None:
        """Delete the embedded Redis's data (queued jobs, dead letters, rejections) before starting."""
        if settings.redis_url:
            raise RunError(
                "--reset empties only the embedded Redis, and REDIS_URL is set: unset it or flush it"
            )
        shutil.rmtree(STATE_DIR / "redis", ignore_errors=True)
        self.echo(f"--reset: deleted {STATE_DIR / 'redis'}")

    def children_for(self, settings: config_module.Settings) -> list[Child]:
        """The child processes, in start order."""
        python = sys.executable
        base = f"http://127.0.0.1:{settings.port}"
        web = [python, "-m", "gunicorn", "--config", "python:app.gunicorn_config"]
        web += ["--bind", f"127.0.0.1:{settings.port}"]
        if self.verbose:
            web += ["--access-logfile", "-"]
        children = []
        if self.simulator:
            sim = self.simulator
            children.append(
                Child("simulator", sim.command(), OUTSIDE, lambda: _answers(sim.url + "/stats"), first=True)
            )
        children.append(Child("worker", [python, "-m", "app", "worker"], BACK, lambda: self._worker_ready()))
        if settings.thingsboard_host:
            children.append(Child("thingsboard", [python, "-m", "app", "thingsboard"], BACK))
        children.append(Child("web", [*web, "app:create_app()"], FRONT, lambda: _answers(base + "/readyz")))
        return children

    def _worker_ready(self) -> bool:
        """True once our worker child registered with RQ (its handlers loaded, Redis reached)."""
        from app.redis_conn import connect

        worker = next(child for child in self.children if child.name == "worker")
        settings = config_module.from_env(self.env)
        client = connect(self.env["REDIS_URL"], tls_verify=settings.redis_tls_verify)
        try:
            members = client.smembers(f"rq:workers:{settings.queue_name}")
            pids = [client.hget(key, "pid") for key in members]
        finally:
            client.close()
        return any(pid is not None and int(pid) == worker.pid for pid in pids)

    # --- processes ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _deferred_stop(self) -> Iterator[None]:
        """Hold a stop signal back while a process is started and recorded (no unrecorded child).

        Blocking the signals instead (pthread_sigmask) would hand the blocked mask to the child,
        which then ignored the runner's SIGTERM.
        """
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.stop_pending:
            raise StopRequested

    def spawn(self, child: Child) -> None:
        """Start one child in its own session, its stdout and stderr read line by line."""
        with self._deferred_stop():
            child.process = subprocess.Popen(
                child.args,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            self.children.append(child)
        for stream in (child.process.stdout, child.process.stderr):
            assert stream is not None
            reader = threading.Thread(target=self._read, args=(child, stream), daemon=True)
            reader.start()
            child.readers.append(reader)

    def _read(self, child: Child, stream: IO[bytes]) -> None:
        """Show one output stream of a child, line by line, and count what it reports."""
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "backslashreplace")
            shown = devconsole.present(child.name, line, self.verbose)
            if shown.counts:
                with self.counts_lock:
                    self.window.add(shown.counts)
            if shown.loud and shown.text:
                child.last_words.append(line.rstrip())
            if shown.text is not None:
                self.echo(shown.text)
        stream.close()

    def check_children(self) -> None:
        """Raise RunError with the child's own last words when a child process has exited."""
        for child in self.children:
            assert child.process is not None
            code = child.process.poll()
            if code is not None:
                for reader in child.readers:
                    reader.join(timeout=2)
                said = child.last_words[-1] if child.last_words else "no output"
                raise RunError(f"{child.name} (pid {child.pid}) exited with status {code}: {said}")

    def wait_ready(self, children: list[Child], timeout: float = STARTUP_TIMEOUT) -> None:
        """Poll every child's readiness until all are ready; RunError when one dies or time runs out."""
        deadline = time.monotonic() + timeout
        waiting = [child for child in children if child.ready is not None]
        while waiting:
            self.check_children()
            waiting = [child for child in waiting if not _safely(child.ready)]
            if time.monotonic() > deadline:
                names = ", ".join(child.name for child in waiting)
                raise RunError(f"{names} did not become ready within {timeout:g} s")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the children tier by tier, then Redis; SIGKILL a group that outlives STOP_TIMEOUT."""
        self.stopping = True
        for tier in sorted({child.tier for child in self.children}):
            self._stop_tier([child for child in self.children if child.tier == tier])
        if self.redis:
            self.redis.stop()
        self._remove_env_file()
        self.echo("stopped everything devicehooks run started")

    def _stop_tier(self, tier: list[Child]) -> None:
        """SIGTERM each child, wait for it, then make sure nothing of its process group is left."""
        for child in tier:
            assert child.process is not None
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in tier:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.process.wait()
                self.echo(f"{child.name} (pid {child.pid}) did not stop within {STOP_TIMEOUT:g} s: killed")
            self._reap_group(child.pid)

    @staticmethod
    def _reap_group(pgid: int) -> None:
        """End what is left of a process group whose leader has exited (SIGTERM, then SIGKILL)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not _group_alive(pgid):
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            deadline = time.monotonic() + 5
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.05)

    # --- the env file for other terminals -----------------------------------------------------

    def write_env_file(self) -> Path:
        """Write what the CLI in other terminals needs (config.RUNNER_ENV_FILE), for the user's eyes only."""
        path = config_module.RUNNER_ENV_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(config_module.format_runner_env(self.env, os.getpid()))
        tmp.replace(path)
        self.env_file_written = True
        return path

    def _remove_env_file(self) -> None:
        """Delete the env file this runner wrote (another runner's is left alone)."""
        path = config_module.RUNNER_ENV_FILE
        if not self.env_file_written:
            return
        with contextlib.suppress(OSError):
            if config_module.parse_runner_env(path.read_text()).get(config_module.RUNNER_PID) == str(
                os.getpid()
            ):
                path.unlink()

    # --- the run ------------------------------------------------------------------------------

    def start(self) -> config_module.Settings:
        """Start everything, wait until it is ready, print the banner, start the demo traffic."""
        started = time.monotonic()
        settings = self.prepare()
        planned = self.children_for(settings)
        for child in planned:
            self.spawn(child)
            if child.first:
                self.wait_ready([child])
        self.wait_ready(planned)
        if self.simulator:
            self.simulator.wait_registered(settings, self.check_children)
        self.write_env_file()
        for line in self.banner(settings, time.monotonic() - started):
            self.echo(line)
        if self.simulator:
            self.simulator.demo(settings, self.echo)
        return settings

    def banner(self, settings: config_module.Settings, took: float) -> list[str]:
        """What a person needs once everything is up: where to PUT, the secret, curl, where data lives.

        A value is printed only when the runner made it up (the secret, the simulator's key); what the
        user set stays off the screen.
        """
        url = f"http://127.0.0.1:{settings.port}{settings.callback_path}"
        made_up = "CALLBACK_HEADERS" in self.made_up
        headers = settings.callback_headers
        shown = {
            name: value if made_up else f"<{name} from CALLBACK_HEADERS>" for name, value in headers.items()
        }
        header_args = " ".join(f"-H '{name}: {value}'" for name, value in shown.items())
        secret = "   ".join(f"{name}: {value}" for name, value in shown.items())
        curl = f"curl -X PUT {url} {header_args} -H 'Content-Type: application/json' -d '{SAMPLE_BATCH}'"
        if self.redis:
            data = (
                f"embedded Redis {settings.redis_url}, data in {STATE_DIR / 'redis'} (--reset starts empty)"
            )
        else:
            data = f"REDIS_URL {config_module.redact_url(settings.redis_url)}"
        pids = [f"{child.name} {child.pid}" for child in self.children]
        if self.redis and self.redis.process:
            pids.append(f"redis {self.redis.process.pid}")
        lines = [
            "",
            f"devicehooks is up ({took:.1f} s): PUT batches to {url}",
            f"  secret      {secret or 'none (DEVICEHOOKS_INSECURE_NO_AUTH)'}"
            + ("  (made up for this run)" if made_up else ""),
            f"  try it      {curl}",
            f"  data        {data}",
            f"  handlers    {', '.join(settings.handlers)} (`devicehooks handlers` lists them)",
            f"  elsewhere   `devicehooks failed list`, `get EP /3/0/0`: see {config_module.RUNNER_ENV_FILE}",
            f"  processes   {', '.join(pids)} (pid)",
        ]
        base = f"http://127.0.0.1:{settings.port}"
        key = self.env["MANAGEMENT_API_KEYS"] if "MANAGEMENT_API_KEYS" in self.made_up else None
        lines[-1:-1] = [
            f"  status      {base}/status "
            + (
                f"(made up for this run: log in with the management key {key})"
                if key
                else "(log in with a key from MANAGEMENT_API_KEYS)"
            ),
            f"  metrics     {base}/metrics and the API {base}/api/v1/ (Authorization: Bearer <that key>)",
        ]
        if self.simulator:
            sim = self.simulator
            lines.insert(
                3, f"  simulator   {sim.url} (API key {sim.api_key}): devices send events every few s"
            )
        return [*lines, "Ctrl-C stops everything; -v shows every log line.", ""]

    def tick(self, now: float, last: float) -> float:
        """Print the summary line when SUMMARY_EVERY passed and something happened; the new 'last'."""
        if now - last < SUMMARY_EVERY:
            return last
        with self.counts_lock:
            window, self.window = self.window, devconsole.Counts()
            self.total.add(window)
            total = devconsole.Counts(**vars(self.total))
        if window:
            self.echo(devconsole.summary(window, total, SUMMARY_EVERY))
        return now

    def serve(self) -> int:
        """Run until SIGINT / SIGTERM or a child dies; always stop everything; the exit status."""

        def _on_signal(signum: int, frame: FrameType | None) -> None:
            if self.stopping:
                return
            if self.deferring:
                self.stop_pending = True
                return
            raise StopRequested

        for sig in STOP_SIGNALS:  # also SIGINT that a shell's background job inherited as ignored
            signal.signal(sig, _on_signal)
        reason = None
        try:
            self.start()
            last = time.monotonic()
            while not getattr(self.echo, "broken", False):  # nobody reads the output any more: stop
                self.check_children()
                time.sleep(0.2)
                last = self.tick(time.monotonic(), last)
        except StopRequested:
            self.echo("stopping ...")
        except (RuntimeError, config_module.ConfigError) as exc:
            reason = str(exc)
        finally:
            self.stop()
        if reason is None:
            return 0
        self.echo(f"devicehooks run: {reason}")  # the reason is the last line
        return 1


def _require_redis(url: str, tls_verify: bool) -> None:
    """RunError naming REDIS_URL when the Redis it points at does not answer."""
    from redis.exceptions import RedisError

    from app.redis_conn import connect, unreachable_message

    client = connect(url, tls_verify=tls_verify)
    try:
        client.ping()
    except RedisError as exc:
        raise RunError(unreachable_message(url, exc)) from None
    finally:
        client.close()


def _answers(url: str) -> bool:
    """True when ``url`` answers 200."""
    try:
        return requests.get(url, timeout=0.5).status_code == 200
    except requests.RequestException:
        return False


def _safely(check: Callable[[], bool] | None) -> bool:
    """Run a readiness check; an error (a child still starting) counts as not ready."""
    if check is None:
        return True
    try:
        return check()
    except Exception:
        return False


def main(port: int | None = None, verbose: bool = False, reset: bool = False) -> int:
    """Entry point of ``devicehooks run``."""
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    env = dict(os.environ)
    if port is not None:
        env["PORT"] = str(port)
    return DevRunner(env, verbose=verbose, reset=reset).serve()
