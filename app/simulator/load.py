"""Load mode: notifications at a fixed rate, or as fast as the receiver acknowledges them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from app.simulator.engine import Simulator

TICK = 0.02  # s between generation steps in fixed-rate mode


def parse_rate(text: str) -> float | None:
    """`max` -> None (as fast as acknowledged), else notifications per second (> 0)."""
    if text.strip().lower() == "max":
        return None
    rate = float(text)
    if rate <= 0:
        raise ValueError("the load rate must be a positive number of notifications per second, or max")
    return rate


class LoadRun:
    """Generates `count` notifications over every observable resource and reports progress."""

    def __init__(
        self,
        sim: Simulator,
        count: int,
        rate: float | None,
        echo: Callable[[str], Any] = print,
        interval: float = 1.0,
    ) -> None:
        self.sim = sim
        self.count = count
        self.rate = rate
        self.echo = echo
        self.interval = interval
        self.generated = 0

    def run(self, stop: threading.Event) -> dict[str, Any]:
        """Wait for a channel, generate, wait until everything is settled; return the summary."""
        if not self._wait_for_channel(stop):
            return self.summary(self.sim.stats(), self.sim.stats(), 0.0)
        base = self.sim.stats()
        start = time.monotonic()
        next_report, last_acked = start + self.interval, base["acknowledged"]
        while not stop.is_set():
            self._generate(time.monotonic() - start)
            stats = self.sim.stats()
            if stats["channel"] is None:
                self.echo("load: the notification channel is gone (callback removed or deleted); stopping")
                break
            if self.generated >= self.count and not stats["queued"] and not stats["in_flight"]:
                break
            now = time.monotonic()
            if now >= next_report:
                self.echo(
                    self.progress(
                        stats, base, now - start, (stats["acknowledged"] - last_acked) / self.interval
                    )
                )
                next_report, last_acked = now + self.interval, stats["acknowledged"]
            self._pause()
        stats = self.sim.stats()
        summary = self.summary(stats, base, time.monotonic() - start)
        self.echo(
            "load done: "
            + " ".join(f"{k}={v}" for k, v in summary.items() if k != "rate")
            + f" rate={summary['rate']:.0f}/s"
        )
        return summary

    def _wait_for_channel(self, stop: threading.Event) -> bool:
        """Block until a notification channel exists; False when stopped first."""
        if not self.sim.channel.exists():
            self.echo("load: waiting for a notification channel (PUT /v2/notification/callback) ...")
        while not stop.is_set():
            if self.sim.channel.exists():
                return True
            stop.wait(0.1)
        return False

    def _generate(self, elapsed: float) -> None:
        """Generate what the rate (or, in max mode, the room in the queue) allows now."""
        if self.rate is None:
            backlog = self.sim.channel.backlog()
            allowed = 2 * self.sim.config.batch_size - backlog
        else:
            allowed = int(elapsed * self.rate) - self.generated
        allowed = min(allowed, self.count - self.generated)
        while allowed > 0:
            step = min(self.sim.config.batch_size, allowed)
            made = self.sim.trigger_notifications(step, subscribed_only=False)
            if made == 0:
                raise RuntimeError("no registered, awake device has an observable resource to notify")
            self.generated += made
            allowed -= made

    def _pause(self) -> None:
        """Wait for room in the queue (max mode) or the next tick (fixed rate)."""
        if self.rate is None:
            self.sim.channel.wait_backlog_below(2 * self.sim.config.batch_size, TICK)
        else:
            time.sleep(TICK)

    def progress(self, stats: dict[str, Any], base: dict[str, Any], elapsed: float, rate: float) -> str:
        """One status line."""
        return (
            f"load: t={elapsed:.1f}s generated={self.generated}/{self.count} "
            f"sent={stats['sent'] - base['sent']} acked={stats['acknowledged'] - base['acknowledged']} "
            f"retried={stats['retried'] - base['retried']} dropped={stats['dropped'] - base['dropped']} "
            f"queued={stats['queued'] + stats['in_flight']} rate={rate:.0f}/s"
        )

    def summary(self, stats: dict[str, Any], base: dict[str, Any], seconds: float) -> dict[str, Any]:
        """Totals of the run and the acknowledged rate."""
        acked = stats["acknowledged"] - base["acknowledged"]
        return {
            "generated": self.generated,
            "sent": stats["sent"] - base["sent"],
            "acknowledged": acked,
            "retried": stats["retried"] - base["retried"],
            "dropped": stats["dropped"] - base["dropped"],
            "batches": stats["batches"] - base["batches"],
            "seconds": round(seconds, 3),
            "rate": acked / seconds if seconds > 0 else 0.0,
        }
