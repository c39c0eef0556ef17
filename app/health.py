"""Liveness and readiness."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from redis.exceptions import RedisError

from app.errors import ServiceUnavailable

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """Redis is reachable."""
    try:
        current_app.extensions["devicehooks.redis"].ping()
    except RedisError:
        raise ServiceUnavailable("redis is unreachable") from None
    return jsonify(status="ready")
