"""The worker process: one queue, the JSON serializer, the scheduler for retries."""

from __future__ import annotations

import logging

from rq import SimpleWorker
from rq.serializers import JSONSerializer

from app.batches import make_queue
from workers import runtime

logger = logging.getLogger(__name__)


def run(burst: bool = False, name: str | None = None) -> bool:
    """Work the batch queue until SIGTERM (or until it is empty, with ``burst``)."""
    rt = runtime.install(runtime.build())
    queue = make_queue(rt.redis, rt.settings.queue_name)
    # SimpleWorker runs jobs in this process: ~3x the throughput of a forking worker (DESIGN.md);
    # a job killed with the process runs again through its Retry once RQ notices the dead worker.
    worker = SimpleWorker([queue], connection=rt.redis, serializer=JSONSerializer, name=name)
    logger.info("worker %s on queue %s", worker.name, queue.name)
    return worker.work(burst=burst, with_scheduler=True, logging_level=rt.settings.log_level)
