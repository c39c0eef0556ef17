"""The benchmark suite: every measurement side by side with its limit, one command, one markdown report.

    python -m tests.benchmarks.suite [--quick] [--output tests/benchmarks/RESULTS.md] [--no-sdk]

1. ack throughput, 1-item batches, beside the floor (a bare route + one Redis SET of the body) and a bare
   Flask 204 route (the Procfile's gunicorn config for all three, per worker model, same run);
2. ack latency p50/p99 of 1, 100, 1,000 and 10,000-item batches beside the floor, and the acks while 20 slow
   clients hold connections open (wrk is installed with apt-get when missing);
3. end-to-end notifications/s: simulator -> web (Procfile command) -> Redis -> worker -> counting handler,
   1 and 2 worker processes, 100 and 1,000-item batches;
4. end-to-end ack -> handler latency p50/p99 at 1,000 notifications/s;
5. worker cost per item beside a plain json + base64 loop and mbed-cloud-sdk 2.2.0 (when it installs);
6. resident memory of the web and worker processes across 1,000,000 notifications (100,000 with --quick).

The report goes to stdout and to --output. The machine is shared: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.benchmarks import ack, e2e, worker
from tests.benchmarks.common import machine_info

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT = Path(__file__).with_name("RESULTS.md")
Echo = Callable[[str], object]


def machine_markdown(command: str, seconds: float | None = None) -> str:
    """The machine and the command, as a table."""
    info = machine_info()
    rows = [("command", f"`{command}`"), *info.items()]
    if seconds is not None:
        rows.append(("suite duration", f"{seconds:.0f} s"))
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"


def ack_section(quick: bool, echo: Echo) -> str:
    """Parts 1 and 2, and the slow clients; a failure (no wrk, a non-2xx) fails the suite, never a gap."""
    cfg = (
        ack.AckSettings(seconds=3, rounds=2, latency_count=60, slow_requests=20)
        if quick
        else ack.AckSettings()
    )
    results = ack.run(cfg, echo)
    return (
        "### 1. Ack throughput, 1-item batches: ours beside the floor and the bare route\n\n"
        + ack.throughput_markdown(results)
        + "\n### 2. Ack latency by batch size (one PUT at a time, as Device Management sends)\n\n"
        + ack.latency_markdown(results)
        + "\n### 2b. Acks with 20 slow clients open\n\n"
        + ack.slow_markdown(results)
    )


def e2e_sections(quick: bool, logs: Path, echo: Echo) -> tuple[str, str]:
    """Parts 3 and 4, and part 6."""
    cfg = e2e.E2ESettings.quick() if quick else e2e.E2ESettings()
    results = e2e.run(cfg, logs, echo)
    text = (
        "### 3. End-to-end throughput (simulator -> web -> Redis -> worker -> counting handler)\n\n"
        "Simulator in load mode `max` (always two full batches queued: it sends as fast as the web "
        "process acknowledges); notifications/s counted by the handler (a batch handler doing one "
        "`INCRBY` per batch), from the first notification generated to the last one handled. "
        "A third of the simulated devices notify in LwM2M TLV, the rest in text/plain.\n\n"
        + e2e.throughput_markdown(results.cells)
    )
    if results.latency:
        text += (
            "\n### 4. End-to-end latency, ack -> handler, at a fixed rate (1 worker)\n\n"
            "Per notification: the handler's `time.time()` minus its batch job's `enqueued_at`, which the "
            "web process stamps just before it answers 204 (the simulator's event `timestamp` would add "
            "the time an event waits in the sender's queue).\n\n" + e2e.latency_markdown(results.latency)
        )
    memory = ""
    if results.memory:
        memory = (
            "### 6. Resident memory across a long run (1 worker; rate = 80% of the measured "
            "1-worker throughput)\n\n" + e2e.memory_markdown(results.memory)
        )
    return text, memory


def worker_section(quick: bool, with_sdk: bool) -> str:
    """Part 5."""
    batches, rounds = (10, 2) if quick else (30, 3)
    results = worker.run(batches=batches, items=1000, rounds=rounds, with_sdk=with_sdk)
    return (
        "### 5. Worker cost per item, same bodies, same run\n\n"
        + worker.per_item_markdown(results)
        + "\n"
        + worker.worker_markdown(results)
    )


def main() -> None:
    """Run every part, then print and write the report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter rounds and fewer notifications")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-sdk", action="store_true", help="skip mbed-cloud-sdk 2.2.0")
    args = parser.parse_args()

    def echo(line: str) -> None:
        print(line, flush=True)

    command = "python -m tests.benchmarks.suite" + (" --quick" if args.quick else "")
    logs = Path(tempfile.mkdtemp(prefix="devicehooks-suite-"))
    started = time.monotonic()
    echo("suite: ack ...")
    sections = [ack_section(args.quick, echo)]
    echo("suite: end to end ...")
    end_to_end, memory = e2e_sections(args.quick, logs, echo)
    echo("suite: worker ...")
    sections += [end_to_end, worker_section(args.quick, not args.no_sdk), memory]
    report = (
        "# devicehooks benchmark results\n\n"
        + machine_markdown(command, time.monotonic() - started)
        + "\nThe machine is shared and noisy: compare ratios within one run, not absolute numbers "
        "across runs.\n\n" + "\n".join(sections) + f"\n(process logs: {logs})\n"
    )
    print("\n" + report)
    args.output.write_text(report)
    echo(f"suite: report written to {args.output}")


if __name__ == "__main__":
    main()
