"""Settings: the only module that reads the environment.

Every value is parsed and checked once, at startup; a missing or invalid value raises
:class:`ConfigError` with a message that names the variable.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

DEFAULT_DM_API_URL = "https://api.us-east-1.mbedcloud.com"
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
INSECURE_OPT_OUT = "DEVICEHOOKS_INSECURE_NO_AUTH"

# `devicehooks run` writes what other terminals need to reach it here, relative to the current
# directory (where the runner keeps its data), and deletes the file when it stops.
RUNNER_ENV_FILE = Path(".devicehooks") / "env"
RUNNER_ENV_KEYS = ("REDIS_URL", "DM_API_URL", "DM_API_KEY", "CALLBACK_HEADERS", "HANDLERS")
RUNNER_PID = "DEVICEHOOKS_RUNNER_PID"
RUNNER_STARTED = "DEVICEHOOKS_RUNNER_STARTED"


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Every setting of the service, parsed and validated."""

    redis_url: str | None = None
    redis_tls_verify: bool = True
    callback_path: str = "/notify"
    callback_url: str | None = None
    callback_headers: dict[str, str] = field(default_factory=dict)
    callback_headers_previous: dict[str, str] = field(default_factory=dict)
    insecure_no_auth: bool = False
    dm_api_url: str = DEFAULT_DM_API_URL
    dm_api_key: str | None = None
    handlers: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    port: int = 8000
    web_concurrency: int = 2
    queue_name: str = "devicehooks"
    object_model_files: tuple[str, ...] = ()
    allow_http_callback: bool = False
    channel: str = "callback"
    presubscriptions_file: str | None = None
    log_level: str = "INFO"
    callback_check_minutes: int = 10  # app.dm.registration: how often the callback registration is checked

    def __repr__(self) -> str:
        """Show the settings without any secret."""
        return (
            f"Settings(redis_url={redact_url(self.redis_url)!r}, callback_path={self.callback_path!r}, "
            f"callback_url={self.callback_url!r}, callback_headers={sorted(self.callback_headers)!r}, "
            f"dm_api_url={self.dm_api_url!r}, dm_api_key={'set' if self.dm_api_key else 'unset'}, "
            f"handlers={self.handlers!r}, queue_name={self.queue_name!r})"
        )

    def with_overrides(self, **changes: Any) -> Settings:
        """Return a copy with some fields replaced (tests, the dev runner)."""
        return replace(self, **changes)


def redact_url(url: str | None) -> str | None:
    """Hide the password part of a URL."""
    if not url:
        return url
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


def _get(env: Mapping[str, str], name: str) -> str | None:
    """Return a stripped value, or None when unset or blank."""
    value = env.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    """Parse a positive integer variable."""
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    """Parse a boolean flag (1/true/yes/on)."""
    raw = _get(env, name)
    if raw is None:
        return False
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def parse_headers(name: str, raw: str | None) -> dict[str, str]:
    """Parse a JSON object of header names to string values."""
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} must be a JSON object of header names to values: {exc.msg}") from None
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{name} must be a non-empty JSON object of header names to values")
    headers: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(val, str) or not val or not key.strip():
            raise ConfigError(f"{name}: header {key!r} must have a non-empty string value")
        headers[key.strip()] = val
    return headers


def _secret_headers(env: Mapping[str, str], headers: dict[str, str]) -> dict[str, str]:
    """CALLBACK_SECRET as ``Authorization: Bearer <secret>``: a platform can generate it (app.json)."""
    secret = _get(env, "CALLBACK_SECRET")
    if secret is None:
        return headers
    if headers:
        raise ConfigError("set CALLBACK_HEADERS or CALLBACK_SECRET, not both")
    if len(secret) < 16 or any(c.isspace() for c in secret):
        raise ConfigError("CALLBACK_SECRET must be at least 16 characters without spaces")
    return {"Authorization": f"Bearer {secret}"}


def _redis_url(env: Mapping[str, str]) -> str | None:
    """Validate REDIS_URL's scheme."""
    raw = _get(env, "REDIS_URL")
    if raw is None:
        return None
    if urlparse(raw).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
    return raw


def _path(env: Mapping[str, str]) -> str:
    """Validate CALLBACK_PATH."""
    raw = _get(env, "CALLBACK_PATH") or "/notify"
    if not raw.startswith("/") or " " in raw or "?" in raw:
        raise ConfigError(f"CALLBACK_PATH must be a path starting with '/', got {raw!r}")
    return raw


