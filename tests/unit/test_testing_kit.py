"""The kit handler authors test with: Events from bodies or keywords, a synchronous run."""

from __future__ import annotations

import pytest

from tests.conftest import SAMPLES
from workers.handlers import Router
from workers.testing import events_from_body, make_event, run


def test_events_from_a_captured_body_file() -> None:
    events = events_from_body(SAMPLES / "batches" / "notifications.json")
    assert [e.value for e in events] == [23.5, 41.0, True]


def test_events_from_a_dict_body() -> None:
    (event,) = events_from_body({"registrations": [{"ep": "x", "ept": "Light"}]})
    assert event.kind == "registrations"
    assert event.ept == "Light"


def test_a_body_with_rejected_items_is_an_error_for_the_author() -> None:
    with pytest.raises(ValueError, match="rejected"):
        events_from_body({"notifications": [{"path": "/1"}]})


def test_make_event_decodes_payload_like_the_worker() -> None:
    event = make_event(ep="d", path="3303/0/5700", payload="21.5")
    assert event.path == "/3303/0/5700"
    assert event.payload_b64 == "MjEuNQ=="
    assert event.value == 21.5


def test_run_records_calls_and_exceptions() -> None:
    router = Router()

    @router.register("notifications", name="ok")
    def ok(event: object) -> None:
        return None

    @router.register("notifications", name="boom")
    def boom(event: object) -> None:
        raise RuntimeError("boom")

    @router.register("notifications", name="bulk", batch=True)
    def bulk(events: list[object]) -> None:
        return None

    events = [make_event(ep="a", path="/1/0/1", payload="5"), make_event(ep="b", path="/1/0/1", payload="6")]
    result = run(router, events)
    assert len(result.called("ok")) == 2
    assert len(result.called("bulk")) == 2
    assert [c.handler for c in result.calls].count("bulk") == 1
    assert [str(c.error) for c in result.errors] == ["boom", "boom"]


def test_make_event_gives_the_workers_value_shape_for_tlv() -> None:
    instance = make_event(
        path="/3303/0", ct="application/vnd.oma.lwm2m+tlv", payload=bytes.fromhex("E4164432332E35")
    )
    assert (instance.value, instance.values) == ({"/3303/0/5700": 23.5}, {"/3303/0/5700": 23.5})
    resource = make_event(path="3303/0/5700", ct="11542", payload=bytes.fromhex("E4164432332E35"))
    assert (resource.path, resource.value, resource.values) == ("/3303/0/5700", 23.5, {"/3303/0/5700": 23.5})
