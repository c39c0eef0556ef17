"""The callback route: verify -> check -> enqueue -> 204, served ahead of Flask.

Device Management sends the next batch only after the ack, so the ack's CPU is the channel's
throughput. The callback PUT is therefore answered at the WSGI level, in front of the Flask app
(``CallbackRoute`` wraps ``app.wsgi_app``): Flask's request context, routing, hooks and response
object cost ~70 µs of CPU a PUT here, more than the Redis write itself (README, "Performance").
Other methods on the callback path get a 405 here, every other path goes on to Flask, and the
answers are the same as Flask's: the error model, ``X-Request-ID`` on every response, the metrics.

What the request path parses was decided by measurement (README, "Performance"):
``json.loads`` of a 10,000-item batch (1.3 MB) costs ~8 ms here, of a 1-item batch ~5 µs.
Bodies up to ``STRICT_JSON_BYTES`` are parsed in full, strictly (``app.strictjson``: no NaN or
Infinity, no lone surrogate, at most 1,024 levels deep); larger ones get a structural check
(valid UTF-8, an object's braces) and the worker, with the same parser, quarantines one that fails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from http import HTTPStatus
from typing import Any

from flask import Flask
from redis.exceptions import RedisError

from app import strictjson
from app.batches import BatchQueue
from app.client_cert import ClientCertCheck
from app.errors import BadRequest, DevicehooksError, PayloadTooLarge, ServiceUnavailable, Unauthorized
from app.request_id import HEADER, request_id_from
from app.verify import HeaderVerifier, environ_headers, environ_key
from app.web import error_parts

logger = logging.getLogger(__name__)

EXTENSION = "devicehooks.callback"
STRICT_JSON_BYTES = 256 * 1024
_WHITESPACE = b" \t\r\n"
_REQUEST_ID_KEY = environ_key(HEADER)
# An observer gets each callback PUT's status and its ack time in seconds (app.metrics counts them).
Observer = Callable[[int, float], None]


def check_json_object(body: bytes) -> None:
    """Raise BadRequest unless the body is (cheaply checked to be) a JSON object."""
    stripped = body.strip(_WHITESPACE)
    if not stripped.startswith(b"{") or not stripped.endswith(b"}"):
        raise BadRequest("the body must be a JSON object")
    if len(body) <= STRICT_JSON_BYTES:
        try:
            strictjson.loads(body)
        except ValueError as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None
        return
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None


def content_length(environ: Mapping[str, Any]) -> int | None:
    """The declared body length, None when the body is chunked (or no length was sent)."""
    raw = environ.get("CONTENT_LENGTH")
    if not raw:
        return None
    try:
        length = int(raw)
    except ValueError:
        raise BadRequest("Content-Length is not a number") from None
    if length < 0:
        raise BadRequest("Content-Length is negative")
    return length


class CallbackView:
    """Receives Device Management's PUTs: a function of the WSGI environ that raises the error to answer."""

    def __init__(
        self,
        verifier: HeaderVerifier,
        batches: BatchQueue,
        max_body_bytes: int,
        client_cert: ClientCertCheck | None = None,
    ) -> None:
        self.verifier = verifier
        self.batches = batches
        self.max_body_bytes = max_body_bytes
        self.client_cert = client_cert

    def read_body(self, environ: Mapping[str, Any]) -> bytes:
        """Read the body, refusing one over the limit before reading it when possible."""
        length = content_length(environ)
        if length is not None and length > self.max_body_bytes:
            raise PayloadTooLarge(f"the body is {length} bytes; the limit is {self.max_body_bytes}")
        # A chunked body is read up to one byte past the limit.
        stream = environ["wsgi.input"]
        body: bytes = stream.read(length) if length is not None else stream.read(self.max_body_bytes + 1)
        if len(body) > self.max_body_bytes:
            raise PayloadTooLarge(f"the body exceeds the limit of {self.max_body_bytes} bytes")
        return body

    def handle(self, environ: Mapping[str, Any], rid: str) -> None:
        """Handle one PUT: return when the batch is queued (or empty), raise the error to answer."""
        if self.client_cert is not None:
            try:
                self.client_cert.check(environ)
            except Unauthorized as exc:
                logger.warning("rejected callback: %s request_id=%s", exc.message, rid)
                raise
        if not self.verifier.verify(environ_headers(environ)):
            logger.warning("rejected callback: headers do not match request_id=%s", rid)
            raise Unauthorized("the request does not carry the registered callback headers")
        body = self.read_body(environ)
        if not body.strip(_WHITESPACE):
            return
        check_json_object(body)
        try:
            job_id = self.batches.enqueue(body, rid)
        except RedisError as exc:
            logger.error("redis unavailable, answered 503 request_id=%s error=%s", rid, type(exc).__name__)
            raise ServiceUnavailable("the queue is unavailable; retry later") from None
        # DEBUG, not INFO: the worker's line for the batch ties the request id to the job id, and this
        # one, with the logging module's record and time formatting, cost ~30 µs of each ack.
        logger.debug("queued batch request_id=%s job=%s bytes=%d", rid, job_id, len(body))


class CallbackRoute:
    """WSGI middleware: answers requests to ``path`` (PUT with the view), hands all others to ``app``."""

    def __init__(self, app: Callable[..., Iterable[bytes]], path: str, view: CallbackView) -> None:
        self.app = app
        self.path = path
        self.view = view
        self.observers: list[Observer] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """One request: the callback PUT answered here, anything else by the Flask app."""
        if environ.get("PATH_INFO") != self.path:
            return self.app(environ, start_response)
        rid = request_id_from(environ.get(_REQUEST_ID_KEY))
        if environ.get("REQUEST_METHOD") != "PUT":
            status, headers, body = error_parts(405, "method_not_allowed", "the callback takes PUT only", rid)
            headers.append(("Allow", "PUT"))
        else:
            started = time.perf_counter()
            status, headers, body = self.answer(environ, rid)
            for observe in self.observers:
                observe(status, time.perf_counter() - started)
        start_response(status_line(status), headers)
        return [body]

    def answer(self, environ: dict[str, Any], rid: str) -> tuple[int, list[tuple[str, str]], bytes]:
        """Status, headers and body of the answer to one callback PUT."""
        try:
            self.view.handle(environ, rid)
        except DevicehooksError as exc:
            return error_parts(exc.code, exc.type, exc.message, rid, exc.retry_after, exc.fields)
        except Exception:
            logger.exception("unhandled error request_id=%s", rid)
            return error_parts(500, "internal_server_error", "internal error; see the service log", rid)
        return 204, [(HEADER, rid)], b""


@lru_cache(maxsize=32)
def status_line(status: int) -> str:
    """``204 No Content`` and the like, for start_response."""
    return f"{status} {HTTPStatus(status).phrase}"


def init_app(
    app: Flask,
    verifier: HeaderVerifier,
    batches: BatchQueue,
    max_body_bytes: int,
    client_cert: ClientCertCheck | None = None,
) -> CallbackRoute:
    """Answer every request to the configured path ahead of Flask (PUTs; 405 for the other methods)."""
    view = CallbackView(verifier, batches, max_body_bytes, client_cert)
    route = CallbackRoute(app.wsgi_app, app.config["CALLBACK_PATH"], view)
    app.wsgi_app = route  # type: ignore[method-assign]
    app.extensions[EXTENSION] = route
    return route
