"""The baselines of the ack benchmark, served with the same gunicorn settings as devicehooks.

- ``create_app()``: the bare route, reads the body and answers 204;
- ``create_floor_app()``: the floor, the bare route plus one redis-py ``SET`` of the body under a
  new key before the 204 (the least any durable ack can do).
"""

import os
import uuid

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
