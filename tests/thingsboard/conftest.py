"""Fixtures of the ThingsBoard tests: a private mosquitto, the fake ThingsBoard, the bridge process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import stop
from tests.thingsboard.broker import Mosquitto
from tests.thingsboard.fake import FakeThingsBoard

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "gateway-token-0123"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of this test's own on a free port, stopped by pid at the end."""
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    broker = Mosquitto(directory).start()
    yield broker
    broker.stop()


@pytest.fixture
def fake_tb(mosquitto: Mosquitto) -> Iterator[FakeThingsBoard]:
    """The fake ThingsBoard on that broker."""
    fake = FakeThingsBoard(mosquitto.port).start()
    yield fake
    fake.stop()


def bridge_env(redis_url: str, port: int, **extra: str) -> dict[str, str]:
    """Environment of a bridge (or worker) process pointed at the test broker."""
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "THINGSBOARD_HOST": "127.0.0.1",
        "THINGSBOARD_PORT": str(port),
        "THINGSBOARD_TOKEN": TOKEN,
        "DEVICEHOOKS_QUEUE": "test",
        "LOG_LEVEL": "INFO",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


def start_bridge(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start ``devicehooks thingsboard`` (as ``python -m app thingsboard``)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app", "thingsboard", *args], env=env, stdout=out, stderr=out, cwd=ROOT
        )


@contextmanager
def running_bridge(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A bridge for the duration of a with-block, stopped by pid."""
    proc = start_bridge(env, log)
    try:
        yield proc
    finally:
        stop(proc)
