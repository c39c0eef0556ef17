"""Callback registration: on startup, then a periodic check that re-registers a missing or changed callback.

Device Management tests a callback when it is registered (an empty PUT carrying the headers, which the
callback route answers 204), removes it after 24 h of failed deliveries, and keeps one channel per API
key: a websocket or long-poll channel must be deleted first. So, in the gunicorn master once it listens:

1. wait until the local callback route answers the empty PUT (the web workers are up);
2. under a Redis lock (one process at a time): delete a websocket/pull channel, ``PUT`` the callback,
   apply the pre-subscriptions of ``PRESUBSCRIPTIONS_FILE``; retry with backoff until it succeeds;
3. every ``CALLBACK_CHECK_MINUTES`` (one process per interval across all dynos): re-register when the
   callback is gone or differs from ``CALLBACK_URL``/``CALLBACK_HEADERS``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests
from redis import Redis
from redis.exceptions import LockError, RedisError

from app.backoff import jittered
from app.config import ConfigError, Settings
from app.dm.client import DMClient, client_from_settings
from app.errors import DMApiError, DMUnauthorized
from app.redis_conn import text

logger = logging.getLogger(__name__)

MAX_CALLBACK_CHARS = 400
LOCK_NAME = "devicehooks:dm:registration:lock"
CHECKED_KEY = "devicehooks:dm:registration:checked"
STATUS_KEY = "devicehooks:dm:registration:status"  # the last check's outcome, url and time (status page)
PRESUBSCRIPTION_KEYS = frozenset({"endpoint-name", "endpoint-type", "resource-path"})

REGISTERED = "registered"
UNCHANGED = "unchanged"
BUSY = "busy"


def record_check(redis: Redis, outcome: str, url: str) -> None:
    """Keep the outcome of the last registration check, for the status page."""
    redis.hset(STATUS_KEY, mapping={"outcome": outcome, "url": url, "checked_at": repr(time.time())})


def last_check(redis: Redis) -> dict[str, str]:
    """The last registration check (outcome, url, checked_at), empty when none was recorded."""
    return {text(k): text(v) for k, v in redis.hgetall(STATUS_KEY).items()}


def check_callback(settings: Settings) -> tuple[str, dict[str, str]]:
    """The URL and headers to register; ConfigError (naming the variable) when they cannot be."""
    url = settings.callback_url
    if not url:
        raise ConfigError("CALLBACK_URL is not set: set it to the public https URL of the callback route")
    if urlparse(url).scheme != "https" and not settings.allow_http_callback:
        raise ConfigError(
            f"CALLBACK_URL must be an https:// URL, got {url!r} "
            "(DEVICEHOOKS_ALLOW_HTTP_CALLBACK=1 allows http for local tests only)"
        )
    headers = dict(settings.callback_headers)
    length = len(url) + sum(len(key) + len(value) for key, value in headers.items())
    if length > MAX_CALLBACK_CHARS:
        raise ConfigError(
            f"CALLBACK_URL plus CALLBACK_HEADERS are {length} characters; "
            f"Device Management allows at most {MAX_CALLBACK_CHARS}"
        )
    return url, headers


def validate_presubscriptions(value: Any, name: str = "PRESUBSCRIPTIONS_FILE") -> list[dict[str, Any]]:
    """Check a PresubscriptionArray (endpoint-name, endpoint-type, resource-path); ConfigError names it."""
    if not isinstance(value, list):
        raise ConfigError(f"{name} must hold a JSON array of pre-subscription objects")
    rules: list[dict[str, Any]] = []
    for index, rule in enumerate(value):
        where = f"{name}: item {index}"
        if not isinstance(rule, dict):
            raise ConfigError(f"{where} must be an object")
        unknown = set(rule) - PRESUBSCRIPTION_KEYS
        if unknown:
            allowed = sorted(PRESUBSCRIPTION_KEYS)
            raise ConfigError(f"{where} has unknown keys {sorted(unknown)}; allowed: {allowed}")
        for key in ("endpoint-name", "endpoint-type"):
            if key in rule and (not isinstance(rule[key], str) or not rule[key]):
                raise ConfigError(f"{where}: {key} must be a non-empty string")
        paths = rule.get("resource-path")
        if paths is not None and (
            not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths)
        ):
            raise ConfigError(f"{where}: resource-path must be a non-empty array of strings")
        rules.append(rule)
    return rules


def load_presubscriptions(path: str | None) -> list[dict[str, Any]] | None:
    """The pre-subscriptions of PRESUBSCRIPTIONS_FILE, or None when it is not set."""
    if not path:
        return None
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"PRESUBSCRIPTIONS_FILE {path!r} cannot be read: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"PRESUBSCRIPTIONS_FILE {path!r} is not valid JSON: {exc}") from None
    return validate_presubscriptions(value)


def _canonical(rules: Sequence[Mapping[str, Any]]) -> list[str]:
    """Rules in a comparable form (order of rules and keys ignored)."""
    return sorted(json.dumps(rule, sort_keys=True) for rule in rules)


def callback_matches(current: Mapping[str, Any] | None, url: str, headers: Mapping[str, str]) -> bool:
    """Whether the registered callback is ours (header names compared case-insensitively)."""
    if not current or current.get("url") != url:
        return False
    registered = current.get("headers")
    if not isinstance(registered, dict):
        return True  # Device Management did not show the headers: the URL is what we can check
    return {k.lower(): v for k, v in registered.items()} == {k.lower(): v for k, v in headers.items()}


def clear_other_channel(client: DMClient) -> str | None:
    """Delete a websocket or long-poll channel when the channel metadata shows one; return its kind."""
    mechanism = client.get_channel()
    if mechanism == "WEB_SOCKET":
        logger.info("deleting the websocket channel to register the callback")
        client.delete_websocket()
    elif mechanism == "LONG_POLLING":
        logger.info("deleting the long-poll channel to register the callback")
        client.delete_pull()
    return mechanism


def wait_until_serving(
    url: str, headers: Mapping[str, str], timeout: float, stop: threading.Event | None = None
) -> bool:
    """Poll the local callback route with the empty verification PUT until it answers 2xx."""
    deadline = time.monotonic() + timeout
    stop = stop or threading.Event()
    last_status = None
    while time.monotonic() < deadline and not stop.is_set():
        try:
            response = requests.put(url, data=b"", headers=dict(headers), timeout=2)
            if response.status_code in (200, 204):
                return True
            if response.status_code != last_status:
                logger.warning("local callback %s answered %d to the empty PUT", url, response.status_code)
            last_status = response.status_code
        except requests.RequestException:
            pass
        stop.wait(0.2)
    return False


class Registrar:
    """Registers the callback and keeps it registered."""

    def __init__(
        self,
        client: DMClient,
        redis: Redis,
        url: str,
        headers: Mapping[str, str],
        presubscriptions: Sequence[Mapping[str, Any]] | None = None,
        *,
        check_interval: float = 600.0,
        lock_timeout: float = 120.0,
        lock_wait: float = 5.0,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
    ) -> None:
        self.client = client
        self.redis = redis
        self.url = url
        self.headers = dict(headers)
        self.presubscriptions = list(presubscriptions) if presubscriptions is not None else None
        self.check_interval = check_interval
        self.lock_timeout = lock_timeout
        self.lock_wait = lock_wait
        self.backoff = backoff
        self.max_backoff = max_backoff

    def register(self) -> None:
        """Delete another channel, register the callback and apply the pre-subscriptions (no lock)."""
        clear_other_channel(self.client)
        self.client.put_callback(self.url, self.headers)
        logger.info("registered the callback %s", self.url)
        self.apply_presubscriptions()

    def apply_presubscriptions(self) -> bool:
        """Put the configured pre-subscriptions when they differ from Device Management's; True if put."""
        if self.presubscriptions is None:
            return False
        if _canonical(self.client.get_presubscriptions()) == _canonical(self.presubscriptions):
            return False
        self.client.put_presubscriptions(self.presubscriptions)
        logger.info("applied %d pre-subscription rules", len(self.presubscriptions))
        return True

    def ensure(self, force: bool = False) -> str:
        """Under the lock: register when forced or when the callback is gone or differs."""
        lock = self.redis.lock(LOCK_NAME, timeout=self.lock_timeout, blocking_timeout=self.lock_wait)
        if not lock.acquire():
            return BUSY
        try:
            if not force and callback_matches(self.client.get_callback(), self.url, self.headers):
                self.apply_presubscriptions()
                return UNCHANGED
            if not force:
                logger.warning("the callback is gone or differs from CALLBACK_URL; re-registering")
            self.register()
            return REGISTERED
        finally:
            try:
                lock.release()
            except LockError:
                logger.warning("the registration lock expired before it was released")

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter, capped."""
        return jittered(attempt, self.backoff, self.max_backoff)

    def ensure_until_done(self, stop: threading.Event, force: bool = False) -> str | None:
        """Retry :meth:`ensure` with backoff until it registers or confirms; None when stopped."""
        attempt = 0
        while not stop.is_set():
            try:
                outcome = self.ensure(force=force)
                if outcome != BUSY:
                    record_check(self.redis, outcome, self.url)
                    return outcome
                logger.info("another process holds the registration lock; retrying")
            except DMUnauthorized as exc:
                logger.error("callback registration refused: %s (check DM_API_KEY)", exc)
            except DMApiError as exc:
                logger.warning("callback registration failed: %s", exc)
            except RedisError as exc:
                logger.warning("callback registration: Redis unavailable (%s)", type(exc).__name__)
            except Exception:
                logger.exception("callback registration: unexpected error")
            stop.wait(self._delay(attempt))
            attempt += 1
        return None

    def claim_check(self) -> bool:
        """Whether this process does this interval's check (one process per interval across dynos)."""
        ttl_ms = max(1, int(self.check_interval * 1000 * 0.9))
        return bool(self.redis.set(CHECKED_KEY, "1", nx=True, px=ttl_ms))

    def run(self, stop: threading.Event, local_url: str | None = None, ready_timeout: float = 60.0) -> None:
        """Register on startup, then check every ``check_interval`` seconds until ``stop`` is set."""
        if local_url and not wait_until_serving(local_url, self.headers, ready_timeout, stop):
            logger.warning("the local callback %s did not answer; registering anyway", local_url)
        self.ensure_until_done(stop, force=True)
        while not stop.wait(self.check_interval):
            try:
                if not self.claim_check():
                    continue
            except RedisError as exc:
                logger.warning("callback check skipped: Redis unavailable (%s)", type(exc).__name__)
                continue
            self.ensure_until_done(stop)


