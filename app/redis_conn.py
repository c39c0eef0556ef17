"""Redis connections: one place that turns REDIS_URL into a client."""

from __future__ import annotations

from typing import Any

from redis import Redis


def connect(url: str, tls_verify: bool = True, **overrides: Any) -> Redis:
    """Return a client for ``url`` with timeouts suited to a web request path."""
    options: dict[str, Any] = {
        "socket_timeout": 5,
        "socket_connect_timeout": 2,
        "health_check_interval": 30,
        "retry_on_timeout": False,
    }
    if url.startswith("rediss://") and not tls_verify:
        # Heroku-style managed Redis presents self-signed certificates.
        options["ssl_cert_reqs"] = "none"
    options.update(overrides)
    return Redis.from_url(url, **options)


def text(value: Any) -> str:
    """A Redis reply as text (replies are bytes unless the client decodes them)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def raw(value: Any) -> bytes:
    """A Redis reply as bytes."""
    return value if isinstance(value, bytes) else str(value).encode()
