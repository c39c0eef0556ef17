"""The state handler's writes (one pipeline per batch, bounded) and the read side in app.state."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from redis import Connection, Redis

from app import state
from app.config import Settings
from tests.conftest import SAMPLES
from workers.events import Event
from workers.handlers.discovery import load_router
from workers.handlers.state import CHUNK_DEVICES, NAME, StateWriter, encode_value, plan
from workers.testing import events_from_body, make_event

LIFECYCLE = SAMPLES / "state" / "device_lifecycle.json"
NOW = 1_764_520_100.0


class CountingConnection(Connection):
    """A connection that counts what it sends: one send is one round trip."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1
        super().send_packed_command(command, check_health)


def writer(redis: Redis, **bounds: Any) -> StateWriter:
    return StateWriter(redis, state.Bounds(**bounds))


def notification(ep: str, value: str, path: str = "/3303/0/5700", uid: str | None = None) -> Event:
    return make_event(ep=ep, path=path, payload=value, uid=uid)


def test_registration_and_notifications_fill_the_directory_values_and_history(redis: Redis) -> None:
    writer(redis).write(events_from_body(LIFECYCLE), now=NOW)
    lamp = state.device(redis, "lamp-1")
    assert lamp is not None
    assert (lamp["object"], lamp["id"]) == ("device", "lamp-1")
    assert (lamp["ept"], lamp["status"], lamp["original_ep"], lamp["queue_mode"]) == (
        "Light", "registered", "my-lamp", True,
    )  # fmt: skip
    assert [r["path"] for r in lamp["resources"]] == ["/3311/0/5850", "/3/0/0"]
    assert lamp["first_seen"] == lamp["last_seen"] == state.iso(NOW)
    (temperature,) = state.resources(redis, "sensor-1")
    assert (temperature["path"], temperature["value"], temperature["uid"]) == ("/3303/0/5700", 22.0, "n-2")
    assert temperature["timestamp"] == state.iso(1764520060)
    history = state.history(redis, "sensor-1", None, False)
    assert [(h["kind"], h["value"]) for h in history] == [
        ("registrations", None),
        ("notifications", 21.5),
        ("notifications", 22.0),
    ]
    assert history[1]["timestamp"] == state.iso(1764520000)
    assert history[1]["received_at"] == state.iso(NOW)


def test_notification_without_timestamp_uses_the_time_received(redis: Redis) -> None:
    writer(redis).write([notification("d", "5", uid="u")], now=NOW)
    (entry,) = state.history(redis, "d", None, False)
    assert entry["timestamp"] == entry["received_at"] == state.iso(NOW)


def test_deregistration_and_expiry_set_the_status_and_a_late_notification_keeps_it(redis: Redis) -> None:
    w = writer(redis)
    w.write(events_from_body(LIFECYCLE), now=NOW)
    w.write(
        [Event(kind="de-registrations", ep="lamp-1"), Event(kind="registrations-expired", ep="sensor-1")],
        now=NOW + 1,
    )
    w.write([notification("lamp-1", "0", path="/3311/0/5850")], now=NOW + 2)
    lamp, sensor = state.device(redis, "lamp-1"), state.device(redis, "sensor-1")
    assert lamp is not None
    assert sensor is not None
    assert (lamp["status"], sensor["status"]) == ("deregistered", "expired")
    assert (lamp["first_seen"], lamp["last_seen"]) == (state.iso(NOW), state.iso(NOW + 2))
    assert lamp["ept"] == "Light"  # a de-registration carries no ept: the known one stays


def test_tlv_notification_keeps_every_resource_it_carries(redis: Redis) -> None:
    sample = json.loads((SAMPLES / "payloads" / "tlv_temperature_object_two_instances.json").read_text())
    event = make_event(ep="t", path=sample["path"], ct=sample["ct"], payload_b64=sample["payload_b64"])
    writer(redis).write([event], now=NOW)
    assert [(r["path"], r["value"]) for r in state.resources(redis, "t")] == sorted(sample["value"].items())


