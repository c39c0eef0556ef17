"""gunicorn settings (``gunicorn --config python:app.gunicorn_config``), from the one config module."""

from __future__ import annotations

from typing import Any

from app import config as _config

_settings = _config.from_env()

bind = f"0.0.0.0:{_settings.port}"
workers = _settings.web_concurrency
worker_class = "sync"
# Device Management sends the next batch only after the ack; a slow PUT is a stuck channel.
timeout = 30
graceful_timeout = 25
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
forwarded_allow_ips = "*"


def when_ready(server: Any) -> None:
    """Once the master listens: register the callback from a daemon thread (app.dm.registration)."""
    import logging

    from app.dm.registration import start_background

    dm_logger = logging.getLogger("app.dm")
    if not dm_logger.handlers:
        # gunicorn's error log, not the root logger: the web workers set up their own (buffered) one.
        for handler in getattr(getattr(server, "log", None), "error_log", logging.getLogger()).handlers:
            dm_logger.addHandler(handler)
        dm_logger.setLevel(_settings.log_level)
        dm_logger.propagate = False
    local_url = f"http://127.0.0.1:{_settings.port}{_settings.callback_path}"
    start_background(_settings, local_url=local_url)
