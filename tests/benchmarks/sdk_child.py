"""Run inside a throwaway venv with mbed-cloud-sdk 2.2.0 (no devicehooks imports): time its webhook path.

    /tmp/venv/bin/python tests/benchmarks/sdk_child.py BODIES_FILE ROUNDS

BODIES_FILE holds one JSON batch per line. Prints one JSON object: µs per item of
``ConnectAPI.notify_webhook_received`` (every (ep, path) subscribed first, so no item is skipped),
and of the plain json + base64 + float loop in this same process.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import statistics
import sys
import time
import warnings


def plain_loop(bodies: list[str]) -> int:
    """The floor: json.loads, base64 and float per item."""
    count = 0
    for body in bodies:
        for item in json.loads(body)["notifications"]:
            float(base64.b64decode(item["payload"]))
            count += 1
    return count


def main() -> None:
    """Time both loops, median of rounds, and print the result as JSON."""
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    from mbed_cloud import __version__
    from mbed_cloud.connect import ConnectAPI

    path, rounds = sys.argv[1], int(sys.argv[2])
    with open(path, encoding="utf-8") as handle:
        bodies = [line for line in handle.read().splitlines() if line]
    api = ConnectAPI({"api_key": "ak_benchmark", "host": "http://127.0.0.1:9"})
    queues: dict[tuple[str, str], queue.Queue[object]] = {}
    for body in bodies[:1]:
        for item in json.loads(body)["notifications"]:
            queues[(item["ep"], item["path"])] = api._queues[item["ep"]][item["path"]] = queue.Queue()
    items = sum(len(json.loads(body)["notifications"]) for body in bodies)

    def sdk(batch: list[str]) -> int:
        for body in batch:
            api.notify_webhook_received(body)
        return items

    results: dict[str, object] = {"version": __version__}
    for name, func in (("sdk_us", sdk), ("plain_us", plain_loop)):
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            count = func(bodies)
            times.append((time.perf_counter() - start) / count * 1e6)
            delivered = sum(drain(q) for q in queues.values())
            if name == "sdk_us":
                results["delivered"] = delivered
        results[name] = statistics.median(times)
    results["items"] = items
    print(json.dumps(results))


def drain(q: queue.Queue[object]) -> int:
    """Empty a subscriber queue; return how many values it held."""
    count = 0
    while not q.empty():
        q.get_nowait()
        count += 1
    return count


if __name__ == "__main__":
    main()