def registrar_from_settings(settings: Settings, redis: Redis, **kwargs: Any) -> Registrar:
    """A Registrar for CALLBACK_URL, CALLBACK_HEADERS and PRESUBSCRIPTIONS_FILE (ConfigError names them)."""
    url, headers = check_callback(settings)
    client = client_from_settings(settings)
    presubscriptions = load_presubscriptions(settings.presubscriptions_file)
    kwargs.setdefault("check_interval", settings.callback_check_minutes * 60.0)
    return Registrar(client, redis, url, headers, presubscriptions, **kwargs)


def skip_reason(settings: Settings) -> str | None:
    """Why registration on startup does not apply, or None when it does."""
    if settings.channel != "callback":
        return f"DEVICEHOOKS_CHANNEL is {settings.channel!r} (run `devicehooks channel` instead)"
    if not settings.dm_api_key:
        return "DM_API_KEY is not set"
    if not settings.callback_url:
        return "CALLBACK_URL is not set"
    return None


def start_background(
    settings: Settings, redis: Redis | None = None, local_url: str | None = None
) -> tuple[threading.Thread, threading.Event] | None:
    """Start the registration thread (daemon); None, with the reason logged, when it does not apply."""
    reason = skip_reason(settings)
    if reason:
        logger.info("callback registration skipped: %s", reason)
        return None
    try:
        if redis is None:
            from app.config import require_redis
            from app.redis_conn import connect

            redis = connect(require_redis(settings), tls_verify=settings.redis_tls_verify)
        registrar = registrar_from_settings(settings, redis)
    except ConfigError as exc:
        logger.error("callback registration disabled: %s", exc)
        return None
    stop = threading.Event()
    thread = threading.Thread(
        target=registrar.run, args=(stop, local_url), name="dm-callback-registration", daemon=True
    )
    thread.start()
    return thread, stop