def test_one_batch_costs_one_round_trip_whatever_its_size(redis_url: str, redis: Redis) -> None:
    counted = Redis.from_url(redis_url, connection_class=CountingConnection)
    w = writer(counted)
    w.write([notification("warm-up", "1")], now=NOW)
    events = [notification(f"dev-{i % 50}", str(i), uid=f"u{i}") for i in range(2000)]
    CountingConnection.sends = 0
    w.write(events, now=NOW)
    assert CountingConnection.sends == 1
    assert state.device_count(redis) == 51
    counted.close()


def test_history_is_capped_by_count(redis: Redis) -> None:
    w = writer(redis, history_max=5)
    w.write([notification("d", str(i)) for i in range(8)], now=NOW)
    assert [h["value"] for h in state.history(redis, "d", None, False)] == [3, 4, 5, 6, 7]
    assert redis.xlen(state.hist_key("d")) == 5


def old_entries(redis: Redis, ep: str, count: int) -> None:
    """History entries recorded two hours ago (entry ids are Redis's clock, so they are set here)."""
    start_ms = int((time.time() - 7200) * 1000)
    for i in range(count):
        redis.xadd(state.hist_key(ep), {"kind": "notifications", "value": "0"}, id=f"{start_ms + i}-0")


def test_history_older_than_the_age_bound_is_trimmed_in_whole_nodes_and_hidden(redis: Redis) -> None:
    old_entries(redis, "d", 550)
    writer(redis, history_seconds=3600).write([notification("d", "99")])
    assert redis.xlen(state.hist_key("d")) < 501  # whole old nodes went (a partly old one may stay)
    assert [h["value"] for h in state.history(redis, "d", None, False, max_age=3600)] == [99]
    assert [h["value"] for h in state.history(redis, "d", None, True, max_age=3600)] == [99]


def test_resources_per_device_are_capped_and_known_paths_still_update(redis: Redis) -> None:
    w = writer(redis, max_resources=2)
    w.write([notification("d", "1", path=f"/3303/{i}/5700") for i in range(4)], now=NOW)
    w.write([notification("d", "7", path="/3303/0/5700")], now=NOW + 1)
    assert [(r["path"], r["value"]) for r in state.resources(redis, "d")] == [
        ("/3303/0/5700", 7),
        ("/3303/1/5700", 1),
    ]


def test_devices_beyond_the_cap_are_evicted_oldest_seen_first(redis: Redis) -> None:
    w = writer(redis, max_devices=3)
    for i in range(5):
        w.write([notification(f"d{i}", "1")], now=NOW + i)
    assert [d["id"] for d in state.iter_devices(redis, None, False)] == ["d2", "d3", "d4"]
    assert not redis.exists(state.res_key("d0"), state.hist_key("d0"), state.dev_key("d0"))


def test_every_key_of_a_device_expires_after_the_ttl_and_stale_devices_leave_the_index(redis: Redis) -> None:
    w = writer(redis, ttl_seconds=100)
    w.write([notification("old", "1")], now=NOW)
    assert 0 < redis.ttl(state.hist_key("old")) <= 100
    w.write([notification("new", "1")], now=NOW + 101)
    assert [d["id"] for d in state.iter_devices(redis, None, False)] == ["new"]


def test_scripts_are_reloaded_after_redis_lost_them(redis: Redis) -> None:
    w = writer(redis, max_resources=1)
    w.write([notification("d", "1")], now=NOW)
    redis.script_flush()
    w.write([notification("d", "2"), notification("d", "3", path="/3303/1/5700")], now=NOW + 1)
    assert [(r["path"], r["value"]) for r in state.resources(redis, "d")] == [("/3303/0/5700", 2)]


def test_async_responses_and_events_without_ep_are_not_recorded() -> None:
    assert (
        plan(
            [Event(kind="async-responses", id="a1", status=200), Event(kind="notifications", path="/1")], NOW
        )
        == {}
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2016-11-30T16:25:12.1234Z", 1480523112.1234),
        ("20161130T162512Z", 1480523112.0),
        (1480523112, 1480523112.0),
        (1480523112000, 1480523112.0),
        ("not a date", None),
    ],
)
def test_times_parse_from_device_management_formats(raw: object, expected: float | None) -> None:
    assert (
        state.parse_time(raw) == pytest.approx(expected)
        if expected is not None
        else state.parse_time(raw) is None
    )


