"""gunicorn settings (``gunicorn --config python:app.gunicorn_config``), from the one config module."""

from __future__ import annotations

from app import config as _config

_settings = _config.from_env()

bind = f"0.0.0.0:{_settings.port}"
workers = _settings.web_concurrency
worker_class = "sync"
# Device Management sends the next batch only after the ack; a slow PUT is a stuck channel.
timeout = 30
graceful_timeout = 25
keepalive = 5
# A batch of 20,000 items is a few MB: read it in one go rather than buffering to disk.
limit_request_line = 8190
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
forwarded_allow_ips = "*"
