"""What a worker process builds once and every job uses: settings, Redis, object model, handlers."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

from redis import Redis
from rq import Queue

from app import config as config_module
from app.batches import make_queue
from app.dm.asyncs import AsyncTracker
from app.redis_conn import connect
from app.stores import StoreLimits
from workers.decoding import ObjectModel, model_for
from workers.dispatch import Dispatcher
from workers.handlers.delivery import Lanes
from workers.handlers.discovery import load_router
from workers.handlers.router import Router
from workers.rejections import Rejections

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The per-process state of a worker."""

    settings: config_module.Settings
    redis: Redis
    model: ObjectModel
    router: Router
    queue: Queue
    lanes: Lanes = field(default_factory=Lanes)

    @cached_property
    def dispatcher(self) -> Dispatcher:
        """Delivery with retries and dead letters."""
        limits = StoreLimits.from_settings(self.settings)
        return Dispatcher(self.router, self.lanes, self.redis, self.queue, limits)

    @cached_property
    def tracker(self) -> AsyncTracker:
        """Pending async requests."""
        return AsyncTracker(self.redis, queue_name=self.settings.queue_name)

    @cached_property
    def rejections(self) -> Rejections:
        """Where rejected items go."""
        return Rejections(self.redis, StoreLimits.from_settings(self.settings))

    @cached_property
    def uses_ept(self) -> bool:
        """True when some handler filters on the endpoint type."""
        return any(handler.ept is not None for handler in self.router.handlers)


_current: Runtime | None = None


def build(
    settings: config_module.Settings | None = None,
    redis: Redis | None = None,
    router: Router | None = None,
) -> Runtime:
    """Build the runtime: settings from the environment, handlers from HANDLERS and entry points."""
    settings = settings or config_module.from_env()
    if redis is None:
        redis = connect(config_module.require_redis(settings), tls_verify=settings.redis_tls_verify)
    return Runtime(
        settings=settings,
        redis=redis,
        model=model_for(settings),
        router=router if router is not None else load_router(settings.handlers, settings=settings),
        queue=make_queue(redis, settings.queue_name),
    )


def install(runtime: Runtime) -> Runtime:
    """Make ``runtime`` the one jobs in this process use."""
    global _current
    _current = runtime
    return runtime


def current() -> Runtime:
    """The installed runtime, built from the environment on first use."""
    return _current or install(build())
