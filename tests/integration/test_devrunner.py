"""``devicehooks run`` as a person uses it: its output, each way to stop it, failures, the CLI beside it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
import requests

from app.redis_server import free_port
from tests.integration.workers import ROOT
from tests.support import stop, wait_until

pytestmark = pytest.mark.slow

UP = "Ctrl-C stops everything"
STOPPED = "stopped everything devicehooks run started"
OURS = ("REDIS_URL", "CALLBACK_", "DM_", "HANDLERS", "PORT", "LOG_LEVEL", "DEVICEHOOKS_")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh shell: none of the service's variables set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OURS)}
    env.update(PYTHONPATH=str(ROOT), **extra)
    return env


class Runner:
    """One ``devicehooks run`` child process in a directory of its own, its output in a file."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None, **popen: object) -> None:
        self.cwd = cwd
        self.port = free_port()
        self.log = cwd / f"run-{self.port}.log"
        self.env = env or clean_env()
        self.env["PORT"] = str(self.port)
        self.args = [sys.executable, "-m", "app", "run", *args]
        self.popen = popen
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Runner:
        """Start it, its output to the log file unless a pipe was asked for."""
        if "stdout" in self.popen:
            self.process = subprocess.Popen(self.args, env=self.env, cwd=self.cwd, **self.popen)  # type: ignore[call-overload]
            return self
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(  # type: ignore[call-overload]
                self.args, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT, **self.popen
            )
        return self

    def text(self) -> str:
        """Its output so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, what: str, timeout: float = 90) -> str:
        """Wait until its output contains ``what``; the output."""
        assert self.process is not None
        wait_until(
            lambda: what in self.text() or self.process.poll() is not None,  # type: ignore[union-attr]
            timeout=timeout,
            what=repr(what),
        )
        assert what in self.text(), self.text()
        return self.text()

    def wait_up(self) -> str:
        """Wait for the banner."""
        return self.wait_for(UP)

    def exit_code(self, timeout: float = 60) -> int:
        """Wait for it to exit."""
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """Last resort for a failed test: SIGKILL it (its children are checked by the test)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def leaders(text: str) -> dict[str, int]:
    """The banner's processes line: child name -> pid (each child leads its own process group)."""
    match = re.search(r"processes\s+(.*) \(pid\)", text)
    assert match, text
    return {name: int(pid) for name, pid in (part.split() for part in match.group(1).split(", "))}


def family(groups: Iterator[int] | list[int]) -> set[int]:
    """Every live process in the given process groups (gunicorn's workers, RQ's scheduler, …)."""
    wanted = set(groups)
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) in wanted:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def assert_all_gone(pids: set[int]) -> None:
    """Every pid has exited (a bounded wait: the runner has already returned)."""
    wait_until(lambda: not [p for p in pids if alive(p)], timeout=10, what=f"{pids} to exit")


@pytest.fixture
def runner_dir(tmp_path: Path) -> Path:
    """A fresh directory, as a new clone would be."""
    return tmp_path


def _stopped_cleanly(run: Runner, send: Callable[[], None]) -> None:
    """Start, check the family is up, stop with ``send``, and check that nothing is left."""
    run.start()
    try:
        text = run.wait_up()
        groups = leaders(text)
        assert set(groups) == {"simulator", "worker", "web", "redis"}
        everyone = family(list(groups.values()))
        assert len(everyone) >= 5, everyone  # + gunicorn's worker and RQ's scheduler
        assert (run.cwd / ".devicehooks" / "env").exists()
        send()
        assert run.exit_code() == 0
    finally:
        run.kill()
    assert_all_gone(everyone)
    text = run.text()
    assert STOPPED in text
    assert "Traceback" not in text, text
    assert not (run.cwd / ".devicehooks" / "env").exists()


def test_ctrl_c_at_the_terminal_stops_every_child_in_order_without_a_traceback(runner_dir: Path) -> None:
    run = Runner(runner_dir, start_new_session=True)  # its own group, as a terminal's foreground job
    _stopped_cleanly(run, lambda: os.killpg(run.process.pid, signal.SIGINT))  # type: ignore[union-attr]


