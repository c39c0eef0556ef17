"""Prometheus metrics at ``/metrics`` (bearer key, like the API).

Where each number comes from, chosen so that every process counts and none slows the callback:

- the web processes (PUTs by status, ack latency): prometheus-client counters in multiprocess mode
  (``PROMETHEUS_MULTIPROC_DIR``, set by ``app.gunicorn_config``), so every gunicorn worker counts; a
  counter increment is a write to a memory-mapped file, no I/O on the request path;
- the workers (batches and events by kind, handler deliveries / failures / retries / dead letters):
  counters in Redis, one pipeline per batch (:func:`count_batch`), because a worker may run on another
  machine than the web process, which no shared directory would reach;
- queue depth, workers alive, async requests by state, state-store sizes: read from Redis per scrape.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from redis import Redis
from rq import Worker

from app import callback, state, stores
from app.api.auth import require_key
from app.batches import make_queue
from app.config import Settings
from app.counters import per_handler, worker_counters
from app.dm.asyncs import AsyncTracker, request_ids
from app.errors import NotFound

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
EXTENSION = "devicehooks.metrics"

bp = Blueprint("metrics", __name__)


# --- web side: multiprocess counters --------------------------------------------------------------


@lru_cache(maxsize=1)
def web_metrics() -> tuple[Counter, Histogram]:
    """The web process's metrics (created once, registered nowhere: the scrape collects them)."""
    puts = Counter("devicehooks_callback_puts", "Callback PUTs by status", ["status"], registry=None)
    ack = Histogram("devicehooks_ack_seconds", "Callback ack latency", buckets=ACK_BUCKETS, registry=None)
    return puts, ack


@lru_cache(maxsize=64)
def _puts_with_status(status: int) -> Any:
    """The PUT counter's child for one status (``labels()`` looks it up under a lock, ~3 µs a PUT)."""
    return web_metrics()[0].labels(str(status))


def observe_put(status: int, seconds: float) -> None:
    """Count a callback PUT by status and its ack latency (an observer of app.callback's route)."""
    _puts_with_status(status).inc()
    web_metrics()[1].observe(seconds)


# --- the scrape ------------------------------------------------------------------------------------


class RedisCollector(Collector):
    """Numbers read from Redis at scrape time: worker counters, queue, workers, asyncs, store sizes."""

    def __init__(self, redis: Redis, queue_name: str) -> None:
        self.redis = redis
        self.queue_name = queue_name

    def collect(self) -> Iterator[Any]:
        """Yield every metric family."""
        redis = self.redis
        counters = worker_counters(redis)
        batches = CounterMetricFamily("devicehooks_batches", "Batches dispatched by the workers")
        batches.add_metric([], float(counters.get("batches", 0)))
        yield batches
        events = CounterMetricFamily("devicehooks_events", "Events dispatched, by kind", labels=["kind"])
        for field, value in sorted(counters.items()):
            if field.startswith("events:"):
                events.add_metric([field.split(":", 1)[1]], float(value))
        yield events
        handlers = per_handler(counters)
        for what, help_text in (
            ("delivered", "Events a handler took on first delivery"),
            ("failed", "Events a handler failed on first delivery"),
            ("retries", "Handler failures scheduled for another attempt"),
            ("dead_letters", "Handler failures dead-lettered after the last attempt"),
        ):
            family = CounterMetricFamily(f"devicehooks_handler_{what}", help_text, labels=["handler"])
            for name, row in sorted(handlers.items()):
                family.add_metric([name], float(row[what]))
            yield family
        queue = make_queue(redis, self.queue_name)
        yield GaugeMetricFamily("devicehooks_queue_depth", "Batch jobs waiting", value=float(queue.count))
        alive = Worker.count(connection=redis, queue=queue)
        yield GaugeMetricFamily("devicehooks_workers", "Workers alive on the batch queue", value=float(alive))
        asyncs = GaugeMetricFamily("devicehooks_async_requests", "Async requests by state", labels=["state"])
        for name, count in sorted(async_states(redis, self.queue_name).items()):
            asyncs.add_metric([name], float(count))
        yield asyncs
        sizes = GaugeMetricFamily("devicehooks_store_size", "Entries in each store", labels=["store"])
        sizes.add_metric(["devices"], float(state.device_count(redis)))
        sizes.add_metric(["dead_letters"], float(redis.zcard(stores.DEAD_INDEX)))
        sizes.add_metric(["rejections"], float(redis.llen(stores.REJECTIONS)))
        yield sizes


def async_states(redis: Redis, queue_name: str) -> dict[str, int]:
    """How many async requests are in each state."""
    tracker = AsyncTracker(redis, queue_name=queue_name)
    counts = {"pending": 0, "resolved": 0, "timeout": 0, "failed": 0}
    for async_id in request_ids(tracker):
        result = tracker.get(async_id)
        counts[result.state] = counts.get(result.state, 0) + 1
    return counts


def scrape_registry(settings: Settings, redis: Redis) -> CollectorRegistry:
    """What one scrape collects: every web process's metrics and the Redis-backed ones."""
    registry = CollectorRegistry(auto_describe=True)
    if settings.metrics_dir:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=settings.metrics_dir)
    else:
        for metric in web_metrics():
            registry.register(metric)
    registry.register(RedisCollector(redis, settings.queue_name))
    return registry


@bp.get("/metrics")
def metrics() -> Response:
    """The Prometheus exposition (404 without MANAGEMENT_API_KEYS, 401 without a key)."""
    settings, redis = current_app.extensions[EXTENSION]
    if not settings.management_api_keys:
        raise NotFound("/metrics is off (MANAGEMENT_API_KEYS is not set)")
    require_key(request.headers.get("Authorization"), settings.management_api_keys)
    return Response(generate_latest(scrape_registry(settings, redis)), mimetype=CONTENT_TYPE)


def init_app(app: Flask, settings: Settings, redis: Redis) -> None:
    """Count callback PUTs and serve /metrics."""
    app.extensions[EXTENSION] = (settings, redis)
    app.extensions[callback.EXTENSION].observers.append(observe_put)  # callback.init_app ran first
    app.register_blueprint(bp)
