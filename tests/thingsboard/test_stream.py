"""The bridge's Redis side and the built-in handler, on the suite's real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from redis import Redis

from app.config import Settings
from app.thingsboard import stream
from tests.conftest import sample
from workers import runtime
from workers.batch import parse_batch
from workers.deadletters import DeadLetters
from workers.decoding import default_object_model
from workers.events import Event
from workers.handlers.discovery import load_router
from workers.handlers.thingsboard import NAME, readable_key, to_stream


def fragments(n: int) -> list[list[dict[str, object]]]:
    """n one-fragment events."""
    return [
        [{"op": "telemetry", "device": "d", "entry": {"ts": i + 1, "values": {"k": i}}}] for i in range(n)
    ]


def test_append_stops_at_the_cap_and_counts_what_it_dropped(redis: Redis) -> None:
    assert stream.append(redis, fragments(3), cap=5) == (3, 0)
    assert stream.append(redis, fragments(4), cap=5) == (2, 2)
    assert stream.status(redis)["backlog"] == 5
    assert stream.status(redis)["dropped"] == 2


def test_entries_stay_pending_until_acked_and_a_restart_reads_them_again(redis: Redis) -> None:
    stream.append(redis, fragments(3), cap=100)
    stream.ensure_group(redis)
    stream.ensure_group(redis)  # idempotent
    first = stream.read(redis, 10, 100, pending=False)
    assert [e.fragments[0]["entry"]["ts"] for e in first if e.fragments] == [1, 2, 3]
    assert stream.read(redis, 10, 100, pending=False) == []
    again = stream.read(redis, 10, 100, pending=True)  # what a restarted bridge reads first
    assert [e.id for e in again] == [e.id for e in first]
    stream.ack(redis, [e.id for e in again])
    assert stream.read(redis, 10, 100, pending=True) == []
    assert stream.status(redis)["backlog"] == 0


def test_an_unreadable_entry_is_reported_as_such(redis: Redis) -> None:
    stream.ensure_group(redis)
    redis.xadd(stream.STREAM, {"f": "not json"})
    (entry,) = stream.read(redis, 10, 100, pending=False)
    assert entry.fragments is None


def test_registry_keeps_the_last_lifecycle_of_each_device(redis: Redis) -> None:
    stream.record_lifecycle(
        redis,
        [
            {"op": "connect", "device": "a", "type": "Light", "ep": "ep-a"},
            {"op": "connect", "device": "b", "type": "Sensor", "ep": "ep-b"},
            {"op": "telemetry", "device": "a"},
        ],
    )
    stream.record_lifecycle(redis, [{"op": "disconnect", "device": "b", "ep": "ep-b"}])
    assert stream.live_devices(redis) == [("a", "Light")]
    assert stream.device(redis, "b") == {"ep": "ep-b", "type": None, "live": False}
    assert stream.device(redis, "never") is None


@pytest.fixture
def installed(redis: Redis, settings: Settings) -> Iterator[runtime.Runtime]:
    """A worker runtime with the ThingsBoard handler on (THINGSBOARD_HOST set)."""
    configured = settings.with_overrides(
        thingsboard_host="127.0.0.1", thingsboard_token="t", thingsboard_backlog_max=6
    )
    rt = runtime.install(runtime.build(configured, redis=redis))
    yield rt
    runtime.install(None)  # type: ignore[arg-type]


def sample_events() -> list[Event]:
    """The decoded sample batch."""
    return parse_batch(sample("thingsboard/batch.json"), default_object_model()).events


def test_handler_is_loaded_only_when_thingsboard_host_is_set(settings: Settings) -> None:
    assert load_router([], use_entry_points=False, settings=settings).get(NAME) is None
    on = settings.with_overrides(thingsboard_host="tb", thingsboard_token="t")
    assert load_router([], use_entry_points=False, settings=on).get(NAME) is not None


def test_handler_streams_mappable_events_and_dead_letters_the_rest_with_a_reason(
    redis: Redis, installed: runtime.Runtime
) -> None:
    assert installed.router.get(NAME) is not None
    events = sample_events()
    result = to_stream(events)
    assert result == {"added": 6, "dropped": 2, "dead": 1}  # 9 events, 1 undecodable, cap 6
    (letter,) = DeadLetters(redis).list()
    assert letter["handler"] == NAME
    assert "could not be decoded" in letter["error"]
    stored = [json.loads(fields[b"f"]) for _, fields in redis.xrange(stream.STREAM)]
    assert [f["op"] for f in stored[0]] == ["connect", "attributes"]
    assert stream.status(redis)["dropped"] == 2


def test_readable_keys_come_from_the_object_model() -> None:
    model = default_object_model()
    assert readable_key(model, "/3303/0/5700") == "temperature_0_sensor_value"
    assert readable_key(model, "/3/0/11/2") == "device_0_error_code_2"
    assert readable_key(model, "/32769/0/1") is None
    assert readable_key(model, "/3303") is None


def test_names_mode_keys_telemetry_by_readable_resource_names(
    redis: Redis, installed: runtime.Runtime, settings: Settings
) -> None:
    named = installed.settings.with_overrides(thingsboard_keys="names")
    runtime.install(runtime.build(named, redis=redis))
    tlv = next(e for e in sample_events() if e.path == "/3303/0")
    assert to_stream([tlv])["added"] == 1
    ((_, fields),) = redis.xrange(stream.STREAM)
    (fragment,) = json.loads(fields[b"f"])
    assert fragment["entry"]["values"] == {
        "temperature_0_sensor_value": 21.5,
        "temperature_0_sensor_units": "Cel",
    }