def test_sigterm_stops_every_child_and_a_secret_you_set_is_never_printed(runner_dir: Path) -> None:
    secret = "Bearer mine-0123456789-not-for-screens"
    run = Runner(runner_dir, env=clean_env(CALLBACK_HEADERS=json.dumps({"Authorization": secret})))
    _stopped_cleanly(run, lambda: run.process.send_signal(signal.SIGTERM))  # type: ignore[union-attr]
    text = run.text()
    assert "mine-0123456789" not in text
    assert "-H 'Authorization: <Authorization from CALLBACK_HEADERS>'" in text


def _ignore_sigint() -> None:
    """What a shell does to a background job (`devicehooks run &`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_sigint_stops_it_even_when_sigint_was_ignored_at_start(runner_dir: Path) -> None:
    run = Runner(runner_dir, preexec_fn=_ignore_sigint)
    _stopped_cleanly(run, lambda: run.process.send_signal(signal.SIGINT))  # type: ignore[union-attr]


def test_a_stop_after_the_output_pipe_is_gone_leaves_nothing_running(runner_dir: Path) -> None:
    run = Runner(runner_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT).start()
    assert run.process is not None
    assert run.process.stdout is not None
    try:
        text = _read_until(run.process.stdout, UP)
        everyone = family(list(leaders(text).values()))
        run.process.stdout.close()  # `devicehooks run | tee log`, and tee is gone
        run.process.send_signal(signal.SIGINT)
        assert run.exit_code() == 0
    finally:
        run.kill()
    assert_all_gone(everyone)
    assert not (runner_dir / ".devicehooks" / "env").exists()


def test_the_runner_stops_by_itself_once_nobody_reads_its_output(runner_dir: Path) -> None:
    run = Runner(runner_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT).start()
    assert run.process is not None
    assert run.process.stdout is not None
    try:
        everyone = family(list(leaders(_read_until(run.process.stdout, UP)).values()))
        run.process.stdout.close()  # `devicehooks run | head`, and head has had its lines
        assert run.exit_code() == 0  # the simulator's next events hit the closed pipe
    finally:
        run.kill()
    assert_all_gone(everyone)


def _read_until(stream: IO[bytes], marker: str) -> str:
    """Read lines from ``stream`` until one contains ``marker``; the text read."""
    seen: list[str] = []
    for raw in iter(stream.readline, b""):
        seen.append(raw.decode(errors="replace"))
        if marker in seen[-1]:
            return "".join(seen)
    raise AssertionError("the runner ended before " + marker + ":\n" + "".join(seen))


def test_output_is_for_a_person_events_handler_prints_failures_and_summaries(runner_dir: Path) -> None:
    run = Runner(runner_dir, env=clean_env(HANDLERS="tests.fixtures.dev_handlers")).start()
    try:
        text = run.wait_up()
        secret = re.search(r"secret\s+Authorization: (Bearer \S+)", text)
        assert secret, text
        url = f"http://127.0.0.1:{run.port}/notify"
        assert re.search(rf"curl -X PUT {url} -H 'Authorization: {secret.group(1)}'", text)
        assert ".devicehooks/redis" in text
        body = {
            "notifications": [
                {"ep": "dev-1", "path": "/3303/0/5700", "ct": "text/plain", "payload": "MjMuNQ=="},
                {"ep": "broken-device", "path": "/3303/0/5700", "ct": "text/plain", "payload": "MjMuNQ=="},
            ]
        }
        put = requests.put(url, json=body, headers={"Authorization": secret.group(1)}, timeout=5)
        assert put.status_code == 204
        run.wait_for("notifications          dev-1 /3303/0/5700 = 23.5")
        run.wait_for("worker | printed dev-1 /3303/0/5700 23.5\n")
        run.wait_for("cannot handle broken-device")
        run.wait_for("-- last 5 s:")
        run.process.send_signal(signal.SIGINT)  # type: ignore[union-attr]
        assert run.exit_code() == 0
    finally:
        run.kill()
    text = run.text()
    for noise in ("rq.worker", "werkzeug", "Listening on", "queued batch"):
        assert noise not in text
    assert len(text.splitlines()) < 150, text


def test_verbose_brings_back_every_line_and_the_callback_is_registered_once_on_loopback(
    runner_dir: Path,
) -> None:
    run = Runner(runner_dir, "-v").start()
    try:
        run.wait_up()
        assert _listening(run.port) == ["127.0.0.1"]
        run.wait_for("rq.worker")
        run.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert run.exit_code() == 0
    finally:
        run.kill()
    text = run.text()
    assert text.count("app.simulator.channel: callback registered url=") == 1, text
    assert "werkzeug" in text


def _listening(port: int) -> list[str]:
    """The IPv4 addresses a TCP socket listens on at ``port`` (/proc/net/tcp)."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def test_a_mistyped_handlers_module_stops_the_run_with_the_workers_own_error(runner_dir: Path) -> None:
    run = Runner(runner_dir, env=clean_env(HANDLERS="tests.fixtures.no_such_handlers")).start()
    try:
        assert run.exit_code(timeout=90) == 1
    finally:
        run.kill()
    text = run.text()
    assert "devicehooks is up" not in text
    stopped, reason = text.strip().splitlines()[-2:]
    assert stopped == STOPPED
    assert reason.startswith("devicehooks run: worker (pid "), text
    assert "HANDLERS: cannot import 'tests.fixtures.no_such_handlers'" in reason
    assert "Traceback" not in text


