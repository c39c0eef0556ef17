"""What `devicehooks run` shows of its children's output (app/devconsole.py), on captured lines."""

from __future__ import annotations

from app import devconsole
from tests.conftest import SAMPLES

LINES = (SAMPLES / "devrun" / "worker_output.txt").read_text().splitlines()


def shown(line: str, verbose: bool = False) -> str | None:
    """The text printed for one line of the sample."""
    return devconsole.present("worker", line, verbose).text


def line_with(part: str) -> str:
    """The sample line containing ``part``."""
    return next(line for line in LINES if part in line)


def test_rq_bookkeeping_and_access_lines_are_hidden() -> None:
    for part in ("Listening on", "started with PID", "scheduler lock", "Successfully completed", "werkzeug"):
        assert shown(line_with(part)) is None, part
    assert shown(line_with("Starting gunicorn")) is None


def test_verbose_shows_every_line_as_written() -> None:
    for line in LINES:
        assert shown(line, verbose=True) == f"worker | {line}"


def test_an_event_is_one_short_line() -> None:
    assert shown(line_with('"ep": "dev-1", "path": "/3303')) == (
        "20:05:22 notifications          dev-1 /3303/0/5700 = 23.5"
    )
    assert shown(line_with("async-responses")) == (
        '20:05:22 async-responses        dev-1 /3/0/0 id=a1 status=200 = "devicehooks"'
    )


def test_warnings_errors_and_handler_output_are_shown_and_kept_as_last_words() -> None:
    warning = devconsole.present("worker", line_with("cannot handle"))
    assert (
        warning.text
        == "20:05:23 worker warning: handler dev:printer failed: RuntimeError: cannot handle broken-device"
    )
    assert warning.loud
    printed = devconsole.present("worker", "printed dev-1 /3303/0/5700 23.5\n")
    assert printed.text == "worker | printed dev-1 /3303/0/5700 23.5"
    assert printed.loud
    assert shown(line_with("SIGKILL")) == "20:05:22 worker error: Worker (pid:11263) was sent SIGKILL!"


def test_the_lines_a_person_acts_on_are_shown() -> None:
    assert shown(line_with("handlers loaded")) == "20:05:22 worker: handlers loaded from workers.handlers.log"
    assert shown(line_with("registered the callback")) == (
        "20:05:22 worker: registered the callback http://127.0.0.1:18813/notify"
    )


def test_the_workers_batch_record_counts_batches_events_failures_and_rejections() -> None:
    total = devconsole.Counts()
    for line in LINES:
        total.add(devconsole.present("worker", line).counts)
    assert total == devconsole.Counts(batches=1, events=3, failures=1, rejected=1)
    assert shown(line_with("workers.jobs")) is None


def test_the_summary_names_the_window_and_the_totals() -> None:
    window = devconsole.Counts(batches=2, events=13)
    total = devconsole.Counts(batches=9, events=31, failures=1)
    assert devconsole.summary(window, total, 5) == (
        "-- last 5 s: 2 batches, 13 events, 0 handler failures, 0 rejected (since start: 9 / 31 / 1 / 0)"
    )
    assert not devconsole.Counts()


def test_the_simulators_own_banner_is_left_to_the_runners() -> None:
    for line in (
        "Device Management simulator: DM_API_URL=http://127.0.0.1:1 DM_API_KEY=k",
        "  5 devices; stats at x",
    ):
        assert devconsole.present("simulator", line).text is None
    assert devconsole.present("worker", "  5 devices; stats at x").text == "worker |   5 devices; stats at x"
