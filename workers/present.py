"""Dead letters and rejections as a person reads them: tables, summaries, dates (pure; ``--json`` is raw).

``failed show`` printed 201 lines of JSON for a dead letter of 2 events, the traceback as one escaped
string and the time as an epoch float.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

SHOW_EVENTS = 20  # events listed by `failed show`; the rest are counted (all of them: --json)
ERROR_WIDTH = 60


def when(epoch: Any) -> str:
    """An epoch time as a UTC date and time."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(epoch)))
    except (TypeError, ValueError):
        return "?"


def clip(text: Any, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    flat = " ".join(str(text if text is not None else "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*cells, str(row[-1])]).rstrip())
    return "\n".join(lines)


def dead_letter_table(rows: list[dict[str, Any]]) -> str:
    """`failed list`: one row per dead letter, newest first."""
    if not rows:
        return "no dead letters"
    body = [
        [
            str(row.get("id")),
            when(row.get("failed_at")),
            str(row.get("handler")),
            str(row.get("count")),
            str(row.get("attempts")),
            clip(row.get("error"), ERROR_WIDTH),
        ]
        for row in rows
    ]
    return table(["ID", "FAILED AT", "HANDLER", "EVENTS", "ATTEMPTS", "ERROR"], body)


def event_summary(event: dict[str, Any]) -> str:
    """One event as kind, ep, path and value (async: id and status)."""
    parts = [str(event.get("kind")), str(event.get("ep"))]
    if event.get("path"):
        parts.append(str(event["path"]))
    if event.get("kind") == "async-responses":
        parts.append(f"id={event.get('id')} status={event.get('status')}")
    if event.get("value") is not None:
        parts.append("= " + clip(json.dumps(event["value"], ensure_ascii=False, default=str), 80))
    if event.get("uid"):
        parts.append(f"uid={event['uid']}")
    return " ".join(parts)


def dead_letter(letter: dict[str, Any]) -> str:
    """`failed show ID`: the fields, the events summarized, the traceback as text."""
    events: list[dict[str, Any]] = list(letter.get("events") or [])
    kinds = ", ".join(f"{count} {kind}" for kind, count in Counter(e.get("kind") for e in events).items())
    lines = [
        f"dead letter {letter.get('id')}",
        f"  handler    {letter.get('handler')}",
        f"  failed at  {when(letter.get('failed_at'))} after {letter.get('attempts')} attempt(s)",
        f"  source     {letter.get('source')}",
        f"  error      {letter.get('error')}",
        f"  events     {len(events)} ({kinds})" if events else "  events     none",
    ]
    lines += [f"    {i}. {event_summary(event)}" for i, event in enumerate(events[:SHOW_EVENTS], 1)]
    if len(events) > SHOW_EVENTS:
        lines.append(f"    … and {len(events) - SHOW_EVENTS} more (--json shows them all)")
    trace = str(letter.get("traceback") or "").rstrip()
    if trace:
        lines.append("  traceback")
        lines += ["    " + line for line in trace.splitlines()]
    lines.append(f"replay: devicehooks failed replay {letter.get('id')}")
    return "\n".join(lines)


def where(record: dict[str, Any]) -> str:
    """Which part of a batch a rejection is about."""
    if record.get("body_key"):
        return "whole body"
    if record.get("index") is None:
        return str(record.get("kind"))
    return f"{record.get('kind')}[{record.get('index')}]"


def rejection_table(records: list[dict[str, Any]]) -> str:
    """`rejections list`: one row per rejection, newest first."""
    if not records:
        return "no rejections"
    body = [
        [
            when(record.get("at")),
            where(record),
            str(record.get("job")),
            clip(record.get("reason"), ERROR_WIDTH)
            + (
                f" (body: devicehooks rejections body {record['body_key']})" if record.get("body_key") else ""
            ),
        ]
        for record in records
    ]
    return table(["AT", "WHERE", "JOB", "REASON"], body)
