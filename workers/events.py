"""The Event: what a handler receives, one per item of a batch (DESIGN.md's contract).

Kinds: the six of the Connect API (`KINDS`), and any other key a batch carries - Device Management's
API conventions say to expect new ones. An item under an unknown key becomes an Event of that kind,
the raw item in `extra["item"]` (its `ep` and `path` filled when it has them), delivered to handlers
registered for all kinds (`ALL_KINDS`, the default of `Router.register`).

Every Event survives ``Event.from_dict(json.loads(json.dumps(event.to_dict())))`` unchanged - dead
letters and retries store Events as JSON - because what goes in is JSON-safe by construction (see
`workers.batch`): lone surrogates repaired, no NaN or infinite float, no int JSON cannot print, no
nesting deeper than `workers.decoding.limits.MAX_DEPTH`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

KINDS = (
    "notifications",
    "registrations",
    "reg-updates",
    "de-registrations",
    "registrations-expired",
    "async-responses",
)


class AllKinds(frozenset[str]):
    """The six known kinds, and membership for any kind: what a handler registered for all kinds gets."""

    def __contains__(self, kind: object) -> bool:
        """Every kind, known or new, is in."""
        return isinstance(kind, str)


ALL_KINDS = AllKinds(KINDS)


@dataclass(slots=True)
class Event:
    """One device event; attributes are named like the JSON fields ``devicehooks decode`` prints."""

    kind: str
    ep: str | None = None
    path: str | None = None
    ct: str | None = None
    max_age: int | None = None
    payload_b64: str | None = None
    value: Any = None
    values: dict[str, Any] = field(default_factory=dict)
    ept: str | None = None
    q: bool | None = None
    original_ep: str | None = None
    resources: list[dict[str, Any]] | None = None
    id: str | None = None
    status: int | None = None
    error: str | None = None
    uid: str | None = None
    timestamp: int | str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    decode_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every field, None included, so consumers see a stable shape."""
        return {name: getattr(self, name) for name in _FIELD_NAMES}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """Rebuild an Event from its JSON form (unknown keys go to ``extra``)."""
        known = {k: v for k, v in data.items() if k in _FIELD_SET}
        unknown = {k: v for k, v in data.items() if k not in _FIELD_SET}
        event = cls(**known)
        if unknown:
            event.extra = {**event.extra, **unknown}
        return event


_FIELD_NAMES = tuple(f.name for f in fields(Event))
_FIELD_SET = frozenset(_FIELD_NAMES)
