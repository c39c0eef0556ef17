"""`devicehooks decode` on bodies real senders send: new kinds exit 0, rejections exit 2, UTF-8 output."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from workers.cli import decode

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "batches"


def run_decode(body: bytes, env: dict[str, str] | None = None) -> tuple[int, list[dict[str, object]], str]:
    """Exit code, the printed events, and stderr."""
    result = CliRunner().invoke(decode, ["-"], input=body, env=env or {})
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.exit_code, events, result.stderr


def test_a_kind_devicehooks_does_not_know_is_printed_and_exits_0() -> None:
    code, events, _ = run_decode(json.dumps({"device-events": [{"ep": "a", "x": 1}]}).encode())
    assert code == 0
    assert [(e["kind"], e["ep"], e["extra"]) for e in events] == [
        ("device-events", "a", {"item": {"ep": "a", "x": 1}})
    ]


def test_poison_batch_prints_every_event_as_utf8_and_exits_2_for_its_rejections() -> None:
    code, events, stderr = run_decode((SAMPLES / "poison.json").read_bytes())
    assert code == 2
    assert "rejected notifications[7]" in stderr
    good = [e for e in events if e["ep"] == "good-dev"]
    assert [(e["value"], e["values"]) for e in good] == [
        (20.5, {"/3303/0/5700": 20.5}),
        (21.5, {"/3303/0/5700": 21.5}),
        (22.5, {"/3303/0/5700": 22.5}),
    ]


def test_resource_type_mapping_and_strict_tlv_reach_decode() -> None:
    body = {
        "notifications": [
            {"ep": "a", "path": "/26241/0/27001", "ct": "text/plain", "payload": "MTI="},
            {
                "ep": "a",
                "path": "/3303/0/5700",
                "ct": "11542",
                "payload": "5BZEMjMuNQ==",
            },  # text '23.5' in TLV
        ]
    }
    _, lenient, _ = run_decode(json.dumps(body).encode(), {"LWM2M_RESOURCE_TYPES": "27001:integer"})
    assert [e["value"] for e in lenient] == [12, 23.5]
    _, strict, _ = run_decode(json.dumps(body).encode(), {"LWM2M_TLV_STRICT": "1"})
    assert strict[0]["value"] == "12"
    assert strict[1]["value"] != 23.5
