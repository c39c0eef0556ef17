"""Settings: the only module that reads the environment.

Every value is parsed and checked once, at startup; a missing or invalid value raises
:class:`ConfigError` with a message that names the variable.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import string
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

DEFAULT_DM_API_URL = "https://api.us-east-1.mbedcloud.com"
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_WEB_THREADS = 32
DEFAULT_CLIENT_CERT_CN = "notifications.mbedcloud.com"
INSECURE_OPT_OUT = "DEVICEHOOKS_INSECURE_NO_AUTH"
# The LwM2M resource types (workers.decoding.model.RESOURCE_TYPES; a unit test keeps the two equal).
LWM2M_TYPES = frozenset(
    {"string", "integer", "unsigned", "float", "boolean", "opaque", "time", "objlnk", "corelnk", "none"}
)
DEFAULT_THINGSBOARD_BACKLOG_MAX = 100_000
DEFAULT_THINGSBOARD_MAX_PAYLOAD = 65_536  # ThingsBoard's NETTY_MAX_PAYLOAD_SIZE default; bigger -> disconnect
THINGSBOARD_TEMPLATE_FIELDS = ("ep", "ept", "original_ep")

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
    # The web tier (app/gunicorn_config.py, app/client_cert.py): threads, proxies, TLS, client certificate.
    web_threads: int = DEFAULT_WEB_THREADS
    forwarded_allow_ips: tuple[str, ...] = ()
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    client_cert: bool = False
    client_cert_cn: str = DEFAULT_CLIENT_CERT_CN
    client_cert_header: str | None = None
    client_cert_ca_file: str | None = None
    queue_name: str = "devicehooks"
    object_model_files: tuple[str, ...] = ()
    resource_types: dict[int, str] = field(
        default_factory=dict
    )  # LWM2M_RESOURCE_TYPES: typing by resource id
    tlv_strict: bool = (
        False  # LWM2M_TLV_STRICT: TLV as the specification only, no mbed Cloud Client text values
    )
    allow_http_callback: bool = False
    channel: str = "callback"
    presubscriptions_file: str | None = None
    log_level: str = "INFO"
    callback_check_minutes: int = 10  # app.dm.registration: how often the callback registration is checked
    # ThingsBoard bridge (app.thingsboard): on when thingsboard_host is set.
    thingsboard_host: str | None = None
    thingsboard_port: int = 1883
    thingsboard_token: str | None = None
    thingsboard_tls: bool = False
    thingsboard_ca_file: str | None = None
    thingsboard_device_name: str = "{ep}"
    thingsboard_device_type: str = "{ept}"
    thingsboard_keys: str = "paths"
    thingsboard_rpc_timeout: float = 9.0
    thingsboard_backlog_max: int = DEFAULT_THINGSBOARD_BACKLOG_MAX
    thingsboard_max_payload: int = DEFAULT_THINGSBOARD_MAX_PAYLOAD
    # Stores in Redis (app.stores): every one bounded by count, by bytes and by time.
    store_ttl_days: int = 14  # rejections, quarantined bodies and dead letters expire this long after written
    rejections_keep: int = 10_000  # rejection records kept, newest first
    rejection_item_bytes: int = 2 * 1024  # larger items: a truncated copy + sha256
    quarantine_keep: int = 100  # quarantined (unparseable) bodies kept
    quarantine_body_bytes: int = 256 * 1024  # larger bodies: a truncated copy + sha256
    dead_letters_keep: int = 10_000  # dead letters kept; the oldest go first
    dead_letters_max_bytes: int = 64 * 1024 * 1024  # all dead letters' events together; the oldest go first
    failed_batches_keep: int = 1_000  # batch jobs that failed for good kept (with their bodies); oldest go
    failed_batches_max_bytes: int = 64 * 1024 * 1024  # their bodies together; the oldest go first
    # Device state (workers.handlers.state, app.state), the management API and the status page (app.api).
    state: bool = True
    state_max_devices: int = 100_000
    state_max_resources: int = 500
    state_history_max: int = 1000
    state_history_seconds: int = 7 * 24 * 3600
    state_ttl_seconds: int = 30 * 24 * 3600
    management_api_keys: tuple[str, ...] = ()
    session_secret: str | None = None
    metrics_dir: str | None = None
    test_kill_at: tuple[str, ...] = ()  # workers.faults: named points where a worker SIGKILLs itself (tests)

    def __repr__(self) -> str:
        """Show the settings without any secret."""
        return (
            f"Settings(redis_url={redact_url(self.redis_url)!r}, callback_path={self.callback_path!r}, "
            f"callback_url={self.callback_url!r}, callback_headers={sorted(self.callback_headers)!r}, "
            f"dm_api_url={self.dm_api_url!r}, dm_api_key={'set' if self.dm_api_key else 'unset'}, "
            f"handlers={self.handlers!r}, queue_name={self.queue_name!r}, "
            f"thingsboard_host={self.thingsboard_host!r}, "
            f"thingsboard_token={'set' if self.thingsboard_token else 'unset'}, "
            f"management_api_keys={len(self.management_api_keys)})"
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
    seen: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(val, str) or not val or not key.strip():
            raise ConfigError(f"{name}: header {key!r} must have a non-empty string value")
        lowered = key.strip().lower()
        if lowered in seen:
            # HTTP header names are case-insensitive: a request can carry only one value for both.
            raise ConfigError(
                f"{name}: headers {seen[lowered]!r} and {key.strip()!r} differ only in case; "
                "header names are case-insensitive, so no request could match both"
            )
        seen[lowered] = key.strip()
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


def _resource_types(env: Mapping[str, str]) -> dict[int, str]:
    """Parse LWM2M_RESOURCE_TYPES: comma-separated resource-id:type pairs, e.g. '5700:float,27001:integer'."""
    out: dict[int, str] = {}
    for entry in _list(env, "LWM2M_RESOURCE_TYPES"):
        rid, sep, rtype = entry.partition(":")
        rid, rtype = rid.strip(), rtype.strip().lower()
        if not sep or not (rid.isascii() and rid.isdigit()) or int(rid) > 65535:
            raise ConfigError(
                f"LWM2M_RESOURCE_TYPES entries must be resource-id:type (id 0..65535), e.g. 5700:float; "
                f"got {entry!r}"
            )
        if rtype not in LWM2M_TYPES:
            names = ", ".join(sorted(LWM2M_TYPES))
            raise ConfigError(f"LWM2M_RESOURCE_TYPES: type {rtype!r} of resource {rid} is not one of {names}")
        out[int(rid)] = rtype
    return out


def _on_off(env: Mapping[str, str], name: str) -> bool:
    """Parse an on/off switch that defaults to on."""
    raw = _get(env, name)
    return True if raw is None else _bool(env, name)


def _keys(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Parse comma-separated secret keys; each must be at least 16 characters."""
    keys = _list(env, name)
    for index, key in enumerate(keys):
        if len(key) < 16:
            raise ConfigError(f"{name}: key number {index + 1} is shorter than 16 characters")
    return keys


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


