"""``devicehooks run`` and management keys: a made-up key is printed once, a configured one never."""

from __future__ import annotations

import json

from app.devrunner import DevRunner
from app.redis_server import free_port
from tests.conftest import HEADERS

CONFIGURED = "mk-configured-0123456789"


def prepared(redis_url: str, extra: dict[str, str]) -> tuple[DevRunner, list[str]]:
    env = {
        "REDIS_URL": redis_url,
        "PORT": str(free_port()),
        "CALLBACK_HEADERS": json.dumps(HEADERS),
        "DM_API_KEY": "ak_x",
        **extra,
    }
    runner = DevRunner(env, echo=lambda line: None)
    return runner, runner.banner(runner.prepare(), 0.1)


def test_without_keys_the_runner_makes_one_up_for_its_children_and_prints_it_once(redis_url: str) -> None:
    runner, lines = prepared(redis_url, {})
    key = runner.env["MANAGEMENT_API_KEYS"]
    assert len(key) >= 24
    assert sum(line.count(key) for line in lines) == 1
    output = "\n".join(lines)
    assert f"http://127.0.0.1:{runner.env['PORT']}/status" in output
    assert f"http://127.0.0.1:{runner.env['PORT']}/metrics" in output


def test_a_configured_key_is_never_printed(redis_url: str) -> None:
    runner, lines = prepared(redis_url, {"MANAGEMENT_API_KEYS": CONFIGURED})
    assert runner.env["MANAGEMENT_API_KEYS"] == CONFIGURED
    output = "\n".join(lines)
    assert CONFIGURED not in output
    assert f"http://127.0.0.1:{runner.env['PORT']}/status" in output
