"""devicehooks web application: the callback route, health and readiness."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from redis import Redis

from app import config as config_module
from app import logs
from app.batches import BatchQueue
from app.client_cert import ClientCertCheck
from app.redis_conn import connect
from app.verify import HeaderVerifier

logger = logging.getLogger(__name__)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the Flask app from the environment, or from ``test_config`` (a Settings or overrides)."""
    from app import callback, health, web

    test_config = test_config or {}
    settings = test_config.get("SETTINGS") or config_module.from_env()
    logs.setup(settings.log_level, buffered=True)
    config_module.require_auth(settings)
    redis: Redis = test_config.get("REDIS") or connect(
        config_module.require_redis(settings), tls_verify=settings.redis_tls_verify
    )
    if settings.insecure_no_auth and not settings.callback_headers:
        logger.warning(
            "%s is set: the callback accepts UNAUTHENTICATED PUTs. Never use this in production.",
            config_module.INSECURE_OPT_OUT,
        )

    app = Flask(__name__)
    app.config["CALLBACK_PATH"] = settings.callback_path
    app.config["DEVICEHOOKS_SETTINGS"] = settings
    app.extensions["devicehooks.redis"] = redis

    web.init_app(app)
    app.register_blueprint(health.bp)
    verifier = HeaderVerifier(settings.callback_headers, settings.callback_headers_previous)
    batches = BatchQueue(redis, settings.queue_name)
    callback.init_app(app, verifier, batches, settings.max_body_bytes, client_cert_check(settings))
    from app import api, metrics, status

    api.init_app(app, settings, redis, test_config.get("DM_CLIENT"))
    metrics.init_app(app, settings, redis)
    status.init_app(app, settings)
    return app


def client_cert_check(settings: config_module.Settings) -> ClientCertCheck | None:
    """The client-certificate check CALLBACK_CLIENT_CERT asks for, or None when it is off."""
    if not settings.client_cert:
        return None
    return ClientCertCheck(
        settings.client_cert_cn,
        settings.client_cert_header,
        settings.forwarded_allow_ips,
        from_tls=bool(settings.tls_cert_file),
    )
