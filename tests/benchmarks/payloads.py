"""Realistic notification batches for the benchmarks."""

from __future__ import annotations

import base64
import json


def notification_batch(items: int) -> bytes:
    """A notifications batch of ``items`` temperature readings from distinct devices."""
    notifications = [
        {
            "ep": f"0161661e9ce10000000000010010{i:04x}",
            "path": "/3303/0/5700",
            "ct": "text/plain",
            "payload": base64.b64encode(f"{20 + (i % 100) / 10:.1f}".encode()).decode(),
            "max-age": 0,
        }
        for i in range(items)
    ]
    return json.dumps({"notifications": notifications}).encode()
