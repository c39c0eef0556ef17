"""Logging setup shared by every process: one line per record, to stderr.

The web process logs one line per accepted batch. A write(2) per line cost ~20% of the ack
throughput here (README, "Performance"), so web processes buffer INFO lines and flush them every
half second, at exit, and at once for any WARNING or worse.
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import sys
import threading

FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"
FLUSH_INTERVAL = 0.5


class BufferedStderrHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Writes records to a buffered stderr; flushes on a timer, at exit and on warnings."""

    def __init__(self) -> None:
        stream = io.TextIOWrapper(
            io.BufferedWriter(io.FileIO(os.dup(sys.stderr.fileno()), "w"), buffer_size=64 * 1024),
            encoding="utf-8",
            errors="backslashreplace",
            line_buffering=False,
        )
        super().__init__(stream)
        self._flusher_pid = 0
        atexit.register(self.flush)

    def _ensure_flusher(self) -> None:
        """Start the timer thread in this process (gunicorn forks after the handler exists)."""
        if self._flusher_pid != os.getpid():
            self._flusher_pid = os.getpid()
            threading.Thread(target=self._flush_forever, name="log-flusher", daemon=True).start()

    def _flush_forever(self) -> None:
        """Flush every FLUSH_INTERVAL seconds."""
        stop = threading.Event()
        while not stop.wait(FLUSH_INTERVAL):
            self.flush()

    def emit(self, record: logging.LogRecord) -> None:
        """Buffer the record; flush at once when it is a warning or worse."""
        self._ensure_flusher()
        super().emit(record)
        if record.levelno >= logging.WARNING:
            self.flush()

    def flush(self) -> None:
        """Write out what is buffered."""
        with self.lock if self.lock else _NO_LOCK:
            if self.stream and not self.stream.closed:
                self.stream.flush()


_NO_LOCK = threading.Lock()


def setup(level: str, buffered: bool = False) -> None:
    """Send records at ``level`` and above to stderr, once per process."""
    root = logging.getLogger()
    if not any(getattr(h, "_devicehooks", False) for h in root.handlers):
        handler: logging.Handler = BufferedStderrHandler() if buffered else logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._devicehooks = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
