"""A client nobody here wrote: mbed-cloud-sdk 2.2.0's ConnectAPI against the simulator.

The SDK is installed into a throwaway virtualenv under /tmp by the test (never a dependency of
devicehooks); when it cannot be installed (no network, no package index) the test is skipped with the
reason. Each call below failed before the simulator was fixed: list_connected_devices (trailing slash
and the legacy `filter` parameter), get_device (`/v3/devices/{id}/`), update_webhook while the poll
thread runs (no 410 CHANNEL_DELETED on the deleted pull channel), delete_subscriptions (calls
list_connected_devices), and the subscription list ending with an empty path.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.benchmarks.sdk import ensure_venv
from tests.simulator.conftest import API_KEY, Api, Receiver, first_device

VENV = Path(tempfile.gettempdir()) / "devicehooks-test-mbed-cloud-sdk"
CHILD = Path(__file__).with_name("sdk_client_child.py")


@pytest.fixture(scope="module")
def sdk_python() -> Path:
    """The SDK venv's interpreter, or a skip saying why it could not be installed."""
    try:
        return ensure_venv(VENV)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"mbed-cloud-sdk 2.2.0 could not be installed: {exc}")


def test_mbed_cloud_sdk_2_2_0_drives_the_simulator(sdk_python, make_sim, receiver: Receiver) -> None:
    sim = make_sim(pull_timeout=300)  # scaled: a 3 s long poll, open while the webhook is registered
    device = first_device(sim)
    api = Api(sim.url)
    assert api.put(f"/v2/subscriptions/{device}/3/0/9").status_code in (200, 202)
    run = subprocess.run(
        [str(sdk_python), str(CHILD), sim.url, API_KEY, receiver.url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["devices"] == [d["id"] for d in sim.sim.directory()]
    assert out["device"] == device
    assert out["subscriptions"] == ["/3/0/9"]
    assert out["webhook"] == receiver.url
    assert sim.sim.endpoint_subscriptions(device) == []
    assert sim.sim.channel.channel_name() is None
