"""Built-in handler: one structured log line per event (``devicehooks run`` turns it on)."""

from __future__ import annotations

import json
import logging

from workers.events import Event
from workers.handlers.router import Router

logger = logging.getLogger("devicehooks.events")
router = Router()


@router.register(batch=True, name="devicehooks:log", timeout=10.0)
def log_events(events: list[Event]) -> None:
    """Log kind, ep, path and value (or the async id and status, or the decode error)."""
    for event in events:
        line = {"kind": event.kind, "ep": event.ep, "path": event.path, "value": event.value}
        if event.kind == "async-responses":
            line.update(id=event.id, status=event.status, error=event.error)
        if event.decode_error:
            line["decode_error"] = event.decode_error
        logger.info("event %s", json.dumps(line, default=str))
