"""RQ job functions: thin wrappers that load a batch and hand it to the pipeline."""

from __future__ import annotations

import json
import logging
from typing import Any

from workers import runtime

logger = logging.getLogger(__name__)


def process_batch(body_key: str) -> dict[str, Any]:
    """Process one queued batch body; delete it once done."""
    rt = runtime.current()
    body = rt.redis.get(body_key)
    if body is None:
        logger.warning("batch body %s is gone (already processed?)", body_key)
        return {"missing": True}
    message = json.loads(body)
    counts = {kind: len(items) for kind, items in message.items() if isinstance(items, list)}
    logger.info("batch %s: %s", body_key, counts)
    rt.redis.delete(body_key)
    return {"counts": counts}
