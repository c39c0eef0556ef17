"""What ``devicehooks run`` shows a person: its children's output lines, filtered and shortened (pure).

In the first minute of a run the children wrote ~350 lines, 103 of them RQ's bookkeeping and most of
the rest the simulator's access lines; the secret and the curl line scrolled away in seconds. By
default a line is shown when it is an event, a warning or an error, a handler's own output (anything
that is not a log record), or one of the few lines a person acts on (the callback registered, the
handlers loaded); every other record is only counted. ``-v`` shows every line as written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

RECORD = re.compile(
    r"^\d{4}-\d\d-\d\d (?P<time>\d\d:\d\d:\d\d),\d+ (?P<level>[A-Z]+) \d+ (?P<name>[\w.\-]+): (?P<msg>.*)$"
)
GUNICORN = re.compile(
    r"^\[\d{4}-\d\d-\d\d (?P<time>\d\d:\d\d:\d\d)[^\]]*\] \[\d+\] \[(?P<level>[A-Z]+)\] (?P<msg>.*)$"
)
BATCH_DONE = re.compile(
    r"^batch \S+ .*events=(?P<events>\{[^}]*\}) rejected=(?P<rejected>\d+) failed_handlers=(?P<failed>\d+)"
)
LOUD = frozenset({"WARNING", "ERROR", "CRITICAL"})
# plain output lines the runner's banner already says better: (child, pattern)
BANNER_DUPLICATES = (
    ("simulator", re.compile(r"^Device Management simulator: DM_API_URL=")),
    ("simulator", re.compile(r"^\s+\d+ devices; stats at ")),
)
# INFO records a person acts on: (logger name or "gunicorn", message prefix)
WORTH_SHOWING = (
    ("workers.handlers.discovery", "handlers loaded"),
    ("gunicorn", "registered the callback"),
    ("gunicorn", "applied "),
    ("app.dm.registration", "registered the callback"),
    ("app.dm.registration", "applied "),
)


@dataclass
class Counts:
    """What the workers reported since some moment: batches, events, handler failures, rejections."""

    batches: int = 0
    events: int = 0
    failures: int = 0
    rejected: int = 0

    def add(self, other: Counts) -> None:
        """Add ``other`` to these counts."""
        self.batches += other.batches
        self.events += other.events
        self.failures += other.failures
        self.rejected += other.rejected

    def __bool__(self) -> bool:
        """True when anything happened."""
        return bool(self.batches or self.events or self.failures or self.rejected)


@dataclass
class Shown:
    """The outcome of one line: the text to print (None: hidden) and what it counts."""

    text: str | None
    counts: Counts = field(default_factory=Counts)
    loud: bool = False  # a warning, an error or raw output: kept as the child's last words


def present(child: str, line: str, verbose: bool = False) -> Shown:
    """Decide how one output line of child process ``child`` is shown."""
    line = line.rstrip("\r\n")
    counts = _count(line)
    if verbose:
        return Shown(f"{child} | {line}", counts, loud=True)
    record = RECORD.match(line)
    if record:
        return _record(child, record, counts)
    served = GUNICORN.match(line)
    if served:
        return _gunicorn(child, served, counts)
    if not line.strip() or any(child == who and pattern.match(line) for who, pattern in BANNER_DUPLICATES):
        return Shown(None, counts)
    return Shown(f"{child} | {line}", counts, loud=True)


def _record(child: str, record: re.Match[str], counts: Counts) -> Shown:
    """A record of the project's log format."""
    time, level, name, msg = record["time"], record["level"], record["name"], record["msg"]
    if name == "devicehooks.events" and msg.startswith("event "):
        return Shown(f"{time} {event_line(msg[len('event ') :])}", counts)
    if level in LOUD:
        return Shown(f"{time} {child} {level.lower()}: {msg}", counts, loud=True)
    if any(name == logger and msg.startswith(prefix) for logger, prefix in WORTH_SHOWING):
        return Shown(f"{time} {child}: {msg}", counts)
    return Shown(None, counts)


def _gunicorn(child: str, served: re.Match[str], counts: Counts) -> Shown:
    """A line of gunicorn's error log (the web process; app.dm logs through it there)."""
    time, level, msg = served["time"], served["level"], served["msg"]
    if level in LOUD:
        return Shown(f"{time} {child} {level.lower()}: {msg}", counts, loud=True)
    if any(logger == "gunicorn" and msg.startswith(prefix) for logger, prefix in WORTH_SHOWING):
        return Shown(f"{time} {child}: {msg}", counts)
    return Shown(None, counts)


def _count(line: str) -> Counts:
    """The counts one line stands for: the worker's one record per finished batch."""
    record = RECORD.match(line)
    if not record or record["name"] != "workers.jobs":
        return Counts()
    done = BATCH_DONE.match(record["msg"])
    if not done:
        return Counts()
    per_kind = re.findall(r":\s*(\d+)", done["events"])
    return Counts(
        batches=1,
        events=sum(int(n) for n in per_kind),
        failures=int(done["failed"]),
        rejected=int(done["rejected"]),
    )


def event_line(logged: str) -> str:
    """One event as a short line: kind, ep, path and value (async: id and status; or the decode error)."""
    try:
        event = json.loads(logged)
    except json.JSONDecodeError:
        return f"event {logged}"
    parts = [f"{event.get('kind', '?'):<22}", str(event.get("ep"))]
    if event.get("path"):
        parts.append(str(event["path"]))
    if event.get("kind") == "async-responses":
        parts.append(f"id={event.get('id')} status={event.get('status')}")
        if event.get("error"):
            parts.append(f"error={event['error']}")
    if event.get("value") is not None:
        parts.append("= " + json.dumps(event["value"], ensure_ascii=False, default=str))
    if event.get("decode_error"):
        parts.append(f"(not decoded: {event['decode_error']})")
    return " ".join(parts)


def summary(window: Counts, total: Counts, seconds: float) -> str:
    """The periodic summary line."""
    return (
        f"-- last {seconds:g} s: {window.batches} batches, {window.events} events, "
        f"{window.failures} handler failures, {window.rejected} rejected "
        f"(since start: {total.batches} / {total.events} / {total.failures} / {total.rejected})"
    )
