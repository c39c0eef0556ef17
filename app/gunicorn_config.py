"""gunicorn settings (``gunicorn --config python:app.gunicorn_config``), from the one config module."""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path
from typing import Any

from app import config as _config

_settings = _config.from_env()
# app.metrics: every gunicorn worker counts into one directory (prometheus-client's multiprocess mode,
# chosen when prometheus_client is first imported, so it is set here, before the app is loaded).
_own_metrics_dir = not _settings.metrics_dir
_metrics_dir = Path(_settings.metrics_dir or tempfile.mkdtemp(prefix="devicehooks-metrics-"))
_metrics_dir.mkdir(parents=True, exist_ok=True)
for _stale in _metrics_dir.glob("*.db"):
    _stale.unlink()
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)

bind = f"0.0.0.0:{_settings.port}"
workers = _settings.web_concurrency
# Threads, not sync workers: a connection that sends its headers a byte at a time holds the thread
# that reads it until it completes (gunicorn has no header or body read deadline), and with sync
# workers two such connections held every worker. A thread per connection, and a worker accepting
# only as many connections as it has threads, leave every other thread answering (README, "Deploying").
worker_class = "gthread"
threads = _settings.web_threads
worker_connections = _settings.web_threads
# Device Management sends the next batch only after the ack; a slow PUT is a stuck channel.
timeout = 30
graceful_timeout = 25
# No keep-alive: with worker_connections == threads gthread has no slot for an idle kept-alive
# connection (it closed them anyway, with a warning at every start), and Device Management sends one
# batch at a time.
keepalive = 0
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
# Forwarding headers (X-Forwarded-Proto, ...) are believed only from these proxies: none by default.
forwarded_allow_ips = ",".join(_settings.forwarded_allow_ips)
# No request header, even from a trusted proxy, may set SCRIPT_NAME or PATH_INFO and so move the route.
forwarder_headers = ""
header_map = "drop"
if _settings.tls_cert_file:
    certfile = _settings.tls_cert_file
    keyfile = _settings.tls_key_file
    ca_certs = _settings.client_cert_ca_file
    # OPTIONAL: a certificate that is presented must verify against ca_certs, or the handshake fails;
    # a connection without one gets through TLS so the app can answer 401 in the error model.
    cert_reqs = ssl.CERT_OPTIONAL if _settings.client_cert else ssl.CERT_NONE


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


def child_exit(server: Any, worker: Any) -> None:
    """A gunicorn worker exited: its live gauges leave the multiprocess directory (counters stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(_metrics_dir))


def on_exit(server: Any) -> None:
    """gunicorn stops: remove the metrics directory it made up."""
    if _own_metrics_dir:
        import shutil

        shutil.rmtree(_metrics_dir, ignore_errors=True)
