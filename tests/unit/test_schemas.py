"""Batch parsing: tolerant of real senders, isolating bad items, keeping batch order."""

from __future__ import annotations

import json

import pytest

from tests.conftest import sample
from workers.batch import BatchError, parse_batch
from workers.decoding import default_object_model

MODEL = default_object_model()


def parse(message: object) -> object:
    return parse_batch(json.dumps(message), MODEL)


@pytest.mark.parametrize(
    "name",
    [
        "notifications",
        "registrations",
        "reg_updates",
        "de_registrations",
        "registrations_expired",
        "async_responses",
    ],
)
def test_every_sample_kind_parses_without_rejections(name: str) -> None:
    parsed = parse_batch(sample(f"batches/{name}.json"), MODEL)
    assert parsed.events
    assert parsed.rejections == []


def test_max_age_and_status_arrive_as_int_or_string() -> None:
    parsed = parse_batch(sample("batches/async_responses.json"), MODEL)
    assert [e.status for e in parsed.events] == [200, 504]
    assert parsed.events[0].max_age == 60


def test_path_without_leading_slash_is_normalised_and_typed() -> None:
    parsed = parse_batch(sample("batches/notifications.json"), MODEL)
    humidity = parsed.events[1]
    assert humidity.path == "/3304/0/5700"
    assert humidity.value == 41.0
    assert humidity.uid == "a1b2c3"
    assert humidity.timestamp == 1763769600


def test_unknown_fields_are_kept_in_extra() -> None:
    parsed = parse({"notifications": [{"ep": "a", "path": "/1/0/1", "future": {"x": 1}}]})
    assert parsed.events[0].extra == {"future": {"x": 1}}


def test_registration_fields_and_resources_are_kept() -> None:
    (event,) = parse_batch(sample("batches/registrations.json"), MODEL).events
    assert event.original_ep == "my-device-123"
    assert event.ept == "Light"
    assert event.q is False
    assert [r["path"] for r in event.resources or []] == ["/3/0/0", "/3303/0/5700", "/3311/0/5850"]
    assert event.resources
    assert event.resources[0]["if"] == ""


def test_de_registrations_come_as_strings_or_objects() -> None:
    parsed = parse({"de-registrations": ["a", {"ep": "b"}], "registrations-expired": ["c"]})
    assert [(e.kind, e.ep) for e in parsed.events] == [
        ("de-registrations", "a"),
        ("de-registrations", "b"),
        ("registrations-expired", "c"),
    ]


def test_error_null_is_not_an_error() -> None:
    (event,) = parse({"async-responses": [{"id": "x", "status": 200, "error": None}]}).events
    assert event.error is None
    assert event.status == 200


def test_invalid_item_is_rejected_with_reason_and_the_rest_go_on() -> None:
    parsed = parse(
        {
            "notifications": [
                {"ep": "a", "path": "/3303/0/5700", "payload": "MjEuNQ"},
                {"path": "/3303/0/5700"},
                {"ep": "b", "path": "/3303/0/5700", "max-age": "soon"},
                "not an object",
                {"ep": "c", "path": "/3303/0/5700", "payload": "MjIuNQ=="},
            ]
        }
    )
    assert [e.ep for e in parsed.events] == ["a", "c"]
    assert [(r.index, r.reason.split(":")[0]) for r in parsed.rejections] == [
        (1, "ep"),
        (2, "max-age"),
        (3, "an item of notifications must be an object"),
    ]


def test_undecodable_payload_is_still_an_event_with_decode_error() -> None:
    (event,) = parse({"notifications": [{"ep": "a", "path": "/3/0/0", "payload": "!!!not base64"}]}).events
    assert event.value is None
    assert event.decode_error


def test_events_keep_batch_order_across_kinds() -> None:
    parsed = parse_batch(sample("batches/mixed.json"), MODEL)
    assert [e.kind for e in parsed.events] == [
        "notifications",
        "registrations",
        "de-registrations",
        "async-responses",
        "future-kind",
    ]
    assert parsed.rejections == []
    assert parsed.events[-1].extra == {"item": {"x": 1}}


@pytest.mark.parametrize("body", [b"", b"nope", b"[]", b'"x"', b"\xff"])
def test_unusable_body_raises_batch_error(body: bytes) -> None:
    with pytest.raises(BatchError):
        parse_batch(body, MODEL)


def test_kind_that_is_not_a_list_is_rejected_whole() -> None:
    parsed = parse({"notifications": {"ep": "a"}})
    assert parsed.events == []
    assert parsed.rejections[0].reason == "notifications must be a list"
