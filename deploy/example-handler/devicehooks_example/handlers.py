"""Example handlers: a temperature alert per event, and a batch handler that keeps a device registry.

Installed, this package's entry point (``devicehooks.handlers``: ``example``) makes every worker
load ``router`` below; no configuration needed.
"""

from __future__ import annotations

import logging

from workers.events import Event
from workers.handlers import Router

logger = logging.getLogger(__name__)
router = Router()

ALERT_ABOVE_CELSIUS = 30.0
registry: dict[str, str | None] = {}


@router.register("notifications", path="/3303/**", attempts=3, timeout=5)
def temperature_alert(event: Event) -> None:
    """Log an alert when a temperature sensor reports more than ALERT_ABOVE_CELSIUS.

    Reads ``event.values`` (path -> typed value, for every content type), so a device that notifies
    /3303/0/5700 as text, one that sends it as TLV, and one that notifies the whole instance /3303/0
    all raise the alert; filtering on the path /3303/*/5700 alone would miss the last kind."""
    for path, value in event.values.items():
        if path.endswith("/5700") and type(value) in (int, float) and value > ALERT_ABOVE_CELSIUS:
            logger.warning("device %s is at %.1f °C (%s)", event.ep, value, path)


@router.register(["registrations", "reg-updates", "de-registrations", "registrations-expired"], batch=True)
def track_devices(events: list[Event]) -> None:
    """Keep ep -> endpoint type for registered devices (a real package would write to its database)."""
    for event in events:
        if event.ep is None:
            continue
        if event.kind in ("registrations", "reg-updates"):
            registry[event.ep] = event.ept
        else:
            registry.pop(event.ep, None)
