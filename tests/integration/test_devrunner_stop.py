"""The runner's stop on stand-in children: tier order, Redis last, SIGKILL after the grace, leftovers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from app import devrunner
from app.devrunner import BACK, FRONT, OUTSIDE, Child, DevRunner
from app.redis_server import RedisServer
from tests.support import wait_until

# A child that reports SIGTERM to a file, optionally pings Redis then, and lingers a little before exiting.
CHILD = """
import signal, sys, time
name, log, redis_url, linger = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])

def on_term(signum, frame):
    note = name + " got SIGTERM"
    if redis_url:
        from redis import Redis
        note += " redis=" + str(Redis.from_url(redis_url, socket_timeout=2).ping())
    open(log, "a").write(note + "\\n")
    time.sleep(linger)
    open(log, "a").write(name + " exits\\n")
    sys.exit(0)

signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""

STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""

ORPHANING = """
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: time.sleep(0.05)"])
print("grandchild", grandchild.pid, flush=True)
while True:
    time.sleep(0.05)
"""


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def start(runner: DevRunner, seen: list[str], name: str, code: str, *args: str, tier: int = FRONT) -> Child:
    """Spawn a stand-in child and wait until it printed its first line."""
    child = Child(name, [sys.executable, "-c", code, *args], tier)
    runner.spawn(child)
    wait_until(
        lambda: any(line.startswith(f"{name} | ") for line in seen), timeout=20, what=f"{name} to start"
    )
    return child


def test_tiers_stop_in_order_each_after_the_previous_exited_and_redis_last(tmp_path: Path) -> None:
    seen: list[str] = []
    runner = DevRunner({}, seen.append)
    log = tmp_path / "stops.log"
    with RedisServer(directory=str(tmp_path / "redis")) as redis:
        runner.redis = redis
        start(runner, seen, "worker", CHILD, "worker", str(log), "", "0", tier=BACK)
        start(runner, seen, "simulator", CHILD, "simulator", str(log), redis.url, "0", tier=OUTSIDE)
        start(runner, seen, "web", CHILD, "web", str(log), "", "0.5", tier=FRONT)
        runner.stop()
        assert redis.process is not None
        assert redis.process.poll() is not None
    assert log.read_text().splitlines() == [
        "web got SIGTERM",
        "web exits",
        "worker got SIGTERM",
        "worker exits",
        "simulator got SIGTERM redis=True",
        "simulator exits",
    ]
    assert seen[-1] == "stopped everything devicehooks run started"


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devrunner, "STOP_TIMEOUT", 0.5)
    seen: list[str] = []
    runner = DevRunner({}, seen.append)
    child = start(runner, seen, "web", STUBBORN)
    runner.stop()
    assert not alive(child.pid)
    assert f"web (pid {child.pid}) did not stop within 0.5 s: killed" in seen


def test_what_a_child_left_in_its_process_group_is_stopped_too() -> None:
    seen: list[str] = []
    runner = DevRunner({}, seen.append)
    start(runner, seen, "worker", ORPHANING, tier=BACK)
    grandchild = int(next(line for line in seen if "grandchild" in line).split()[-1])
    assert alive(grandchild)
    runner.stop()
    wait_until(lambda: not alive(grandchild), timeout=10, what="the grandchild to exit")
