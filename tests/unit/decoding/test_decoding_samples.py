"""Every sample under tests/samples/payloads decodes to the value (or error) it records."""

import json
from pathlib import Path

import pytest

from workers.decoding import decode_value, default_object_model

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "samples" / "payloads").glob("*.json"))


def test_samples_are_present():
    assert len(SAMPLES) >= 10


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_sample_payload_decodes_to_its_recorded_value(sample):
    doc = json.loads(sample.read_text(encoding="utf-8"))
    value, error = decode_value(doc["payload_b64"], doc["ct"], doc["path"], default_object_model())
    assert (value, error) == (doc["value"], doc["decode_error"])
