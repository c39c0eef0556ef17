"""The strict JSON parser shared by the request path and the worker."""

from __future__ import annotations

import json

import pytest

from app import strictjson
from tests.conftest import sample

NESTING_BOMB = b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("strict_json/nan.json", "expected a JSON value: line 1 column 71"),
        ("strict_json/minus_infinity.json", "no digit after sign: line 1 column 72"),
        ("strict_json/lone_surrogate.json", "no low surrogate"),
    ],
)
def test_what_python_json_accepts_but_json_does_not_is_a_value_error(name: str, reason: str) -> None:
    body = sample(name)
    json.loads(body)  # the stdlib takes it
    with pytest.raises(ValueError, match=reason):
        strictjson.loads(body)


def test_nesting_past_the_recursion_limit_is_a_value_error_not_a_recursion_error() -> None:
    assert len(NESTING_BOMB) < 256 * 1024
    with pytest.raises(RecursionError):
        json.loads(NESTING_BOMB)
    with pytest.raises(ValueError, match="depth limit exceeded"):
        strictjson.loads(NESTING_BOMB)


def test_nesting_up_to_the_limit_parses() -> None:
    depth = strictjson.MAX_DEPTH - 1  # the outer object is one level
    assert strictjson.loads(b'{"a":' + b"[" * depth + b"]" * depth + b"}")


def test_a_surrogate_pair_is_one_character_and_parses() -> None:
    parsed = strictjson.loads(sample("strict_json/ok_surrogate_pair.json"))
    assert parsed["notifications"][0]["ep"] == "dev-\U0001f600"


def test_an_escaped_backslash_before_u_d800_is_text_not_a_surrogate() -> None:
    assert strictjson.loads(b'{"ep": "\\\\ud800"}') == {"ep": "\\ud800"}


def test_a_lone_surrogate_in_a_key_is_found_too() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        strictjson.loads(b'{"\\udc00": 1}')


def test_invalid_utf8_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not valid UTF-8"):
        strictjson.loads(b'{"ep": "\xff"}')


def test_plain_json_parses_as_the_stdlib_does() -> None:
    body = sample("batches/notifications.json")
    assert strictjson.loads(body) == json.loads(body)
