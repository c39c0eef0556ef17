"""What a worker process builds once and every job uses: settings, Redis, object model, handlers."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis import Redis

from app import config as config_module
from app.redis_conn import connect

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The per-process state of a worker."""

    settings: config_module.Settings
    redis: Redis


_current: Runtime | None = None


def build(settings: config_module.Settings | None = None, redis: Redis | None = None) -> Runtime:
    """Build the runtime from settings (read from the environment when not given)."""
    settings = settings or config_module.from_env()
    if redis is None:
        redis = connect(config_module.require_redis(settings), tls_verify=settings.redis_tls_verify)
    return Runtime(settings=settings, redis=redis)


def install(runtime: Runtime) -> Runtime:
    """Make ``runtime`` the one jobs in this process use."""
    global _current
    _current = runtime
    return runtime


def current() -> Runtime:
    """The installed runtime, built from the environment on first use."""
    return _current or install(build())