def test_a_child_that_dies_later_stops_the_run_naming_it(runner_dir: Path) -> None:
    run = Runner(runner_dir).start()
    try:
        groups = leaders(run.wait_up())
        everyone = family(list(groups.values()))
        os.kill(groups["worker"], signal.SIGKILL)
        assert run.exit_code() == 1
    finally:
        run.kill()
    assert_all_gone(everyone)
    assert (
        run.text()
        .strip()
        .splitlines()[-1]
        .startswith(f"devicehooks run: worker (pid {groups['worker']}) exited with status -9")
    )


def test_reset_refuses_a_redis_it_does_not_own(runner_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "run", "--reset", "--port", str(free_port())],
        env=clean_env(REDIS_URL="redis://127.0.0.1:9/0"), cwd=runner_dir, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "--reset empties only the embedded Redis, and REDIS_URL is set" in result.stdout


def test_a_redis_url_that_does_not_answer_is_one_line_before_anything_starts(runner_dir: Path) -> None:
    stale = f"redis://127.0.0.1:{free_port()}/0"
    result = subprocess.run(
        [sys.executable, "-m", "app", "run", "--port", str(free_port())],
        env=clean_env(REDIS_URL=stale), cwd=runner_dir, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert (
        result.stdout.strip()
        .splitlines()[-1]
        .startswith(f"devicehooks run: cannot reach Redis at REDIS_URL={stale}")
    )
    assert "processes" not in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_a_port_in_use_is_refused_before_anything_starts(runner_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "app", "run", "--port", str(port)],
            env=clean_env(), cwd=runner_dir, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"port {port} is already in use" in result.stdout
    assert "--port" in result.stdout
    assert not (runner_dir / ".devicehooks" / "redis").exists()


def cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``devicehooks ARGS`` in another process, as a second terminal would."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args], env=env or clean_env(), cwd=cwd, capture_output=True, text=True,
        timeout=90,
    )  # fmt: skip


