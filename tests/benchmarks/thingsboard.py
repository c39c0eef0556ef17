"""ThingsBoard bridge benchmark: ``python -m tests.benchmarks.thingsboard [--rounds 5]``.

1. Throughput: a full batch of 10,000 notifications, decoded before the timer starts (the built-in
   handler's mapping and stream append, then the bridge process publishing at QoS 1 to a private
   mosquitto and acknowledging in Redis after PUBACK), timed from the handler's start to an empty
   backlog. Beside it, in the same run, the limit: one paho client publishing the same grouped
   payloads at QoS 1 and waiting for every PUBACK (no Redis, no mapping).
2. Latency at 1,000 notifications/s (10 every 10 ms for 10 s): from the handler's append to the
   stream to the telemetry arriving at a subscriber on the broker (the broker PUBACKs the bridge as
   it forwards), p50/p99; beside it the limit: the same feed published straight by a paho client.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from app.config import Settings
from app.thingsboard import stream
from app.thingsboard.mapping import TELEMETRY, Options, fragments_of, group
from tests.benchmarks.common import ROOT, median, percentile, private_redis, procfile_command, start_logged
from tests.benchmarks.payloads import notification_batch
from tests.support import stop, wait_until
from tests.thingsboard.broker import Mosquitto
from workers import runtime
from workers.batch import parse_batch
from workers.decoding import default_object_model
from workers.handlers.thingsboard import to_stream

BATCH = 10_000


class Subscriber:
    """Counts telemetry entries arriving on the broker and records their latency from ``ts``."""

    def __init__(self, port: int) -> None:
        self.entries = 0
        self.latencies: list[float] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-subscriber")
        self.client.on_connect = lambda c, *a: c.subscribe(TELEMETRY, qos=1)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.ready.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """Count entries; latency = now - ts (ms)."""
        now = time.time() * 1000
        doc = json.loads(message.payload)
        with self.lock:
            for entries in doc.values():
                self.entries += len(entries)
                self.latencies.extend(now - entry["ts"] for entry in entries)

    def reset(self) -> None:
        """Forget what was counted."""
        with self.lock:
            self.entries = 0
            self.latencies = []

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def publisher(port: int) -> mqtt.Client:
    """A plain paho client (the limit)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-limit")
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def bridge_round(batch: bytes, redis: Any, sub: Subscriber) -> float:
    """Notifications/s: handler -> stream -> bridge -> PUBACK -> acked in Redis (the batch is decoded
    before the timer starts, so decoding is not in the figure)."""
    sub.reset()
    events = parse_batch(batch, runtime.current().model).events
    start = time.perf_counter()
    to_stream(events)
    wait_until(lambda: stream.status(redis)["backlog"] == 0, timeout=120, what="the bridge", interval=0.002)
    return BATCH / (time.perf_counter() - start)


def limit_round(batch: bytes, client: mqtt.Client) -> float:
    """Notifications/s: the same payloads published by one paho client, every PUBACK awaited."""
    events = parse_batch(batch, default_object_model()).events
    now = int(time.time() * 1000)
    fragments = [f for e in events for f in fragments_of(e.to_dict(), Options(), now)]
    start = time.perf_counter()
    infos = [client.publish(m.topic, m.payload, qos=1) for m in group(fragments, 65_536)]
    for info in infos:
        info.wait_for_publish(60)
    return BATCH / (time.perf_counter() - start)


def publish_direct(client: mqtt.Client, events: list[list[dict[str, Any]]]) -> None:
    """The limit's send: group and publish at QoS 1, no Redis."""
    for message in group([f for fragments in events for f in fragments], 65_536):
        client.publish(message.topic, message.payload, qos=1)


def entry(ts: int, value: int) -> dict[str, Any]:
    """One telemetry entry."""
    return {"ts": ts, "values": {"k": value}}


def feed(send: Any, seconds: float = 10.0, per_tick: int = 10, tick: float = 0.01) -> None:
    """Call ``send(fragment lists)`` with ``per_tick`` notifications every ``tick`` s, stamped now."""
    start = time.perf_counter()
    for n in range(int(seconds / tick)):
        now = int(time.time() * 1000)
        batch = [
            [{"op": "telemetry", "device": f"dev-{(n * per_tick + i) % 500}", "entry": entry(now, i)}]
            for i in range(per_tick)
        ]
        send(batch)
        delay = start + (n + 1) * tick - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def latency_round(sub: Subscriber, send: Any, expected: int) -> tuple[float, float]:
    """p50/p99 latency (ms) of a 1,000/s feed."""
    sub.reset()
    feed(send)
    wait_until(lambda: sub.entries >= expected, timeout=60, what="the feed to arrive")
    return percentile(sub.latencies, 50), percentile(sub.latencies, 99)


def _list(values: list[float]) -> str:
    """Round values for the table."""
    return ", ".join(f"{x:,.0f}" for x in values)


def main() -> None:
    """Run both parts side by side with their limits and print a Markdown report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    batch = notification_batch(BATCH)
    with private_redis() as server, tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp)).start()
        settings = Settings(redis_url=server.url, thingsboard_host="127.0.0.1", thingsboard_token="bench")
        rt = runtime.install(runtime.build(settings))
        env = {
            **os.environ, "REDIS_URL": server.url, "THINGSBOARD_HOST": "127.0.0.1",
            "THINGSBOARD_PORT": str(broker.port), "THINGSBOARD_TOKEN": "bench", "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }  # fmt: skip
        bridge = start_logged(procfile_command("thingsboard"), env, Path(tmp) / "bridge.log")
        sub = Subscriber(broker.port)
        limit = publisher(broker.port)
        try:
            ours, floor = [], []
            for _ in range(rounds):
                ours.append(bridge_round(batch, rt.redis, sub))
                floor.append(limit_round(batch, limit))
            lat_ours, lat_floor = [], []
            expected = 1000 * 10
            for _ in range(max(1, rounds // 2)):
                lat_ours.append(latency_round(sub, lambda b: stream.append(rt.redis, b, 1_000_000), expected))
                lat_floor.append(latency_round(sub, lambda b: publish_direct(limit, b), expected))
        finally:
            sub.close()
            limit.disconnect()
            limit.loop_stop()
            stop(bridge)
            broker.stop()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"## ThingsBoard bridge ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {load})\n")
    print(
        f"### Throughput: a {BATCH:,}-notification batch to PUBACKed telemetry, {rounds} alternating rounds\n"
    )
    print("| path | notifications/s (median) | rounds |")
    print("|---|---|---|")
    print(f"| bridge (handler + stream + bridge process) | {median(ours):,.0f} | {_list(ours)} |")
    print(f"| limit: one paho client, same payloads | {median(floor):,.0f} | {_list(floor)} |")
    print(f"| **ratio** | **{median(ours) / median(floor):.2f}** | |\n")
    print("### Latency at 1,000 notifications/s (append -> arrival at a subscriber), ms\n")
    print("| path | p50 (median of rounds) | p99 (median of rounds) |")
    print("|---|---|---|")
    for name, rows in (("bridge", lat_ours), ("limit: direct publish", lat_floor)):
        print(f"| {name} | {median([p for p, _ in rows]):.1f} | {median([q for _, q in rows]):.1f} |")


if __name__ == "__main__":
    main()
