"""RQ job functions: thin wrappers that load a batch and hand it to the pipeline."""

from __future__ import annotations

import logging
from typing import Any

from rq import get_current_job

from app.batches import body_key as key_for_job
from app.redis_conn import raw
from workers import asyncs, faults, runtime
from workers.batch import BatchError, Rejection, parse_batch
from workers.directory import learn_and_fill
from workers.dispatch import replay

logger = logging.getLogger(__name__)


def process_batch(body_key: str | None = None) -> dict[str, Any]:
    """Parse, decode, resolve and fan out one queued batch; delete its body once done."""
    rt = runtime.current()
    job = get_current_job()
    job_id = job.id if job else "direct"
    request_id = job.meta.get("request_id") if job else None
    key = body_key or key_for_job(job_id)
    reply = rt.redis.get(key)
    if reply is None:
        logger.warning("batch %s: body %s is gone (already processed?)", job_id, key)
        return {"missing": True}
    body = raw(reply)
    try:
        parsed = parse_batch(body, rt.model)
    except BatchError as exc:
        rt.rejections.quarantine(body, str(exc), job_id, request_id)
        rt.redis.delete(key)
        logger.error("batch %s request_id=%s quarantined: %s", job_id, request_id, exc)
        return {"quarantined": str(exc)}
    events, unresolved = parsed.events, list[Rejection]()
    if any(event.kind == "async-responses" for event in events):
        events, unresolved = asyncs.resolve(rt.tracker, events, rt.model, parsed.rejections)
        faults.reach(rt.settings, "batch-after-resolve")
    rt.rejections.record(parsed.rejections + unresolved, job_id, request_id)
    counts = parsed.counts()
    if rt.uses_ept:
        learn_and_fill(rt.redis, events)
    failures = rt.dispatcher.dispatch(events, source=job_id)
    # Deleting the body marks the batch done (a re-run finds it gone): wait out Redis weather for it.
    rt.dispatcher.durably(lambda: rt.redis.delete(key))
    rejected = len(parsed.rejections) + len(unresolved)
    logger.info(
        "batch %s request_id=%s events=%s rejected=%d failed_handlers=%d",
        job_id, request_id, counts, rejected, len(failures),
    )  # fmt: skip
    return {"events": counts, "rejected": rejected, "failed_handlers": len(failures)}


def deliver_async_result(async_id: str) -> dict[str, Any]:
    """Call the handler a settled async request named, once (queued by the tracker as it settles)."""
    job = get_current_job()
    return asyncs.deliver(runtime.current(), async_id, job.id if job else "direct")


def redeliver(handler_name: str, key: str, attempt: int, source: str) -> dict[str, Any]:
    """Retry one handler's failed events from an earlier delivery."""
    failed = runtime.current().dispatcher.redeliver(handler_name, key, attempt, source)
    return {"handler": handler_name, "attempt": attempt, "failed": failed}


def replay_dead_letter(letter_id: str) -> dict[str, Any]:
    """Replay a dead letter queued by the management API or the status page (``app.stores.REPLAY_FUNC``)."""
    rt = runtime.current()
    try:
        job_id = replay(rt.redis, rt.queue, letter_id)
    except KeyError:
        logger.warning("replay of %s: the dead letter is gone (replayed or deleted already)", letter_id)
        return {"missing": letter_id}
    return {"replayed": letter_id, "job": job_id}
