"""Management keys: ``Authorization: Bearer <key>``, compared in constant time, never logged."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from app.errors import Unauthorized

BEARER = "bearer "


def key_matches(candidate: str | None, keys: Sequence[str]) -> bool:
    """True when ``candidate`` equals one of ``keys`` (every key compared, in constant time)."""
    if not candidate:
        return False
    given = candidate.encode()
    hits = [hmac.compare_digest(given, key.encode()) for key in keys]
    return any(hits)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header or header[: len(BEARER)].lower() != BEARER:
        return None
    return header[len(BEARER) :].strip() or None


def require_key(header: str | None, keys: Sequence[str]) -> None:
    """Raise 401 (invalid_auth) unless the header carries one of the keys."""
    if not key_matches(bearer_token(header), keys):
        raise Unauthorized("a valid management key is required: Authorization: Bearer <key>")
