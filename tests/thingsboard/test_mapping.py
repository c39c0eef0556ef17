"""The pure mapping: decoded events -> gateway fragments -> as few valid gateway messages as fit."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.thingsboard.mapping import (
    ATTRIBUTES,
    CONNECT,
    DISCONNECT,
    RPC,
    TELEMETRY,
    MappingError,
    Options,
    device_name,
    device_type,
    fragments_of,
    group,
    timestamp_ms,
    validate,
)
from tests.conftest import sample
from workers.batch import parse_batch
from workers.decoding import default_object_model

RECEIVED = 1_764_619_999_000
OPTIONS = Options()


def events() -> list[dict[str, Any]]:
    """The decoded events of the sample batch, as the handler sees them (Event JSON)."""
    parsed = parse_batch(sample("thingsboard/batch.json"), default_object_model())
    return [event.to_dict() for event in parsed.events]


def by(kind: str, path: str | None = None) -> dict[str, Any]:
    """The first sample event of a kind (and path)."""
    return next(e for e in events() if e["kind"] == kind and (path is None or e["path"] == path))


def messages_of(fragments: list[dict[str, Any]], limit: int = 65_536) -> list[tuple[str, Any]]:
    """(topic, parsed payload) of the grouped messages."""
    return [(m.topic, json.loads(m.payload)) for m in group(fragments, limit)]


def test_registration_becomes_connect_with_its_type_then_attributes() -> None:
    fragments = fragments_of(by("registrations"), OPTIONS, RECEIVED)
    assert messages_of(fragments) == [
        (CONNECT, {"device": "dev-a", "type": "Sensor"}),
        (
            ATTRIBUTES,
            {"dev-a": {"ep": "dev-a", "ept": "Sensor", "resources": ["/3303/0/5700", "/3311/0/5850"]}},
        ),
    ]


def test_tlv_notification_gives_several_keys_in_one_values_with_the_event_timestamp() -> None:
    fragments = fragments_of(by("notifications", "/3303/0"), OPTIONS, RECEIVED)
    assert messages_of(fragments) == [
        (
            TELEMETRY,
            {"dev-a": [{"ts": 1_764_619_200_000, "values": {"3303/0/5700": 21.5, "3303/0/5701": "Cel"}}]},
        )
    ]


def test_values_keep_their_types_and_rfc3339_timestamps_are_read() -> None:
    (boolean,) = fragments_of(by("notifications", "/3311/0/5850"), OPTIONS, RECEIVED)
    assert boolean["entry"] == {"ts": 1_796_155_201_250, "values": {"3311/0/5850": True}}
    (number,) = fragments_of(by("notifications", "/3303/0/5700"), OPTIONS, RECEIVED)
    assert number["entry"]["values"] == {"3303/0/5700": 22.25}


def test_notification_without_a_timestamp_is_stamped_with_the_time_it_was_received() -> None:
    (fragment,) = fragments_of(by("notifications", "/3/0/0"), OPTIONS, RECEIVED)
    assert fragment["entry"]["ts"] == RECEIVED


def test_readable_names_replace_paths_when_given() -> None:
    names = {"/3303/0/5700": "temperature_0_sensor_value"}
    options = Options(keys="names")
    (fragment,) = fragments_of(by("notifications", "/3303/0"), options, RECEIVED, names)
    assert fragment["entry"]["values"] == {"temperature_0_sensor_value": 21.5, "3303/0/5701": "Cel"}


def test_deregistration_and_expiry_become_disconnect() -> None:
    for kind, ep in (("de-registrations", "dev-c"), ("registrations-expired", "dev-d")):
        assert messages_of(fragments_of(by(kind), OPTIONS, RECEIVED)) == [(DISCONNECT, {"device": ep})]


def test_undecodable_notification_is_refused_with_its_reason() -> None:
    bad = next(e for e in events() if e["decode_error"])
    with pytest.raises(MappingError, match="could not be decoded: payload is not base64"):
        fragments_of(bad, OPTIONS, RECEIVED)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), b"raw", object()])
def test_values_that_are_not_json_are_refused(value: Any) -> None:
    event = {**by("notifications", "/3303/0/5700"), "values": {"/3303/0/5700": value}}
    with pytest.raises(MappingError):
        fragments_of(event, OPTIONS, RECEIVED)


def test_an_event_above_the_payload_limit_is_refused() -> None:
    event = {**by("notifications", "/3/0/0"), "values": {"/3/0/0": "x" * 70_000}}
    with pytest.raises(MappingError, match="exceeds the 65536-byte limit"):
        fragments_of(event, OPTIONS, RECEIVED)


def test_async_responses_are_not_sent() -> None:
    with pytest.raises(MappingError, match="not sent"):
        fragments_of({"kind": "async-responses", "ep": "x"}, OPTIONS, RECEIVED)


def test_name_template_needing_an_unknown_ept_is_refused_and_type_falls_back_to_default() -> None:
    event = {"kind": "notifications", "ep": "dev-1", "ept": None, "original_ep": "kitchen"}
    with pytest.raises(MappingError, match="needs ept"):
        device_name(event, "{ept}-{ep}")
    assert device_name(event, "{original_ep}") == "kitchen"
    assert device_type(event, "{ept}") == "default"
    assert device_type({**event, "ept": "Light"}, "dm-{ept}") == "dm-Light"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1_764_619_200, 1_764_619_200_000), (1_764_619_200_123, 1_764_619_200_123),
     ("1764619200", 1_764_619_200_000), ("2026-12-01T20:00:00Z", 1_796_155_200_000),
     ("not a time", RECEIVED), ("2026-12-01T20:00:00", RECEIVED),
     (None, RECEIVED), (True, RECEIVED), (-5, RECEIVED)],
)  # fmt: skip
def test_timestamps_in_seconds_milliseconds_or_rfc3339(value: Any, expected: int) -> None:
    assert timestamp_ms(value, RECEIVED) == expected


def test_many_devices_of_one_batch_share_one_telemetry_and_one_attributes_message() -> None:
    fragments = [f for e in events() if not e["decode_error"] for f in fragments_of(e, OPTIONS, RECEIVED)]
    topics = [topic for topic, _ in messages_of(fragments)]
    assert topics.count(TELEMETRY) == 1
    assert topics.count(ATTRIBUTES) == 1
    assert topics.count(CONNECT) == 2
    assert topics.count(DISCONNECT) == 2
    telemetry = dict(messages_of(fragments))[TELEMETRY]
    assert [len(telemetry[d]) for d in ("dev-a", "dev-b")] == [3, 1]


def test_connect_precedes_the_devices_telemetry_and_disconnect_follows_it() -> None:
    connect = {"op": "connect", "device": "d", "type": "T", "ep": "d"}
    tele = {"op": "telemetry", "device": "d", "entry": {"ts": 1, "values": {"k": 1}}}
    other = {"op": "telemetry", "device": "e", "entry": {"ts": 1, "values": {"k": 2}}}
    gone = {"op": "disconnect", "device": "d", "ep": "d"}
    topics = [(t, sorted(p)) for t, p in messages_of([tele, other, gone, connect, tele])]
    assert topics == [
        (TELEMETRY, ["d", "e"]),
        (DISCONNECT, ["device"]),
        (CONNECT, ["device", "type"]),
        (TELEMETRY, ["d"]),
    ]


def test_large_runs_are_split_under_the_payload_limit_in_order() -> None:
    fragments = [
        {"op": "telemetry", "device": f"dev-{i % 7}", "entry": {"ts": i + 1, "values": {"k": "v" * 100}}}
        for i in range(500)
    ]
    messages = group(fragments, 4096)
    assert len(messages) > 1
    seen: dict[str, list[int]] = {}
    for message in messages:
        assert len(message.payload) <= 4096
        validate(message.topic, json.loads(message.payload), 4096, len(message.payload))
        for device, entries in json.loads(message.payload).items():
            seen.setdefault(device, []).extend(e["ts"] for e in entries)
    assert sum(len(v) for v in seen.values()) == 500
    assert all(ts == sorted(ts) for ts in seen.values())


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        (TELEMETRY, {"d": {"ts": 1, "values": {"k": 1}}}),  # not an array
        (TELEMETRY, {"d": [{"values": {"k": 1}}]}),  # ts missing
        (TELEMETRY, {"d": [{"ts": "1", "values": {"k": 1}}]}),
        (TELEMETRY, {"d": [{"ts": 1, "values": {}}]}),
        (ATTRIBUTES, {"d": ["a"]}),
        (CONNECT, {"type": "x"}),
        (CONNECT, {"device": "", "type": "x"}),
        (DISCONNECT, {"device": None}),
        (RPC, {"device": "d", "id": "1", "data": {}}),
        (RPC, {"device": "d", "id": 1}),
        ("v1/gateway/claim", {"d": {}}),
        (TELEMETRY, []),
    ],
)
def test_validation_refuses_what_thingsboard_would_close_the_session_for(topic: str, payload: Any) -> None:
    with pytest.raises(MappingError):
        validate(topic, payload, 65_536, 10)
