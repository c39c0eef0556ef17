"""Batches whose job failed for good, capped by count and by bytes (their bodies), oldest first.

RQ keeps a failed job (and devicehooks its body) for ``FAILURE_TTL`` so it can be inspected and requeued;
a flood of batches that keep failing would otherwise grow Redis by whole bodies until the TTL passes.
"""

from __future__ import annotations

import logging

from rq import Queue

from app.batches import body_key

logger = logging.getLogger(__name__)


def trim_failed(queue: Queue, keep: int, max_bytes: int) -> list[str]:
    """Delete the oldest failed jobs and bodies beyond ``keep`` jobs or ``max_bytes``; return their ids."""
    registry = queue.failed_job_registry
    ids = registry.get_job_ids(cleanup=False)  # ordered by expiry: the oldest failure first
    pipe = queue.connection.pipeline(transaction=False)
    for job_id in ids:
        pipe.strlen(body_key(job_id))
    sizes = [int(size) for size in pipe.execute()]
    total = sum(sizes)
    dropped: list[str] = []
    for job_id, size in zip(ids, sizes, strict=True):
        if len(ids) - len(dropped) <= keep and total <= max_bytes:
            break
        registry.remove(job_id, delete_job=True)
        queue.connection.delete(body_key(job_id))
        dropped.append(job_id)
        total -= size
    if dropped:
        logger.warning(
            "failed batches over the cap (%d jobs, %d bytes): deleted the %d oldest with their bodies",
            keep, max_bytes, len(dropped),
        )  # fmt: skip
    return dropped
