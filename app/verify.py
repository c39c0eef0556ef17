"""Header verification: a pure function over the request headers and the configured secrets."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from typing import Any

HeaderGetter = Callable[[str], str | None]


def environ_key(name: str) -> str:
    """Where a WSGI environ holds a request header: ``X-Request-ID`` -> ``HTTP_X_REQUEST_ID``."""
    key = name.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key


def environ_headers(environ: Mapping[str, Any]) -> HeaderGetter:
    """Look request headers up by name in a WSGI environ, as werkzeug's Headers do."""

    def get(name: str) -> str | None:
        value = environ.get(environ_key(name))
        return value if isinstance(value, str) else None

    return get


def _normalise(headers: Mapping[str, str]) -> tuple[tuple[str, bytes], ...]:
    """Lower-case the names and encode the values once, at startup."""
    return tuple((name.lower(), value.encode()) for name, value in headers.items())


def _matches(expected: tuple[tuple[str, bytes], ...], get: HeaderGetter) -> bool:
    """True when every expected header is present with an equal value (constant time per value)."""
    ok = True
    for name, value in expected:
        got = get(name)
        got_bytes = got.encode("latin-1", "replace") if got is not None else b""
        # Compare every header even after a mismatch so timing does not reveal which one failed.
        ok = hmac.compare_digest(got_bytes, value) and got is not None and ok
    return ok


class HeaderVerifier:
    """Accepts a request whose headers match the current or the previous secret set."""

    def __init__(self, current: Mapping[str, str], previous: Mapping[str, str] | None = None) -> None:
        self._sets = [s for s in (_normalise(current), _normalise(previous or {})) if s]

    @property
    def enabled(self) -> bool:
        """False when no headers are configured (the insecure development opt-out)."""
        return bool(self._sets)

    def verify(self, get: HeaderGetter) -> bool:
        """True when the headers (looked up case-insensitively by ``get``) match one secret set."""
        if not self._sets:
            return True
        results = [_matches(expected, get) for expected in self._sets]
        return any(results)
