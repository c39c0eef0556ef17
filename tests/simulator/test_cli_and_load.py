"""`devicehooks simulate`: help, load mode against a receiver, and the dev runner's simulator settings."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from app.cli import main
from app.config import Settings
from app.simulator.cli import simulate
from app.simulator.devrun import DevSimulator
from tests.simulator.conftest import Receiver


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The command sets up logging for its process; put the test process's back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    werkzeug_level = logging.getLogger("werkzeug").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("werkzeug").setLevel(werkzeug_level)


def test_help_through_the_devicehooks_command() -> None:
    result = CliRunner().invoke(main, ["simulate", "--help"])
    assert result.exit_code == 0
    for option in ("--port", "--api-key", "--devices", "--batch-size", "--time-scale", "--load", "--count"):
        assert option in result.output


def test_load_max_sends_count_notifications_in_batches(receiver: Receiver) -> None:
    args = ["--port", "0", "--load", "max", "--count", "500", "--batch-size", "100", "--no-lifecycle"]
    args += [
        "--callback-url",
        receiver.url,
        "--callback-header",
        "X-Hook: s3cret",
        "--progress-interval",
        "0.05",
    ]
    result = CliRunner().invoke(simulate, args)
    assert result.exit_code == 0, result.output
    assert "DM_API_URL=http://127.0.0.1:" in result.output
    assert "DM_API_KEY=ak_simulator" in result.output
    assert "load done: generated=500 sent=500 acknowledged=500 retried=0 dropped=0" in result.output
    uids = Counter(n["uid"] for n in receiver.items("notifications"))
    assert len(uids) == 500
    assert set(uids.values()) == {1}
    assert max(len(b["notifications"]) for b in receiver.batches()) == 100
    assert all(p.headers.get("X-Hook") == "s3cret" for p in receiver.puts)


def test_load_at_a_fixed_rate(receiver: Receiver) -> None:
    args = ["--port", "0", "--load", "2000", "--count", "100", "--callback-url", receiver.url]
    result = CliRunner().invoke(simulate, args)
    assert result.exit_code == 0, result.output
    assert "acknowledged=100" in result.output
    assert len(receiver.items("notifications")) == 100


def test_a_bad_load_rate_is_a_usage_error() -> None:
    result = CliRunner().invoke(simulate, ["--port", "0", "--load", "-5"])
    assert result.exit_code == 2
    assert "--load" in result.output


def test_the_dev_runner_points_devicehooks_at_the_simulator() -> None:
    env: dict[str, str] = {}
    dev = DevSimulator(port=8111)
    dev.configure(env, Settings(port=8000, callback_path="/hook"))
    assert env == {
        "DM_API_URL": "http://127.0.0.1:8111",
        "DM_API_KEY": "ak_simulator",
        "DEVICEHOOKS_ALLOW_HTTP_CALLBACK": "1",
        "CALLBACK_URL": "http://127.0.0.1:8000/hook",
    }
    assert dev.command()[-5:] == ["simulate", "--port", "8111", "--api-key", "ak_simulator"]


def test_wait_registered_returns_once_the_callback_is_registered_and_never_registers(
    sim, receiver: Receiver
) -> None:  # type: ignore[no-untyped-def]
    dev = DevSimulator(port=sim.port, api_key="ak_test")
    settings = Settings(callback_url=receiver.url, callback_headers={"Authorization": "Bearer x"})
    assert not dev.registered(settings)
    with pytest.raises(RuntimeError, match="did not register"):
        dev.wait_registered(settings, timeout=0.3)
    assert sim.sim.channel.callback() is None
    sim.sim.channel.set_callback(receiver.url, {"Authorization": "Bearer x"})
    dev.wait_registered(settings, timeout=5)
