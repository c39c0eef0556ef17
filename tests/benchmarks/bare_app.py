"""The baselines of the ack benchmark, served with the same gunicorn settings as devicehooks.

- ``create_app()``: the bare route, reads the body and answers 204;
- ``create_floor_app()``: the floor, the bare route plus one redis-py ``SET`` of the body under a
  new key before the 204 (the least any durable ack can do);
- ``create_wsgi_floor_app()``: the same SET from a plain WSGI callable, no Flask: the floor for a route
  served ahead of Flask, as devicehooks serves its callback (``app.callback.CallbackRoute``).
"""

import os
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, request
from redis import Redis


def create_app() -> Flask:
    """A Flask app with one PUT route that reads the body and answers 204."""
    app = Flask(__name__)

    @app.put("/notify")
    def notify() -> Response:
        request.get_data()
        return Response(status=204)

    return app


def create_floor_app() -> Flask:
    """The bare route plus one redis-py SET of the body (REDIS_URL) before the 204."""
    app = Flask(__name__)
    redis = Redis.from_url(os.environ["REDIS_URL"])

    @app.put("/notify")
    def notify() -> Response:
        redis.set("floor:" + uuid.uuid4().hex, request.get_data())
        return Response(status=204)

    return app


def create_wsgi_floor_app() -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """A WSGI callable: PUT /notify reads the body, one redis-py SET of it, 204; anything else 404."""
    redis = Redis.from_url(os.environ["REDIS_URL"])

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["PATH_INFO"] != "/notify" or environ["REQUEST_METHOD"] != "PUT":
            start_response("404 Not Found", [("Content-Length", "0")])
            return [b""]
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        redis.set("floor:" + uuid.uuid4().hex, body)
        start_response("204 No Content", [])
        return [b""]

    return wsgi
