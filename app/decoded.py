"""An async result's value for the processes that are not workers but show one (the CLI, the bridge).

The tracker stores payloads as received (one representation); the worker decodes them once, with the
configured object model. A tool that waited for a result decodes it here the same way, through the
workers' pure decoding core (a lazy import: this module is one of the few in ``app`` allowed to use
``workers``, and the web process never loads it — tests/integration/test_layering.py).
"""

from __future__ import annotations

from typing import Any

from app import config
from app.dm.asyncs import AsyncResult


def decode_result(result: AsyncResult) -> Any:
    """An async result's value, decoded like the worker does (the object model of LWM2M_OBJECTS)."""
    from workers.asyncs import event_from_result
    from workers.decoding import model_for

    return event_from_result(result, model_for(config.from_env())).value