def _http_url(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    """Validate an http(s) URL variable."""
    raw = _get(env, name) or default
    if raw is None:
        return None
    parsed = urlparse(raw)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name} must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Parse a comma-separated list."""
    raw = _get(env, name)
    if raw is None:
        return ()
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _channel(env: Mapping[str, str]) -> str:
    """Validate DEVICEHOOKS_CHANNEL."""
    raw = (_get(env, "DEVICEHOOKS_CHANNEL") or "callback").lower()
    if raw not in ("callback", "websocket", "pull"):
        raise ConfigError(f"DEVICEHOOKS_CHANNEL must be callback, websocket or pull, got {raw!r}")
    return raw


def _log_level(env: Mapping[str, str]) -> str:
    """Validate LOG_LEVEL."""
    raw = (_get(env, "LOG_LEVEL") or "INFO").upper()
    if raw not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {raw!r}")
    return raw


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (/proc), or None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _runner_alive(pid: str | None, started: str | None) -> bool:
    """True when the process that wrote a runner env file still runs (same pid, same start time)."""
    if not pid or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = process_start(int(pid))
    return now is None or started is None or now == started


def format_runner_env(values: Mapping[str, str], pid: int) -> str:
    """The text of a runner env file: shell-quoted KEY=value lines (``set -a; . .devicehooks/env``)."""
    lines = [f"{key}={shlex.quote(values[key])}" for key in RUNNER_ENV_KEYS if values.get(key)]
    lines.append(f"{RUNNER_PID}={pid}")
    lines.append(f"{RUNNER_STARTED}={process_start(pid) or ''}")
    return "\n".join(lines) + "\n"


def parse_runner_env(text: str) -> dict[str, str]:
    """KEY=value lines (shell-quoted) to a dict; other lines are ignored."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if len(words) == 1 and "=" in words[0]:
            key, value = words[0].split("=", 1)
            values[key] = value
    return values


def runner_env(path: Path = RUNNER_ENV_FILE) -> dict[str, str]:
    """What a running ``devicehooks run`` wrote to ``path``; empty when the file is absent or stale."""
    try:
        values = parse_runner_env(path.read_text())
    except OSError:
        return {}
    if not _runner_alive(values.get(RUNNER_PID), values.get(RUNNER_STARTED)):
        return {}
    return {key: values[key] for key in RUNNER_ENV_KEYS if key in values}


def environment() -> dict[str, str]:
    """The process environment; a variable it lacks comes from a running runner's env file."""
    return {**runner_env(), **os.environ}


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting from ``env``, by default :func:`environment`."""
    env = environment() if env is None else env
    headers = _secret_headers(env, parse_headers("CALLBACK_HEADERS", _get(env, "CALLBACK_HEADERS")))
    previous = parse_headers("CALLBACK_HEADERS_PREVIOUS", _get(env, "CALLBACK_HEADERS_PREVIOUS"))
    insecure = _bool(env, INSECURE_OPT_OUT)
    if previous and not headers:
        raise ConfigError("CALLBACK_HEADERS_PREVIOUS is set but CALLBACK_HEADERS is not")
    settings = Settings(
        redis_url=_redis_url(env),
        redis_tls_verify=not _bool(env, "REDIS_TLS_INSECURE"),
        callback_path=_path(env),
        callback_url=_http_url(env, "CALLBACK_URL", None),
        callback_headers=headers,
        callback_headers_previous=previous,
        insecure_no_auth=insecure,
        dm_api_url=_http_url(env, "DM_API_URL", DEFAULT_DM_API_URL) or DEFAULT_DM_API_URL,
        dm_api_key=_get(env, "DM_API_KEY"),
        handlers=_list(env, "HANDLERS"),
        max_body_bytes=_int(env, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
        port=_int(env, "PORT", 8000),
        web_concurrency=_int(env, "WEB_CONCURRENCY", 2),
        queue_name=_get(env, "DEVICEHOOKS_QUEUE") or "devicehooks",
        object_model_files=_list(env, "LWM2M_OBJECTS"),
        allow_http_callback=_bool(env, "DEVICEHOOKS_ALLOW_HTTP_CALLBACK"),
        channel=_channel(env),
        presubscriptions_file=_get(env, "PRESUBSCRIPTIONS_FILE"),
        log_level=_log_level(env),
        callback_check_minutes=_int(env, "CALLBACK_CHECK_MINUTES", 10),
    )
    return settings


def require_auth(settings: Settings) -> None:
    """Refuse to serve the callback without CALLBACK_HEADERS unless explicitly opted out."""
    if not settings.callback_headers and not settings.insecure_no_auth:
        raise ConfigError(
            "CALLBACK_HEADERS is not set: set it to a JSON object of secret headers, e.g. "
            '\'{"Authorization": "Bearer <random secret>"}\', or CALLBACK_SECRET to a random secret '
            "(for local development only, "
            f"{INSECURE_OPT_OUT}=1 accepts unauthenticated PUTs)"
        )


def require_redis(settings: Settings) -> str:
    """Return REDIS_URL or fail naming it."""
    if not settings.redis_url:
        raise ConfigError("REDIS_URL is not set (devicehooks run starts an embedded Redis when it is unset)")
    return settings.redis_url