def test_the_cli_in_another_terminal_finds_the_running_runner(runner_dir: Path) -> None:
    run = Runner(runner_dir).start()
    try:
        text = run.wait_up()
        dead = cli(runner_dir, "failed", "list")
        assert dead.returncode == 0, dead.stderr
        assert dead.stdout.strip() == "no dead letters"
        listed = cli(runner_dir, "handlers")
        assert "devicehooks:log" in listed.stdout, listed.stdout
        device = re.search(r"registrations\s+([0-9a-f]{32})", run.wait_for("registrations  "))
        assert device, text
        read = cli(runner_dir, "get", device.group(1), "/3/0/0", "--timeout", "30")
        assert read.returncode == 0, read.stderr
        assert json.loads(read.stdout) == "devicehooks"
        env_file = (runner_dir / ".devicehooks" / "env").read_text()
        assert "REDIS_URL=" in env_file
        assert "CALLBACK_HEADERS=" in env_file
        assert oct((runner_dir / ".devicehooks" / "env").stat().st_mode & 0o777) == "0o600"
        run.process.send_signal(signal.SIGINT)  # type: ignore[union-attr]
        assert run.exit_code() == 0
    finally:
        run.kill()
    after = cli(runner_dir, "failed", "list")
    assert after.returncode == 1
    assert "REDIS_URL is not set" in after.stderr


def test_reset_starts_from_empty_data(runner_dir: Path) -> None:
    first = Runner(runner_dir).start()
    try:
        first.wait_up()
        marker = cli(runner_dir, "rejections", "list")
        assert marker.stdout.strip() == "no rejections"
        _put_garbage(first)
        wait_until(lambda: "1 rejected" in first.text(), timeout=30, what="the rejection")
        first.process.send_signal(signal.SIGINT)  # type: ignore[union-attr]
        assert first.exit_code() == 0
    finally:
        first.kill()
    kept = _rejections_after_restart(runner_dir)
    assert kept >= 1
    assert _rejections_after_restart(runner_dir, "--reset") == 0


def _put_garbage(run: Runner) -> None:
    """PUT a batch with one invalid item (rejected by the worker)."""
    secret = re.search(r"secret\s+Authorization: (Bearer \S+)", run.text())
    assert secret
    body = {"notifications": [{"ep": "dev-1"}]}
    response = requests.put(
        f"http://127.0.0.1:{run.port}/notify",
        json=body,
        headers={"Authorization": secret.group(1)},
        timeout=5,
    )
    assert response.status_code == 204


def _rejections_after_restart(cwd: Path, *args: str) -> int:
    """Start the runner again (with ``args``), count the rejections the CLI lists, stop it."""
    run = Runner(cwd, *args).start()
    try:
        run.wait_up()
        listed = cli(cwd, "rejections", "list")
        assert listed.returncode == 0, listed.stderr
        run.process.send_signal(signal.SIGINT)  # type: ignore[union-attr]
        assert run.exit_code() == 0
    finally:
        run.kill()
    if listed.stdout.strip() == "no rejections":
        return 0
    return len([line for line in listed.stdout.splitlines() if "notifications[0]" in line])


@pytest.mark.parametrize(
    "args",
    [
        ["failed", "list"],
        ["rejections", "list"],
        ["worker"],
        ["get", "dev-1", "/3/0/0"],
        ["handlers", "--json"],
    ],
)
def test_an_unreachable_redis_is_one_line_naming_redis_url(args: list[str], tmp_path: Path) -> None:
    stale = f"redis://127.0.0.1:{free_port()}/0"
    result = cli(tmp_path, *args, env=clean_env(REDIS_URL=stale, DM_API_KEY="ak_x"))
    if args[0] == "handlers":  # needs no Redis at all
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 1
    assert f"cannot reach Redis at REDIS_URL={stale}" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_stale_env_file_of_a_dead_runner_is_ignored(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / ".devicehooks").mkdir()
    (tmp_path / ".devicehooks" / "env").write_text(
        f"REDIS_URL=redis://127.0.0.1:{free_port()}/0\nDEVICEHOOKS_RUNNER_PID={gone.pid}\n"
    )
    result = cli(tmp_path, "failed", "list")
    assert result.returncode == 1
    assert "REDIS_URL is not set" in result.stderr
    stop(gone)
