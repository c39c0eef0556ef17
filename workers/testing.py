"""A testing kit for handler authors: build Events, run a router synchronously, see what happened.

    from workers.testing import make_event, run

    result = run(router, [make_event(ep="dev-1", path="/3303/0/5700", payload="21.5")])
    assert result.called("mypkg.handlers:on_temperature")[0].value == 21.5
    assert not result.errors

``make_event`` decodes like the worker, so ``value`` and ``values`` have the worker's shape (``values``:
path -> typed value for every content type; ``value`` the scalar when the path names one resource):

    tlv = make_event(path="/3303/0", ct="11542", payload=bytes.fromhex("E4164432332E35"))
    assert tlv.values == {"/3303/0/5700": 23.5}

No Redis, no threads, no retries: each matching handler is called in registration order, with
events in batch order, exactly as the worker would match them; exceptions are captured.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.paths import normalize_path
from workers.batch import events_from_message, parse_body
from workers.decoding import ObjectModel, decode_value, default_object_model, shape_values
from workers.events import Event
from workers.handlers.router import Router


def events_from_body(
    body: bytes | str | dict[str, Any] | Path, model: ObjectModel | None = None
) -> list[Event]:
    """Events of a captured callback body (bytes, text, a parsed dict or a file path)."""
    if isinstance(body, Path):
        body = body.read_bytes()
    message = body if isinstance(body, dict) else parse_body(body)
    parsed = events_from_message(message, model or default_object_model())
    if parsed.rejections:
        reasons = "; ".join(f"{r.kind}[{r.index}]: {r.reason}" for r in parsed.rejections)
        raise ValueError(f"the body has rejected items: {reasons}")
    return parsed.events


def make_event(
    kind: str = "notifications",
    *,
    payload: str | bytes | None = None,
    model: ObjectModel | None = None,
    **fields: Any,
) -> Event:
    """An Event from keyword arguments; ``payload`` (text or bytes) is encoded and decoded as DM would."""
    if payload is not None:
        raw = payload.encode() if isinstance(payload, str) else payload
        fields["payload_b64"] = base64.b64encode(raw).decode()
    if fields.get("path") is not None:
        fields["path"] = normalize_path(fields["path"])
    event = Event(kind=kind, **fields)
    if event.payload_b64 is not None and "value" not in fields:
        decoded, event.decode_error = decode_value(
            event.payload_b64, event.ct, event.path or "", model or default_object_model()
        )
        event.value, event.values = shape_values(decoded, event.ct, event.path or "")
    return event


@dataclass
class Call:
    """One handler call: which handler, with what, and what it raised."""

    handler: str
    events: list[Event]
    error: BaseException | None = None


@dataclass
class RunResult:
    """Everything a synchronous run did."""

    calls: list[Call] = field(default_factory=list)

    def called(self, handler: str) -> list[Event]:
        """Events the named handler received (over all its calls)."""
        return [event for call in self.calls if call.handler == handler for event in call.events]

    @property
    def errors(self) -> list[Call]:
        """Calls that raised."""
        return [call for call in self.calls if call.error is not None]


def run(router: Router, events: list[Event]) -> RunResult:
    """Deliver events to every matching handler, synchronously, capturing exceptions."""
    result = RunResult()
    for handler, matched in router.matching(events):
        if handler.batch:
            result.calls.append(_call(handler.name, handler.func, matched, list(matched)))
            continue
        for event in matched:
            result.calls.append(_call(handler.name, handler.func, [event], event))
    return result


def _call(name: str, func: Any, events: list[Event], argument: Any) -> Call:
    """Call one handler and record the outcome."""
    try:
        func(argument)
    except Exception as exc:
        return Call(name, events, exc)
    return Call(name, events)
