"""Liveness and readiness."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request
from redis.exceptions import RedisError

from app.errors import ServiceUnavailable
from app.stores import redis_memory, store_sizes

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """Redis is reachable; with ``?details=1`` also its memory headroom and each store's size."""
    redis = current_app.extensions["devicehooks.redis"]
    try:
        redis.ping()
        if request.args.get("details") not in ("1", "true"):
            return jsonify(status="ready")
        queue = current_app.config["DEVICEHOOKS_SETTINGS"].queue_name
        return jsonify(status="ready", redis=redis_memory(redis), stores=store_sizes(redis, queue))
    except RedisError:
        raise ServiceUnavailable("redis is unreachable") from None
