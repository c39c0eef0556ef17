"""The Device Management Connect API client: one session, timeouts, retries, the error model.

Every request carries ``Authorization: Bearer <key>``; the key is never logged, never put in a URL and
never sent after a redirect (redirects are not followed). Each response's ``X-Request-ID`` is logged at
DEBUG. Retries use exponential backoff with jitter and honour ``Retry-After``:

- GET, PUT and DELETE are retried on 429, 5xx, connection errors and timeouts;
- POST (a device request may act on the device) only when it cannot have been acted on: 429, 503 and
  connections that could not be opened.
"""

from __future__ import annotations

import base64
import email.utils
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlparse

import requests

from app.backoff import jittered
from app.config import ConfigError, Settings
from app.errors import (
    DMApiError,
    DMBadRequest,
    DMConflict,
    DMNotFound,
    DMPreconditionFailed,
    DMRateLimited,
    DMUnauthorized,
    DMUnavailable,
)
from app.paths import normalize_path

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
POST_RETRY_STATUSES = frozenset({429, 503})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
MAX_RETRY_AFTER = 300.0
USER_AGENT = "devicehooks"

_DEFAULT_TYPES = {
    400: "bad_request",
    401: "invalid_auth",
    403: "access_denied",
    404: "not_found",
    405: "method_not_supported",
    409: "conflict",
    410: "gone",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


def error_class(status: int) -> type[DMApiError]:
    """The exception class for an HTTP error status."""
    if status in (401, 403):
        return DMUnauthorized
    if status in (404, 410):
        return DMNotFound
    if status == 409:
        return DMConflict
    if status == 412:
        return DMPreconditionFailed
    if status == 429:
        return DMRateLimited
    if status >= 500:
        return DMUnavailable
    if status == 400:
        return DMBadRequest
    return DMApiError


def error_from_response(response: requests.Response) -> DMApiError:
    """Parse Device Management's error model (or a plain-text error body) into a typed exception."""
    status = response.status_code
    request_id = response.headers.get("X-Request-ID")
    error_type = _DEFAULT_TYPES.get(status, "http_error")
    message = response.reason or f"HTTP {status}"
    fields: list[Any] = []
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error_type = str(body.get("type") or error_type)
        message = str(body.get("message") or message)
        raw_fields = body.get("fields")
        fields = raw_fields if isinstance(raw_fields, list) else []
        request_id = str(body.get("request_id") or request_id or "") or None
    elif response.text.strip():
        message = response.text.strip()[:500]
    if 300 <= status < 400:
        error_type = "redirect"
        message = f"redirected to {response.headers.get('Location')!r}; set DM_API_URL to the final URL"
    return error_class(status)(status, error_type, message, request_id, fields)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), capped; None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _not_sent(exc: requests.RequestException) -> bool:
    """True when the connection could not be opened, so the request cannot have been acted on."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return type(reason).__name__ in ("NewConnectionError", "NameResolutionError")


LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def refused_locally(exc: requests.RequestException, api_url: str) -> bool:
    """True when a local address refused the connection: nothing listens there, so retrying is futile.

    ``devicehooks get`` against a runner that had stopped retried for 13 s before it said anything.
    """
    host = urlparse(api_url).hostname or ""
    local = host in LOCAL_HOSTS or host.startswith("127.")
    return local and isinstance(exc, requests.ConnectionError) and "refused" in str(exc).lower()


def quote_segment(value: str) -> str:
    """Quote one path segment (a device id)."""
    return quote(value, safe="")


def resource_path(path: str) -> str:
    """A resource path with exactly one leading '/', each segment quoted."""
    return quote(normalize_path(path), safe="/")


def normalize_uri(uri: str) -> str:
    """A device-request URI with a leading '/' (query strings such as notification rules kept)."""
    return normalize_path(uri)


def to_bytes(payload: bytes | str) -> bytes:
    """Encode a payload given as text in UTF-8."""
    return payload if isinstance(payload, bytes) else payload.encode("utf-8")


def eq_filters(filters: Mapping[str, Any] | None) -> dict[str, str]:
    """Turn ``{"state": "registered"}`` into ``{"state__eq": "registered"}``; keys with ``__`` pass as is."""
    params: dict[str, str] = {}
    for key, value in (filters or {}).items():
        name = key if "__" in key else f"{key}__eq"
        if isinstance(value, bool):
            params[name] = "true" if value else "false"
        elif isinstance(value, list | tuple | set):
            params[name] = ",".join(str(item) for item in value)
        else:
            params[name] = str(value)
    return params


@dataclass(frozen=True)
class Page:
    """One page of a list response (``object: list``)."""

    data: list[dict[str, Any]]
    has_more: bool
    after: str | None = None
    next_after: str | None = None
    total_count: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Page:
        """Build a page from a list body; the next ``after`` is the continuation marker or the last id."""
        data = [item for item in body.get("data") or [] if isinstance(item, dict)]
        marker = body.get("continuation_marker")
        last_id = data[-1].get("id") if data else None
        next_after = marker or last_id
        total = body.get("total_count")
        return cls(
            data=data,
            has_more=bool(body.get("has_more")),
            after=body.get("after"),
            next_after=str(next_after) if next_after else None,
            total_count=int(total) if isinstance(total, int | str) and str(total).isdigit() else None,
            raw=dict(body),
        )


@dataclass(frozen=True)
class LegacyReply:
    """What ``/v2/endpoints/{device-id}/{path}`` answered: a value (200), an async id (202) or nothing."""

    status: int
    async_id: str | None
    body: bytes
    content_type: str | None


class DMClient:
    """A client for the Device Management Connect API (v2) and the device directory (v3)."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        session: requests.Session | None = None,
        timeout: float = 10,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key:
            raise ValueError("an API key is required")
        self.api_url = api_url.rstrip("/")
        self._api_key = api_key
        self.session = session or requests.Session()
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep

    def __repr__(self) -> str:
        """Show the API URL, never the key."""
        return f"DMClient(api_url={self.api_url!r})"

    @property
    def api_key(self) -> str:
        """The API key (for the websocket handshake only; never log it)."""
        return self._api_key

    def close(self) -> None:
        """Close the session's connections."""
        self.session.close()

    # --- transport -------------------------------------------------------------------------------

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        """Authorization and User-Agent plus the request's own headers."""
        headers = {"Authorization": f"Bearer {self._api_key}", "User-Agent": USER_AGENT}
        headers.update(extra or {})
        return headers

    def _delay(self, attempt: int, response: requests.Response | None) -> float:
        """Seconds before the next attempt: Retry-After when given, else exponential backoff + jitter."""
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
        if retry_after is not None:
            return retry_after + random.uniform(0, min(self.backoff, 1.0))  # noqa: S311 - jitter
        return jittered(attempt, self.backoff, self.max_backoff)

    def _send(
        self, method: str, url: str, timeout: float | tuple[float, float], **kwargs: Any
    ) -> requests.Response:
        """One HTTP exchange, logged at DEBUG with its X-Request-ID (never the key)."""
        started = time.monotonic()
        response = self.session.request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
        logger.debug(
            "DM %s %s -> %d request_id=%s %.0f ms",
            method,
            url[len(self.api_url) :],
            response.status_code,
            response.headers.get("X-Request-ID"),
            (time.monotonic() - started) * 1000,
        )
        return response

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | tuple[float, float] | None = None,
    ) -> requests.Response:
        """Send a request with retries; return a 1xx/2xx response or raise a typed DMApiError."""
        method = method.upper()
        url = self.api_url + path
        kwargs: dict[str, Any] = {"params": params, "headers": self._headers(headers)}
        if json_body is not None:
            kwargs["json"] = json_body
        elif data is not None:
            kwargs["data"] = data
        retry_statuses = RETRY_STATUSES if method in IDEMPOTENT else POST_RETRY_STATUSES
        for attempt in range(self.max_retries + 1):
            last = attempt >= self.max_retries
            try:
                response = self._send(method, url, timeout or self.timeout, **kwargs)
            except requests.RequestException as exc:
                retryable = isinstance(exc, requests.ConnectionError | requests.Timeout) and (
                    method in IDEMPOTENT or _not_sent(exc)
                )
                why = f"{type(exc).__name__} to {urlparse(self.api_url).netloc} (DM_API_URL)"
                if last or not retryable or refused_locally(exc, self.api_url):
                    raise DMUnavailable(None, "connection_error", f"{method} {path}: {why}", None) from None
                self._wait(attempt, None, method, path, why)
                continue
            if response.status_code in retry_statuses and not last:
                self._wait(attempt, response, method, path, str(response.status_code))
                continue
            if response.status_code >= 300:
                raise error_from_response(response)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(
        self, attempt: int, response: requests.Response | None, method: str, path: str, why: str
    ) -> None:
        """Log and sleep before a retry."""
        delay = self._delay(attempt, response)
        rid = response.headers.get("X-Request-ID") if response is not None else None
        logger.warning(
            "DM %s %s: %s (request_id=%s); retry %d/%d in %.2f s",
            method,
            path,
            why,
            rid,
            attempt + 1,
            self.max_retries,
            delay,
        )
        self.sleep(delay)

    def _json(self, response: requests.Response) -> Any:
        """The JSON body, or None when empty."""
        return response.json() if response.content.strip() else None

    # --- notification channel: callback, channel metadata, websocket, long poll -----------------

    def get_callback(self) -> dict[str, Any] | None:
        """The registered callback (``{"url", "headers"}``), or None when there is none."""
        try:
            return dict(self._json(self.request("GET", "/v2/notification/callback")) or {})
        except DMNotFound:
            return None

    def put_callback(self, url: str, headers: Mapping[str, str] | None = None) -> None:
        """Register the callback URL (Device Management verifies it with an empty PUT first)."""
        body: dict[str, Any] = {"url": url}
        if headers:
            body["headers"] = dict(headers)
        self.request("PUT", "/v2/notification/callback", json_body=body)

    def delete_callback(self) -> bool:
        """Delete the callback; False when there was none."""
        try:
            self.request("DELETE", "/v2/notification/callback")
        except DMNotFound:
            return False
        return True

    def get_channel(self) -> str | None:
        """The channel's delivery mechanism (CALLBACK, LONG_POLLING, WEB_SOCKET), or None."""
        try:
            body = self._json(self.request("GET", "/v2/notification/channel")) or {}
        except DMNotFound:
            return None
        mechanism = body.get("delivery_mechanism") if isinstance(body, dict) else None
        return str(mechanism) if mechanism else None

    def get_websocket(self) -> dict[str, Any] | None:
        """The websocket channel's status and queue size, or None when there is none."""
        try:
            return dict(self._json(self.request("GET", "/v2/notification/websocket")) or {})
        except DMNotFound:
            return None

    def put_websocket(self) -> dict[str, Any]:
        """Register (or keep) the websocket channel."""
        return dict(self._json(self.request("PUT", "/v2/notification/websocket")) or {})

    def delete_websocket(self) -> bool:
        """Delete the websocket channel; False when there was none."""
        try:
            self.request("DELETE", "/v2/notification/websocket")
        except DMNotFound:
            return False
        return True

    def delete_pull(self) -> bool:
        """Delete the (deprecated) long-poll channel; False when there was none."""
        try:
            self.request("DELETE", "/v2/notification/pull")
        except DMNotFound:
            return False
        return True

    def pull(self, wait: float = 60.0) -> bytes | None:
        """One long poll: the batch body (200), or None when nothing came (204)."""
        response = self.request("GET", "/v2/notification/pull", timeout=(self.timeout, wait))
        return response.content if response.status_code == 200 and response.content.strip() else None

    def websocket_url(self) -> str:
        """The ``ws(s)://…/v2/notification/websocket-connect`` URL."""
        if self.api_url.startswith("https://"):
            return "wss://" + self.api_url[len("https://") :] + "/v2/notification/websocket-connect"
        return "ws://" + self.api_url.split("://", 1)[-1] + "/v2/notification/websocket-connect"

    # --- endpoints and the device directory -----------------------------------------------------

    def get_resources(self, device_id: str) -> list[dict[str, Any]]:
        """The resources Device Management has cached for an endpoint."""
        body = self._json(self.request("GET", f"/v2/endpoints/{quote_segment(device_id)}"))
        return [item for item in body or [] if isinstance(item, dict)]

    def list_page(
        self,
        path: str,
        *,
        limit: int | None = None,
        after: str | None = None,
        order: str | None = None,
        include_total: bool = False,
        filters: Mapping[str, Any] | None = None,
    ) -> Page:
        """One page of a list endpoint (limit, after, order, include=total_count, ``__eq`` filters)."""
        params: dict[str, Any] = eq_filters(filters)
        if limit is not None:
            params["limit"] = limit
        if after:
            params["after"] = after
        if order:
            params["order"] = order.upper()
        if include_total:
            params["include"] = "total_count"
        return Page.from_body(self._json(self.request("GET", path, params=params)) or {})

    def iter_list(
        self,
        path: str,
        *,
        limit: int = 50,
        order: str | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a list endpoint, following ``has_more``/``after`` page by page."""
        after: str | None = None
        while True:
            page = self.list_page(path, limit=limit, after=after, order=order, filters=filters)
            yield from page.data
            if not page.has_more or not page.data or not page.next_after or page.next_after == after:
                return
            after = page.next_after

    def list_devices(
        self,
        *,
        limit: int = 50,
        after: str | None = None,
        order: str | None = None,
        include_total: bool = False,
        filters: Mapping[str, Any] | None = None,
    ) -> Page:
        """One page of the device directory (``GET /v3/devices``), e.g. filters={"state": "registered"}."""
        return self.list_page(
            "/v3/devices", limit=limit, after=after, order=order, include_total=include_total, filters=filters
        )

    def iter_devices(
        self, *, limit: int = 100, order: str | None = None, filters: Mapping[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every device of the directory matching ``filters`` (``__eq`` unless the key names an operator)."""
        return self.iter_list("/v3/devices", limit=limit, order=order, filters=filters)

    def list_endpoints(self, endpoint_type: str | None = None) -> list[dict[str, Any]]:
        """The registered endpoints (connector's ``getEndpoints``): ``{"name", "type", "status"}`` each."""
        filters: dict[str, Any] = {"state": "registered"}
        if endpoint_type:
            filters["endpoint_type"] = endpoint_type
        return [
            {"name": device.get("id"), "type": device.get("endpoint_type"), "status": "ACTIVE"}
            for device in self.iter_devices(filters=filters)
        ]

    def iter_pre_shared_keys(self, limit: int = 50) -> Iterator[dict[str, Any]]:
        """Every pre-shared key entry (``GET /v2/device-shared-keys``, paged by continuation marker)."""
        return self.iter_list("/v2/device-shared-keys", limit=limit)

    # --- device requests --------------------------------------------------------------------------

    def device_request(
        self,
        device_id: str,
        method: str,
        uri: str,
        async_id: str,
        payload: bytes | str | None = None,
        content_type: str | None = None,
        accept: str | None = None,
    ) -> None:
        """``POST /v2/device-requests/{device-id}?async-id=…``: the answer comes as an async-response."""
        body: dict[str, Any] = {"method": method.upper(), "uri": normalize_uri(uri)}
        if accept:
            body["accept"] = accept
        if content_type:
            body["content-type"] = content_type
        if payload is not None:
            body["payload-b64"] = base64.b64encode(to_bytes(payload)).decode("ascii")
        self.request(
            "POST",
            f"/v2/device-requests/{quote_segment(device_id)}",
            params={"async-id": async_id},
            json_body=body,
        )

    def resource_request(
        self,
        method: str,
        device_id: str,
        path: str,
        payload: bytes | str | None = None,
        content_type: str | None = None,
        cache_only: bool = False,
        no_resp: bool = False,
    ) -> LegacyReply:
        """The legacy ``/v2/endpoints/{device-id}/{path}`` call: Device Management picks the async id."""
        params: dict[str, str] = {}
        if cache_only:
            params["cacheOnly"] = "true"
        if no_resp:
            params["noResp"] = "true"
        headers = {"Content-Type": content_type} if content_type else None
        response = self.request(
            method,
            f"/v2/endpoints/{quote_segment(device_id)}{resource_path(path)}",
            params=params or None,
            data=to_bytes(payload) if payload is not None else None,
            headers=headers,
        )
        async_id = None
        if response.status_code == 202:
            body = self._json(response)
            async_id = str(body.get("async-response-id")) if isinstance(body, dict) else None
        return LegacyReply(
            response.status_code, async_id, response.content, response.headers.get("Content-Type")
        )

    # --- subscriptions ----------------------------------------------------------------------------

    def _subscription_path(self, device_id: str, path: str) -> str:
        """``/v2/subscriptions/{device-id}/{path}``."""
        return f"/v2/subscriptions/{quote_segment(device_id)}{resource_path(path)}"

    def subscribe(self, device_id: str, path: str) -> str | None:
        """Subscribe to a resource; returns the async id when Device Management answered 202."""
        response = self.request("PUT", self._subscription_path(device_id, path))
        if response.status_code == 202:
            body = self._json(response)
            return str(body.get("async-response-id")) if isinstance(body, dict) else None
        return None

    def is_subscribed(self, device_id: str, path: str) -> bool:
        """Whether a resource is subscribed."""
        try:
            self.request("GET", self._subscription_path(device_id, path))
        except DMNotFound:
            return False
        return True

    def unsubscribe(self, device_id: str, path: str) -> None:
        """Remove a resource subscription."""
        self.request("DELETE", self._subscription_path(device_id, path))

    def endpoint_subscriptions(self, device_id: str) -> list[str]:
        """The subscribed resource paths of an endpoint (empty when none)."""
        try:
            response = self.request("GET", f"/v2/subscriptions/{quote_segment(device_id)}")
        except DMNotFound:
            return []
        return [line.strip() for line in response.text.splitlines() if line.strip()]

    def delete_endpoint_subscriptions(self, device_id: str) -> None:
        """Remove every subscription of an endpoint."""
        self.request("DELETE", f"/v2/subscriptions/{quote_segment(device_id)}")

    def get_presubscriptions(self) -> list[dict[str, Any]]:
        """The pre-subscription rules."""
        body = self._json(self.request("GET", "/v2/subscriptions"))
        return [item for item in body or [] if isinstance(item, dict)]

    def put_presubscriptions(self, rules: Sequence[Mapping[str, Any]]) -> None:
        """Replace the pre-subscription rules (an empty list removes them)."""
        self.request("PUT", "/v2/subscriptions", json_body=[dict(rule) for rule in rules])

    def delete_presubscriptions(self) -> None:
        """``DELETE /v2/subscriptions``: remove the pre-subscriptions (connector's deleteAllSubscriptions)."""
        self.request("DELETE", "/v2/subscriptions")

    delete_all_subscriptions = delete_presubscriptions


def client_from_settings(settings: Settings, **kwargs: Any) -> DMClient:
    """A client for ``settings.dm_api_url`` with ``settings.dm_api_key``; ConfigError names DM_API_KEY."""
    if not settings.dm_api_key:
        raise ConfigError("DM_API_KEY is not set: set it to a Device Management API key (ak_…)")
    return DMClient(settings.dm_api_url, settings.dm_api_key, **kwargs)