def _template(env: Mapping[str, str], name: str, default: str) -> str:
    """Validate a device name/type template: only {ep}, {ept} and {original_ep} placeholders."""
    raw = _get(env, name) or default
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(raw) if f is not None}
    except ValueError as exc:
        raise ConfigError(f"{name} is not a valid template ({exc}): {raw!r}") from None
    unknown = sorted(fields - set(THINGSBOARD_TEMPLATE_FIELDS))
    if unknown:
        allowed = ", ".join("{" + f + "}" for f in THINGSBOARD_TEMPLATE_FIELDS)
        raise ConfigError(f"{name} may only use {allowed}, got {raw!r}")
    return raw


def _thingsboard(env: Mapping[str, str]) -> dict[str, Any]:
    """The THINGSBOARD_* settings; a host without a token (or a bad value) fails naming the variable."""
    host = _get(env, "THINGSBOARD_HOST")
    tls = _bool(env, "THINGSBOARD_TLS")
    ca_file = _file(env, "THINGSBOARD_CA_FILE")
    token = _get(env, "THINGSBOARD_TOKEN")
    if host is not None and token is None:
        raise ConfigError("THINGSBOARD_TOKEN is not set: set it to the gateway device's access token")
    keys = (_get(env, "THINGSBOARD_KEYS") or "paths").lower()
    if keys not in ("paths", "names"):
        raise ConfigError(f"THINGSBOARD_KEYS must be paths or names, got {keys!r}")
    port = _int(env, "THINGSBOARD_PORT", 8883 if tls else 1883)
    if port > 65535:
        raise ConfigError(f"THINGSBOARD_PORT must be at most 65535, got {port}")
    return {
        "thingsboard_host": host,
        "thingsboard_port": port,
        "thingsboard_token": token,
        "thingsboard_tls": tls,
        "thingsboard_ca_file": ca_file,
        "thingsboard_device_name": _template(env, "THINGSBOARD_DEVICE_NAME", "{ep}"),
        "thingsboard_device_type": _template(env, "THINGSBOARD_DEVICE_TYPE", "{ept}"),
        "thingsboard_keys": keys,
        "thingsboard_rpc_timeout": _seconds(env, "THINGSBOARD_RPC_TIMEOUT", 9.0),
        "thingsboard_backlog_max": _int(env, "THINGSBOARD_BACKLOG_MAX", DEFAULT_THINGSBOARD_BACKLOG_MAX),
        "thingsboard_max_payload": _int(
            env, "THINGSBOARD_MAX_PAYLOAD", DEFAULT_THINGSBOARD_MAX_PAYLOAD, minimum=1024
        ),
    }


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """Parse a positive number of seconds."""
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


