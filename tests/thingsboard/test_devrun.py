"""The one-command demo: ``devicehooks run`` with THINGSBOARD_HOST set also starts the bridge."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.redis_server import free_port
from tests.integration.test_devrunner import leaders
from tests.support import stop, wait_until
from tests.thingsboard.broker import Mosquitto
from tests.thingsboard.conftest import ROOT, TOKEN
from tests.thingsboard.fake import FakeThingsBoard

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    """True while a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_devicehooks_run_bridges_the_simulated_fleet_to_thingsboard(
    mosquitto: Mosquitto, fake_tb: FakeThingsBoard, tmp_path: Path
) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "CALLBACK_", "DM_", "HANDLERS"))
    }
    env.update(
        PORT=str(free_port()), PYTHONPATH=str(ROOT), THINGSBOARD_HOST="127.0.0.1",
        THINGSBOARD_PORT=str(mosquitto.port), THINGSBOARD_TOKEN=TOKEN,
    )  # fmt: skip
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "-m", "app", "run"], env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: "Ctrl-C stops everything" in log.read_text(), timeout=60, what="the runner")
        assert re.search(r"processes .*thingsboard \d+", log.read_text())
        wait_until(
            lambda: fake_tb.seen.connects, timeout=60, what="a simulated device connected in ThingsBoard"
        )
        wait_until(lambda: fake_tb.seen.telemetry, timeout=60, what="telemetry from the simulated fleet")
    finally:
        stop(runner, signal.SIGINT, timeout=60)
    pids = list(leaders(log.read_text()).values())
    assert pids, log.read_text()
    for pid in pids:
        wait_until(lambda pid=pid: not _alive(pid), timeout=10, what=f"pid {pid} to exit")  # type: ignore[misc]
    assert fake_tb.seen.violations == []
    assert fake_tb.seen.implicit == []
