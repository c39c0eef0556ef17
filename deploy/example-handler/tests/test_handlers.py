"""The example handlers, tested with devicehooks' testing kit: no Redis, no worker."""

from __future__ import annotations

import logging

import pytest
from devicehooks_example import handlers

from workers.testing import events_from_body, make_event, run


def test_hot_sensor_raises_an_alert(caplog: pytest.LogCaptureFixture) -> None:
    event = make_event(ep="dev-1", path="/3303/0/5700", ct="text/plain", payload="31.5")
    result = run(handlers.router, [event])
    assert not result.errors
    assert "dev-1 is at 31.5" in caplog.text


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        (
            "/3303/0/5700",
            bytes.fromhex("E8 16 44 04") + b"31.5",
        ),  # one resource, as mbed Cloud Client sends it
        (
            "/3303/0",
            bytes.fromhex("E8 16 44 04") + b"31.5" + bytes.fromhex("E3 16 45") + b"Cel",
        ),  # the instance
    ],
)
def test_hot_sensor_sending_tlv_raises_the_alert_too(
    caplog: pytest.LogCaptureFixture, path: str, payload: bytes
) -> None:
    event = make_event(ep="dev-2", path=path, ct="application/vnd.oma.lwm2m+tlv", payload=payload)
    result = run(handlers.router, [event])
    assert not result.errors
    assert "dev-2 is at 31.5" in caplog.text


def test_normal_reading_and_other_paths_stay_quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    events = [
        make_event(ep="dev-1", path="/3303/0/5700", payload="21.0"),
        make_event(ep="dev-1", path="/3304/0/5700", payload="99"),
    ]
    result = run(handlers.router, events)
    assert len(result.called("devicehooks_example.handlers:temperature_alert")) == 1
    assert caplog.text == ""


def test_registry_follows_registrations_and_de_registrations() -> None:
    body = {
        "registrations": [{"ep": "lamp-1", "ept": "Light"}, {"ep": "lamp-2", "ept": "Light"}],
        "de-registrations": ["lamp-1"],
    }
    run(handlers.router, events_from_body(body))
    assert handlers.registry == {"lamp-2": "Light"}