def _proxies(env: Mapping[str, str]) -> tuple[str, ...]:
    """Validate FORWARDED_ALLOW_IPS: addresses or CIDR networks, or ``*``; default none."""
    entries = _list(env, "FORWARDED_ALLOW_IPS")
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry)
        except ValueError:
            raise ConfigError(
                f"FORWARDED_ALLOW_IPS must list IP addresses or networks (or *), got {entry!r}"
            ) from None
    return entries


def _file(env: Mapping[str, str], name: str) -> str | None:
    """Validate a variable naming a readable file."""
    raw = _get(env, name)
    if raw is not None and not os.access(raw, os.R_OK):
        raise ConfigError(f"{name} must name a readable file, got {raw!r}")
    return raw


def _client_cert_mode(env: Mapping[str, str]) -> bool:
    """Validate CALLBACK_CLIENT_CERT: ``off`` (default) or ``require``."""
    raw = (_get(env, "CALLBACK_CLIENT_CERT") or "off").lower()
    if raw not in ("off", "require"):
        raise ConfigError(f"CALLBACK_CLIENT_CERT must be off or require, got {raw!r}")
    return raw == "require"


def _web_tier(env: Mapping[str, str]) -> dict[str, Any]:
    """The web tier's settings, checked together (TLS files in pairs, a source for the certificate)."""
    web: dict[str, Any] = {
        "web_threads": _int(env, "WEB_THREADS", DEFAULT_WEB_THREADS),
        "forwarded_allow_ips": _proxies(env),
        "tls_cert_file": _file(env, "WEB_TLS_CERT"),
        "tls_key_file": _file(env, "WEB_TLS_KEY"),
        "client_cert": _client_cert_mode(env),
        "client_cert_cn": _get(env, "CALLBACK_CLIENT_CERT_CN") or DEFAULT_CLIENT_CERT_CN,
        "client_cert_header": _get(env, "CALLBACK_CLIENT_CERT_HEADER"),
        "client_cert_ca_file": _file(env, "CALLBACK_CLIENT_CA"),
    }
    header = web["client_cert_header"]
    if header and not re.fullmatch(r"[A-Za-z0-9-]+", header):
        # gunicorn drops header names with '_' (they would be ambiguous in the WSGI environ).
        raise ConfigError(f"CALLBACK_CLIENT_CERT_HEADER must be letters, digits and '-', got {header!r}")
    if bool(web["tls_cert_file"]) != bool(web["tls_key_file"]):
        raise ConfigError("WEB_TLS_CERT and WEB_TLS_KEY must be set together")
    if not web["client_cert"]:
        return web
    if web["tls_cert_file"] and not web["client_cert_ca_file"]:
        raise ConfigError(
            "CALLBACK_CLIENT_CERT=require with WEB_TLS_CERT needs CALLBACK_CLIENT_CA "
            "(the CA bundle that signs Device Management's client certificate)"
        )
    if not web["tls_cert_file"] and not web["client_cert_header"]:
        raise ConfigError(
            "CALLBACK_CLIENT_CERT=require needs WEB_TLS_CERT/WEB_TLS_KEY (gunicorn terminates TLS) "
            "or CALLBACK_CLIENT_CERT_HEADER (a proxy forwards the verified certificate)"
        )
    if web["client_cert_header"] and not web["tls_cert_file"] and not web["forwarded_allow_ips"]:
        raise ConfigError(
            "CALLBACK_CLIENT_CERT_HEADER is only trusted from FORWARDED_ALLOW_IPS, which is empty: "
            "set it to the proxy's address"
        )
    return web


