"""The callback route: verify -> check -> enqueue -> 204.

What the request path parses was decided by measurement (README, "Performance"):
``json.loads`` of a 10,000-item batch (1.3 MB) costs ~8 ms here, of a 1-item batch ~5 µs.
Bodies up to ``STRICT_JSON_BYTES`` are parsed in full, strictly (``app.strictjson``: no NaN or
Infinity, no lone surrogate, at most 1,024 levels deep); larger ones get a structural check
(valid UTF-8, an object's braces) and the worker, with the same parser, quarantines one that fails.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from redis.exceptions import RedisError

from app import strictjson
from app.batches import BatchQueue
from app.client_cert import ClientCertCheck
from app.errors import BadRequest, PayloadTooLarge, ServiceUnavailable, Unauthorized
from app.verify import HeaderVerifier
from app.web import current_request_id

logger = logging.getLogger(__name__)

STRICT_JSON_BYTES = 256 * 1024
_WHITESPACE = b" \t\r\n"


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


class CallbackView:
    """Receives Device Management's PUTs."""

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

    def read_body(self) -> bytes:
        """Read the body, refusing one over the limit before reading it when possible."""
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            raise PayloadTooLarge(f"the body is {length} bytes; the limit is {self.max_body_bytes}")
        # The server's input stream directly: werkzeug's wrapper costs ~20 µs a request, and the
        # length is already checked (a chunked body is read up to one byte past the limit).
        stream = request.environ["wsgi.input"]
        body: bytes = stream.read(length) if length is not None else stream.read(self.max_body_bytes + 1)
        if len(body) > self.max_body_bytes:
            raise PayloadTooLarge(f"the body exceeds the limit of {self.max_body_bytes} bytes")
        return body

    def __call__(self) -> Response:
        """Handle one PUT."""
        if self.client_cert is not None:
            try:
                self.client_cert.check(request.environ)
            except Unauthorized as exc:
                logger.warning("rejected callback: %s request_id=%s", exc.message, current_request_id())
                raise
        if not self.verifier.verify(request.headers.get):
            logger.warning("rejected callback: headers do not match request_id=%s", current_request_id())
            raise Unauthorized("the request does not carry the registered callback headers")
        body = self.read_body()
        if not body.strip(_WHITESPACE):
            return Response(status=204)
        check_json_object(body)
        rid = current_request_id()
        try:
            job_id = self.batches.enqueue(body, rid)
        except RedisError as exc:
            logger.error("redis unavailable, answered 503 request_id=%s error=%s", rid, type(exc).__name__)
            raise ServiceUnavailable("the queue is unavailable; retry later") from None
        logger.info("queued batch request_id=%s job=%s bytes=%d", rid, job_id, len(body))
        return Response(status=204)


def init_app(
    app: Flask,
    verifier: HeaderVerifier,
    batches: BatchQueue,
    max_body_bytes: int,
    client_cert: ClientCertCheck | None = None,
) -> None:
    """Register the callback route at the configured path."""
    view = CallbackView(verifier, batches, max_body_bytes, client_cert)
    app.add_url_rule(app.config["CALLBACK_PATH"], "callback", view, methods=["PUT"])
