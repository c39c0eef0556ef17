"""Request ids and error-model responses for every route."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from app.errors import DevicehooksError, error_body
from app.request_id import HEADER, request_id_from

logger = logging.getLogger(__name__)


def current_request_id() -> str:
    """The request id of the request being served."""
    rid: str | None = g.get("request_id")
    if rid is None:
        rid = g.request_id = request_id_from(request.headers.get(HEADER))
    return rid


def error_parts(
    code: int,
    type_: str,
    message: str,
    rid: str,
    retry_after: int | None = None,
    fields: list[Any] | None = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of an error-model response (X-Request-ID included)."""
    body = error_body(code, type_, message, rid, fields)
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), (HEADER, rid)]
    if retry_after is not None:
        headers.append(("Retry-After", str(retry_after)))
    return code, headers, body


def error_response(
    code: int, type_: str, message: str, retry_after: int | None = None, fields: list[Any] | None = None
) -> Response:
    """Build an error-model response for the current request."""
    status, headers, body = error_parts(code, type_, message, current_request_id(), retry_after, fields)
    return Response(body, status=status, headers=headers)


def _on_devicehooks_error(exc: DevicehooksError) -> Response:
    """Map the project's exceptions to the error model."""
    return error_response(exc.code, exc.type, exc.message, exc.retry_after, exc.fields)


def _on_http_exception(exc: HTTPException) -> Response:
    """Map werkzeug's 404/405/... to the error model."""
    code = exc.code or 500
    type_ = (exc.name or "error").lower().replace(" ", "_")
    return error_response(code, type_, exc.description or type_)


def _on_unexpected(exc: Exception) -> Response:
    """Log an unexpected failure and answer 500 without details."""
    logger.exception("unhandled error request_id=%s", current_request_id())
    return error_response(500, "internal_server_error", "internal error; see the service log")


def _tag_response(response: Response) -> Response:
    """Put X-Request-ID on every response."""
    response.headers[HEADER] = current_request_id()
    return response


def init_app(app: Flask) -> None:
    """Install request-id tagging and the error handlers."""
    app.after_request(_tag_response)
    app.register_error_handler(DevicehooksError, _on_devicehooks_error)
    app.register_error_handler(HTTPException, _on_http_exception)
    app.register_error_handler(Exception, _on_unexpected)
