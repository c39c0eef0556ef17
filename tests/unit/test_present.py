"""Dead letters and rejections as a person reads them (workers/present.py)."""

from __future__ import annotations

from typing import Any

from workers import present

FAILED_AT = 1764619691.25  # 2025-12-01 20:08:11 UTC
TRACE = (
    'Traceback (most recent call last):\n  File "h.py", line 3, in printer\n    raise RuntimeError(x)\n'
    "RuntimeError: no"
)


def letter(events: int = 2) -> dict[str, Any]:
    """A dead letter as DeadLetters.get returns it."""
    return {
        "id": "d0123456789abcdef",
        "handler": "dev:printer",
        "events": [
            {"kind": "notifications", "ep": f"dev-{i}", "path": "/3303/0/5700", "value": 23.5, "uid": f"u{i}"}
            for i in range(events)
        ],
        "count": events,
        "error": "RuntimeError: no",
        "traceback": TRACE,
        "attempts": 5,
        "source": "batch b1",
        "failed_at": FAILED_AT,
    }


def test_failed_list_is_a_table_with_dates() -> None:
    row = {k: str(v) for k, v in letter().items() if k not in ("events", "traceback")}
    lines = present.dead_letter_table([row]).splitlines()
    assert lines[0].split() == ["ID", "FAILED", "AT", "HANDLER", "EVENTS", "ATTEMPTS", "ERROR"]
    assert lines[1].split() == [
        "d0123456789abcdef", "2025-12-01", "20:08:11", "UTC", "dev:printer", "2", "5", "RuntimeError:", "no",
    ]  # fmt: skip
    assert lines[0].index("HANDLER") == lines[1].index("dev:printer")
    assert present.dead_letter_table([]) == "no dead letters"


def test_failed_show_summarizes_events_and_prints_the_traceback_as_text() -> None:
    text = present.dead_letter(letter())
    assert "  failed at  2025-12-01 20:08:11 UTC after 5 attempt(s)" in text
    assert "  events     2 (2 notifications)" in text
    assert "    1. notifications dev-0 /3303/0/5700 = 23.5 uid=u0" in text
    assert '      File "h.py", line 3, in printer\n' in text
    assert "\\n" not in text
    assert text.endswith("replay: devicehooks failed replay d0123456789abcdef")


def test_failed_show_lists_the_first_events_and_counts_the_rest() -> None:
    text = present.dead_letter(letter(events=present.SHOW_EVENTS + 7))
    assert f"    {present.SHOW_EVENTS}. notifications" in text
    assert f"{present.SHOW_EVENTS + 1}. " not in text
    assert "… and 7 more (--json shows them all)" in text


def test_rejections_list_is_a_table_that_points_at_quarantined_bodies() -> None:
    item = {"kind": "notifications", "index": 3, "reason": "path: Missing data", "item": {}, "job": "j1"}
    body = {
        "kind": None,
        "index": None,
        "reason": "not JSON",
        "body_key": "devicehooks:quarantine:j2",
        "job": "j2",
    }
    records = [{**item, "at": FAILED_AT}, {**body, "at": FAILED_AT}]
    lines = present.rejection_table(records).splitlines()
    assert lines[0].split() == ["AT", "WHERE", "JOB", "REASON"]
    assert "notifications[3]" in lines[1]
    assert lines[1].endswith("path: Missing data")
    assert "whole body" in lines[2]
    assert lines[2].endswith("not JSON (body: devicehooks rejections body devicehooks:quarantine:j2)")
    assert present.rejection_table([]) == "no rejections"


def test_a_long_error_is_cut_on_one_line() -> None:
    assert present.clip("a\nb  c", 10) == "a b c"
    assert present.clip("x" * 20, 10) == "x" * 9 + "…"
