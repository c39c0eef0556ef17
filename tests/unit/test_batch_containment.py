"""No value can fail a batch or an Event's round trip (issue 11's poisons, next to good items).

Dead letters and retries store Events as JSON and RQ uses its JSON serializer, so every Event must come
back from ``to_dict`` -> ``json.dumps`` -> ``json.loads`` -> ``from_dict`` equal, and encode as UTF-8.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import workers.batch
from tests.conftest import sample
from workers.batch import Rejection, parse_batch
from workers.decoding import default_object_model
from workers.events import Event

MODEL = default_object_model()


def assert_round_trips(event: Event) -> None:
    """The Event survives JSON both ways (ASCII-escaped and as UTF-8 text) and comes back equal."""
    for text in (json.dumps(event.to_dict()), json.dumps(event.to_dict(), ensure_ascii=False)):
        text.encode("utf-8")  # no lone surrogate left
        back = Event.from_dict(json.loads(text))
        assert back == event


def assert_storable(rejection: Rejection) -> None:
    """A rejection can be stored as JSON (the rejections store does)."""
    json.dumps(rejection.to_dict(), ensure_ascii=False).encode("utf-8")


def test_poison_items_become_events_or_rejections_and_every_good_item_an_event_once():
    parsed = parse_batch(sample("batches/poison.json"), MODEL)
    by_uid = {e.uid: e for e in parsed.events if e.kind == "notifications"}
    good = [e for e in parsed.events if e.ep == "good-dev"]
    assert [e.value for e in good] == [20.5, 21.5, 22.5]
    assert by_uid["bignum"].decode_error is not None
    assert "too large to represent" in by_uid["bignum"].decode_error
    assert "nested" in str(by_uid["deep-json"].decode_error)
    assert "nested" in str(by_uid["deep-cbor"].decode_error)
    assert by_uid["nan"].timestamp == "NaN"
    assert by_uid["nan"].extra == {"x": "Infinity", "y": "-Infinity", "z": "Infinity"}
    surrogate = by_uid["\ufffd"]
    assert (surrogate.ep, surrogate.path, surrogate.original_ep) == ("dev-\ufffd", "/3303/0/\ufffd", "\ufffd")
    assert surrogate.extra == {"x\ufffd": "\ufffd"}
    asyncs = [e for e in parsed.events if e.kind == "async-responses"]
    assert [e.id for e in asyncs] == ["\ufffd", "good-async"]
    assert [e.ep for e in parsed.events if e.kind == "de-registrations"] == ["\ufffd", "good-dereg"]
    assert [e.kind for e in parsed.events if e.ep == "dev-new"] == ["future-kind"]
    rejected = {(r.kind, r.index): r.reason for r in parsed.rejections}
    assert set(rejected) == {
        ("notifications", 7),
        ("notifications", 8),
    }  # deep extra field, 5000-digit max-age
    assert "nested more than" in rejected[("notifications", 7)]
    assert "max-age" in rejected[("notifications", 8)]
    for event in parsed.events:
        assert_round_trips(event)
    for rejection in parsed.rejections:
        assert_storable(rejection)


def test_any_exception_while_making_one_items_event_is_that_items_rejection(monkeypatch):
    real = workers.batch.shape_values

    def explode_on_one_path(decoded: Any, ct: Any, path: str) -> Any:
        if path == "/3303/0/5701":
            raise RuntimeError("boom")
        return real(decoded, ct, path)

    monkeypatch.setattr(workers.batch, "shape_values", explode_on_one_path)
    body = {
        "notifications": [
            {"ep": "a", "path": "/3303/0/5700", "payload": "MjEuNQ=="},
            {"ep": "a", "path": "/3303/0/5701", "payload": "Q2Vs"},
            {"ep": "a", "path": "/3303/0/5700", "payload": "MjIuNQ=="},
        ]
    }
    parsed = parse_batch(json.dumps(body), MODEL)
    assert [e.value for e in parsed.events] == [21.5, 22.5]
    [rejection] = parsed.rejections
    assert (rejection.kind, rejection.index) == ("notifications", 1)
    assert rejection.reason.startswith("could not turn the item into an Event: RuntimeError: boom at ")
    assert "test_batch_containment.py" in rejection.reason


def test_kafka_connector_fixture_fills_original_ep_on_notifications_and_types_values():
    parsed = parse_batch(sample("batches/kafka_connector_notifications.json"), MODEL)
    assert parsed.rejections == []
    first, second = parsed.events
    assert first.original_ep == first.ep == "01767982c9250000000000010011579e"
    assert (first.value, first.values) == (406, {"/3200/0/5501": 406})
    assert first.extra == {}
    assert second.value == "100:100:100:100:100:100"


def test_original_ep_is_read_on_every_kind_that_carries_it():
    body = {
        "notifications": [{"ep": "a", "path": "/1/0/1", "original-ep": "n"}],
        "registrations": [{"ep": "a", "original-ep": "n"}],
        "reg-updates": [{"ep": "a", "original-ep": "n"}],
        "de-registrations": [{"ep": "a", "original-ep": "n"}],
        "registrations-expired": [{"ep": "a", "original-ep": "n"}],
        "async-responses": [{"id": "x", "original-ep": "n"}],
    }
    parsed = parse_batch(json.dumps(body), MODEL)
    assert [e.original_ep for e in parsed.events] == ["n"] * 6
    assert all("original-ep" not in e.extra for e in parsed.events)


def test_unknown_kind_items_become_events_with_the_raw_item_and_are_logged_once(caplog):
    workers.batch._LOGGED_KINDS.discard("device-events")
    body = json.dumps({"device-events": [{"ep": "a", "path": "3/0/1", "n": 1}, "plain"], "notifications": []})
    with caplog.at_level("WARNING", logger="workers.batch"):
        first = parse_batch(body, MODEL)
        parse_batch(body, MODEL)
    assert first.rejections == []
    assert [(e.kind, e.ep, e.path, e.extra) for e in first.events] == [
        ("device-events", "a", "/3/0/1", {"item": {"ep": "a", "path": "3/0/1", "n": 1}}),
        ("device-events", None, None, {"item": "plain"}),
    ]
    assert sum("device-events" in r.message for r in caplog.records) == 1


def test_unknown_kind_holding_one_object_is_one_event():
    parsed = parse_batch(json.dumps({"new": {"ep": "a"}}), MODEL)
    assert [(e.kind, e.extra) for e in parsed.events] == [("new", {"item": {"ep": "a"}})]


# --- the round trip, for any body ------------------------------------------------------------------

POISON_TEXT = st.sampled_from(["\ud800", "\udfff", "a\udc00b", "\U0001f600", "", "/3/0/1", "NaN"])
TEXT = st.text(max_size=8) | POISON_TEXT
NUMBER = st.integers(-(2**70), 2**70) | st.floats() | st.sampled_from([10**400, 1e308 * 10])
JSONISH = st.recursive(
    st.none() | st.booleans() | NUMBER | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=12,
)
FIELDS = [
    "ep",
    "path",
    "ct",
    "payload",
    "max-age",
    "uid",
    "timestamp",
    "original-ep",
    "id",
    "status",
    "error",
]
FIELDS += ["ept", "q", "resources", "other"]
ITEM = st.dictionaries(st.sampled_from(FIELDS), JSONISH | TEXT, max_size=8) | TEXT | JSONISH
PAYLOADS = st.sampled_from(["MjEuNQ==", "6BZEDDI0LjYxMTExMDY4Nw==", "wQlk", "oWF4+X4A", "W1s=", "!!"])
NOTIFICATION = st.fixed_dictionaries(
    {"ep": TEXT, "path": st.sampled_from(["/3303/0/5700", "/3/0", "/9000/0/1", "x"]), "payload": PAYLOADS},
    optional={"ct": st.sampled_from(["text/plain", "11542", "application/cbor", "application/json", "60"])},
)
KINDS = st.sampled_from(
    ["notifications", "registrations", "reg-updates", "de-registrations", "async-responses"]
)
MESSAGE = st.dictionaries(KINDS | TEXT, st.lists(ITEM | NOTIFICATION, max_size=4) | ITEM, max_size=4)


def to_body(message: dict[str, Any]) -> str:
    """The body as a sender would write it: JSON with \\u escapes, NaN / Infinity literals allowed."""
    return json.dumps(message, allow_nan=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MESSAGE)
def test_every_event_of_any_body_round_trips_through_json(message):
    parsed = parse_batch(to_body(message), MODEL)
    for event in parsed.events:
        assert_round_trips(event)
        json.dumps(event.to_dict(), allow_nan=False)  # no NaN / Infinity left anywhere
    for rejection in parsed.rejections:
        assert_storable(rejection)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_literals_in_a_body_become_text(literal):
    parsed = parse_batch('{"notifications": [{"ep": "a", "path": "/1/0/1", "v": ' + literal + "}]}", MODEL)
    [event] = parsed.events
    value = event.extra["v"]
    assert isinstance(value, str)
    assert value == ("Infinity" if literal == "1e999" else literal)
    assert not (isinstance(value, float) and math.isnan(value))


def test_raw_surrogate_bytes_are_repaired_like_escaped_ones():
    # Websocket and pull bodies skip the web's UTF-8 check: the encoded surrogate U+D800 arrives as bytes,
    # which json.loads(bytes) would let through (surrogatepass) and UTF-8 cannot encode again.
    body = (
        b'{"notifications": [{"ep": "dev-\xed\xa0\x80", "path": "/3/0/0"}, {"ep": "good", "path": "/3/0/0"}]}'
    )
    parsed = parse_batch(body, MODEL)
    assert [e.ep for e in parsed.events] == ["dev-\ufffd\ufffd\ufffd", "good"]  # U+FFFD per invalid byte
    assert parsed.rejections == []
    for event in parsed.events:
        assert_round_trips(event)
