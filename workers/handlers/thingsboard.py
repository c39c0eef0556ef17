"""Built-in handler (on when THINGSBOARD_HOST is set): events -> the bridge's Redis stream.

Each event is mapped to its gateway fragments here (``app.thingsboard.mapping``), so an event
ThingsBoard could not take goes to the dead letters with its reason at once, never onto the wire
(ThingsBoard closes the whole gateway session on one bad payload). The stream is bounded by
THINGSBOARD_BACKLOG_MAX events: beyond it, events are refused, counted in ``devicehooks:tb:dropped``
and logged, so an outage of ThingsBoard longer than the cap allows costs the newest events, never
Redis's memory.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from app.thingsboard import stream
from app.thingsboard.mapping import MAPPED_KINDS, MappingError, Options, fragments_of
from workers import runtime
from workers.decoding import ObjectModel
from workers.decoding.paths import parse_path
from workers.directory import learn_and_fill
from workers.events import Event
from workers.handlers.router import Router

logger = logging.getLogger(__name__)
router = Router()
NAME = "devicehooks:thingsboard"


def _slug(text: str) -> str:
    """``Sensor Value`` -> ``sensor_value``."""
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")


def readable_key(model: ObjectModel, path: str) -> str | None:
    """``/3303/0/5700`` -> ``temperature_0_sensor_value`` from the object model; None when unknown."""
    ids = parse_path(path)
    if ids is None or len(ids) < 3:
        return None
    obj_name, definition = model.object_name(ids[0]), model.resource(ids[0], ids[2])
    if not obj_name or definition is None:
        return None
    return "_".join([_slug(obj_name), str(ids[1]), _slug(definition.name), *map(str, ids[3:])])


def _names(model: ObjectModel, event: Event) -> dict[str, str]:
    """Readable keys of a notification's resource paths (those the model knows)."""
    paths = list(event.values) or ([event.path] if event.path else [])
    found = {path: readable_key(model, path) for path in paths}
    return {path: key for path, key in found.items() if key}


def to_stream(events: list[Event]) -> dict[str, int]:
    """Map each event; dead-letter those that cannot be mapped; append the rest to the stream."""
    rt = runtime.current()
    options = Options.from_settings(rt.settings)
    if options.uses_ept:
        learn_and_fill(rt.redis, events)
    received_ms = int(time.time() * 1000)
    mapped: list[list[dict[str, Any]]] = []
    rejected: list[tuple[Event, str]] = []
    for event in events:
        names = _names(rt.model, event) if options.keys == "names" and event.kind == "notifications" else None
        try:
            mapped.append(fragments_of(event.to_dict(), options, received_ms, names))
        except MappingError as exc:
            rejected.append((event, str(exc)))
    dead = rt.dispatcher.dead  # the configured limits (DEAD_LETTERS_*), as every dead letter
    for event, reason in rejected:
        dead.add(NAME, [event.to_dict()], reason, "", attempts=0, source="thingsboard-mapping")
        logger.warning("thingsboard: event of %s dead-lettered: %s", event.ep, reason)
    added, dropped = stream.append(rt.redis, mapped, rt.settings.thingsboard_backlog_max)
    if dropped:
        logger.error(
            "thingsboard: backlog at its cap of %d events (ThingsBoard unreachable?): %d events dropped",
            rt.settings.thingsboard_backlog_max,
            dropped,
        )
    return {"added": added, "dropped": dropped, "dead": len(rejected)}


router.add(to_stream, list(MAPPED_KINDS), batch=True, name=NAME, timeout=30.0)
