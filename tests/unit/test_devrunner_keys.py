"""``devicehooks run`` and management keys: a made-up key is printed once, a configured one never."""

from __future__ import annotations

import json

from app.devrunner import DevRunner
from tests.conftest import HEADERS

CONFIGURED = "mk-configured-0123456789"


def prepared(extra: dict[str, str]) -> tuple[DevRunner, list[str]]:
    lines: list[str] = []
    env = {
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "CALLBACK_HEADERS": json.dumps(HEADERS),
        "DM_API_KEY": "ak_x",
        **extra,
    }
    runner = DevRunner(env, echo=lines.append)
    runner.announce(runner.prepare(), "http://127.0.0.1:8000")
    return runner, lines


def test_without_keys_the_runner_makes_one_up_for_its_children_and_prints_it_once() -> None:
    runner, lines = prepared({})
    key = runner.env["MANAGEMENT_API_KEYS"]
    assert len(key) >= 24
    assert sum(line.count(key) for line in lines) == 1
    output = "\n".join(lines)
    assert "http://127.0.0.1:8000/status" in output
    assert "http://127.0.0.1:8000/metrics" in output


def test_a_configured_key_is_never_printed() -> None:
    runner, lines = prepared({"MANAGEMENT_API_KEYS": CONFIGURED})
    assert runner.env["MANAGEMENT_API_KEYS"] == CONFIGURED
    output = "\n".join(lines)
    assert CONFIGURED not in output
    assert "http://127.0.0.1:8000/status" in output
