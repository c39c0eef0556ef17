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


def unreachable_message(url: str | None, exc: Exception) -> str:
    """One short line for a Redis that cannot be reached, naming REDIS_URL (never its password)."""
    from app.config import RUNNER_ENV_FILE, redact_url

    reason = str(exc).strip().split("\n")[0].rstrip(".") or type(exc).__name__
    return (
        f"cannot reach Redis at REDIS_URL={redact_url(url)} ({reason}): is it running? "
        f"(`devicehooks run` writes its REDIS_URL to {RUNNER_ENV_FILE} while it runs)"
    )