@pytest.mark.parametrize(
    "raw",
    [
        "nan", "inf", "-inf", "1e30", float("inf"), 10**20, pytest.param(10**400, id="10**400"),
        "20161330T162512Z", "99991231T235959.9999999Z", "0001-01-01T00:00:00+01:00",
    ],
)  # fmt: skip
def test_times_not_finite_or_beyond_the_calendar_do_not_parse(raw: object) -> None:
    assert state.parse_time(raw) is None


@pytest.mark.parametrize("raw", ["inf", "nan", "1e30"])
def test_a_timestamp_beyond_the_calendar_is_stored_as_the_time_received(redis: Redis, raw: str) -> None:
    writer(redis).write([make_event(ep="d", path="/3303/0/5700", payload="5", timestamp=raw)], now=NOW)
    (value,) = state.resources(redis, "d")
    (entry,) = state.history(redis, "d", None, False)
    assert value["timestamp"] == entry["timestamp"] == entry["received_at"] == state.iso(NOW)


def test_state_handler_is_loaded_unless_switched_off() -> None:
    on, off = Settings(state=True), Settings(state=False)
    assert load_router([], use_entry_points=False, settings=on).get(NAME) is not None
    assert load_router([], use_entry_points=False, settings=off).get(NAME) is None


def test_a_large_batch_is_split_into_script_calls_of_at_most_200_devices(redis: Redis) -> None:
    w = writer(redis)
    w.write([notification("warm-up", "1")], now=NOW)
    redis.config_resetstat()
    w.write([notification(f"dev-{i}", "1") for i in range(1000)], now=NOW)
    assert redis.info("commandstats")["cmdstat_evalsha"]["calls"] == 1000 // CHUNK_DEVICES == 5
    assert state.device_count(redis) == 1001


def test_history_stays_at_its_exact_cap_across_batches(redis: Redis) -> None:
    w = writer(redis, history_max=5)
    w.write([notification("d", str(i)) for i in range(3)], now=NOW)
    w.write([notification("d", str(i)) for i in range(3, 7)], now=NOW + 1)
    assert redis.xlen(state.hist_key("d")) == 5
    assert [h["value"] for h in state.history(redis, "d", None, False)] == [2, 3, 4, 5, 6]


def test_history_entries_of_every_kind_share_one_field_layout(redis: Redis) -> None:
    writer(redis).write(events_from_body(LIFECYCLE), now=NOW)
    rows: Any = redis.xrange(state.hist_key("sensor-1"))
    layouts = {tuple(fields) for _, fields in rows}
    assert layouts == {
        (b"kind", b"timestamp", b"received_at", b"path", b"value", b"ct", b"uid"),
    }


def test_a_device_whose_directory_expired_before_the_sweep_is_recorded_anew(redis: Redis) -> None:
    w = writer(redis)
    w.write([notification("d", "1")], now=NOW)
    redis.delete(state.dev_key("d"))  # its TTL ran out; the index still holds it
    w.write([notification("d", "2")], now=NOW + 5)
    device = state.device(redis, "d")
    assert device is not None
    assert (device["status"], device["first_seen"], device["last_seen"]) == (
        "registered", state.iso(NOW + 5), state.iso(NOW + 5),
    )  # fmt: skip
    assert [d["id"] for d in state.iter_devices(redis, None, False)] == ["d"]


def test_entries_from_the_earlier_layout_still_read(redis: Redis) -> None:
    redis.xadd(
        state.hist_key("d"),
        {"kind": "notifications", "timestamp": repr(NOW - 60), "received_at": repr(NOW), "value": "5"},
    )
    (entry,) = state.history(redis, "d", None, False)
    assert (entry["value"], entry["path"], entry["ct"], entry["uid"]) == (5, None, None, None)
    assert (entry["timestamp"], entry["received_at"]) == (state.iso(NOW - 60), state.iso(NOW))


@pytest.mark.parametrize(
    "value",
    [21.5, -0.0, 1e300, float("nan"), float("inf"), 7, 2**70, True, None, 'a\u00e9"\n', [1, "x"], {"a": 1.5}],
)
def test_values_are_encoded_exactly_as_the_json_encoder_writes_them(value: object) -> None:
    assert encode_value(value) == json.dumps(value, separators=(",", ":"))