# Where DEVICEHOOKS_TEST_KILL_AT may make a worker SIGKILL itself: the async hand-off points (tests only).
KILL_POINTS = ("batch-after-resolve", "async-before-call", "async-after-call")


def _kill_points(env: Mapping[str, str]) -> tuple[str, ...]:
    """DEVICEHOOKS_TEST_KILL_AT: comma-separated names from KILL_POINTS."""
    points = _list(env, "DEVICEHOOKS_TEST_KILL_AT")
    unknown = [point for point in points if point not in KILL_POINTS]
    if unknown:
        known = ", ".join(KILL_POINTS)
        raise ConfigError(f"DEVICEHOOKS_TEST_KILL_AT: unknown point(s) {unknown}; known: {known}")
    return points


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
        resource_types=_resource_types(env),
        tlv_strict=_bool(env, "LWM2M_TLV_STRICT"),
        allow_http_callback=_bool(env, "DEVICEHOOKS_ALLOW_HTTP_CALLBACK"),
        channel=_channel(env),
        presubscriptions_file=_get(env, "PRESUBSCRIPTIONS_FILE"),
        log_level=_log_level(env),
        callback_check_minutes=_int(env, "CALLBACK_CHECK_MINUTES", 10),
        **_thingsboard(env),
        **_web_tier(env),
        store_ttl_days=_int(env, "STORE_TTL_DAYS", 14),
        rejections_keep=_int(env, "REJECTIONS_KEEP", 10_000),
        rejection_item_bytes=_int(env, "REJECTION_ITEM_BYTES", 2 * 1024, minimum=256),
        quarantine_keep=_int(env, "QUARANTINE_KEEP", 100),
        quarantine_body_bytes=_int(env, "QUARANTINE_BODY_BYTES", 256 * 1024, minimum=256),
        dead_letters_keep=_int(env, "DEAD_LETTERS_KEEP", 10_000),
        dead_letters_max_bytes=_int(env, "DEAD_LETTERS_MAX_BYTES", 64 * 1024 * 1024, minimum=64 * 1024),
        failed_batches_keep=_int(env, "FAILED_BATCHES_KEEP", 1_000),
        failed_batches_max_bytes=_int(env, "FAILED_BATCHES_MAX_BYTES", 64 * 1024 * 1024),
        state=_on_off(env, "STATE"),
        state_max_devices=_int(env, "STATE_MAX_DEVICES", 100_000),
        state_max_resources=_int(env, "STATE_MAX_RESOURCES", 500),
        state_history_max=_int(env, "STATE_HISTORY_MAX", 1000),
        state_history_seconds=_int(env, "STATE_HISTORY_SECONDS", 7 * 24 * 3600),
        state_ttl_seconds=_int(env, "STATE_TTL_SECONDS", 30 * 24 * 3600),
        management_api_keys=_keys(env, "MANAGEMENT_API_KEYS"),
        session_secret=_get(env, "SESSION_SECRET"),
        metrics_dir=_get(env, "PROMETHEUS_MULTIPROC_DIR"),
        test_kill_at=_kill_points(env),
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
