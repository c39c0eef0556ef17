"""`devicehooks failed` and `rejections` against a real Redis: tables, readable records, replay of many."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result
from redis import Redis

from app.cli import main
from workers.deadletters import DeadLetters
from workers.rejections import Rejections

TRACE = 'Traceback (most recent call last):\n  File "h.py", line 9, in on_value\nRuntimeError: down\n'


def events(n: int) -> list[dict[str, object]]:
    """Event dicts as the dispatcher dead-letters them."""
    return [
        {"kind": "notifications", "ep": f"dev-{i}", "path": "/3303/0/5700", "value": 20 + i} for i in range(n)
    ]


@pytest.fixture
def cli(redis: Redis, redis_url: str):  # type: ignore[no-untyped-def]
    """Invoke the CLI with REDIS_URL pointing at the test Redis."""

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), env={"REDIS_URL": redis_url, "DEVICEHOOKS_QUEUE": "test"})

    return invoke


def test_failed_list_show_and_json(redis: Redis, cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("failed", "list").output == "no dead letters\n"
    letter_id = DeadLetters(redis).add(
        "pkg:on_value", events(2), "RuntimeError: downstream is down", TRACE, 5, "b1"
    )
    table = cli("failed", "list").output.splitlines()
    assert table[0].startswith("ID ")
    assert table[1].startswith(letter_id)
    assert "pkg:on_value" in table[1]
    assert " UTC " in table[1]
    shown = cli("failed", "show", letter_id)
    assert shown.exit_code == 0
    assert "  events     2 (2 notifications)" in shown.output
    assert "    2. notifications dev-1 /3303/0/5700 = 21" in shown.output
    assert '    Traceback (most recent call last):\n      File "h.py", line 9' in shown.output
    assert len(shown.output.splitlines()) < 20
    raw = json.loads(cli("failed", "show", letter_id, "--json").output)
    assert raw["events"] == events(2)
    assert raw["traceback"] == TRACE
    missing = cli("failed", "show", "dnope")
    assert missing.exit_code == 1
    assert "no dead letter dnope" in missing.output


def test_replay_all_and_by_handler_queue_each_letter_once(redis: Redis, cli) -> None:  # type: ignore[no-untyped-def]
    dead = DeadLetters(redis)
    a1 = dead.add("pkg:a", events(1), "E", TRACE, 5, "b1")
    a2 = dead.add("pkg:a", events(2), "E", TRACE, 5, "b2")
    b1 = dead.add("pkg:b", events(1), "E", TRACE, 5, "b3")
    by_handler = cli("failed", "replay", "--handler", "pkg:a")
    assert by_handler.exit_code == 0, by_handler.output
    assert {line.split(":")[0] for line in by_handler.output.splitlines() if "queued" in line} == {a1, a2}
    assert "a new id" in by_handler.output
    assert [row["id"] for row in dead.list()] == [b1]
    assert redis.llen("rq:queue:test") == 2
    assert cli("failed", "replay", "--handler", "pkg:a").output == "no dead letters of pkg:a\n"
    everything = cli("failed", "replay", "--all")
    assert f"{b1}: queued for redelivery" in everything.output
    assert dead.count() == 0
    assert redis.llen("rq:queue:test") == 3


def test_replay_wants_ids_or_one_selector(cli) -> None:  # type: ignore[no-untyped-def]
    for args in ([], ["--all", "--handler", "x"], ["d1", "--all"]):
        result = cli("failed", "replay", *args)
        assert result.exit_code == 1
        assert "--all" in result.output


def test_rejections_list_says_so_when_empty_and_is_a_table(redis: Redis, cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("rejections", "list").output == "no rejections\n"
    Rejections(redis).quarantine(b"{", "not valid JSON", "j1", "r1")
    table = cli("rejections", "list").output.splitlines()
    assert table[0].split() == ["AT", "WHERE", "JOB", "REASON"]
    assert "whole body" in table[1]
    assert "devicehooks rejections body devicehooks:quarantine:j1" in table[1]
    assert json.loads(cli("rejections", "list", "--json").output)["job"] == "j1"
