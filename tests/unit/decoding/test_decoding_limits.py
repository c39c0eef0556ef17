"""Work per payload is bounded: a hostile payload costs a small multiple of its size, and is a decode_error.

Before the limits, a TLV of 12 million empty resources (a 32 MB body) took a worker to 1.5 GiB. Here the
same shape at 1 million entries is decoded under tracemalloc and the peak compared with the payload.
"""

import json
import tracemalloc

import cbor2
import pytest

from workers.decoding import decode_value, default_object_model, encode_b64
from workers.decoding.limits import MAX_DEPTH, MAX_ENTRIES, MAX_NODES

MODEL = default_object_model()
MANY = 1_000_000
PEAK_PER_PAYLOAD_BYTE = 3  # peak allocation over the decode / base64 text of the payload


def hostile_payloads() -> list[tuple[str, str, bytes, str]]:
    """(name, ct, raw payload, expected error fragment) for each bounded format."""
    senml = json.dumps([{"n": str(i), "v": i} for i in range(MANY // 10)]).encode()
    return [
        ("tlv", "application/vnd.oma.lwm2m+tlv", b"\xc0\x00" * MANY, f"more than {MAX_ENTRIES} TLVs"),
        ("json", "application/json", b"[" + b"0," * MANY + b"0]", f"more than {MAX_NODES} values"),
        ("cbor", "application/cbor", cbor2.dumps([0] * MANY), f"more than {MAX_NODES} data items"),
        ("senml", "application/senml+json", senml, f"more than {MAX_ENTRIES} records"),
        (
            "senml-just-over",
            "application/senml+json",
            senml[: senml.index(b'{"n": "10001"')] + b"{}]",
            "records",
        ),
        ("lwm2m-json", "application/vnd.oma.lwm2m+json", b'{"e":[' + b"{}," * MANY + b"{}]}", "records"),
        ("senml-cbor", "application/senml+cbor", cbor2.dumps([{0: "a", 2: 1}] * MANY), "records"),
    ]


HOSTILE = hostile_payloads()


@pytest.mark.parametrize(("name", "ct", "raw", "error"), HOSTILE, ids=[p[0] for p in HOSTILE])
def test_hostile_payload_is_a_decode_error_within_a_small_multiple_of_its_size(name, ct, raw, error):
    payload = encode_b64(raw)
    tracemalloc.start()
    try:
        value, got = decode_value(payload, ct, "/3/0", MODEL)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert value is None
    assert error in str(got)
    assert peak < PEAK_PER_PAYLOAD_BYTE * len(payload), f"{name}: peak {peak} for {len(payload)} bytes"


def nested(depth: int) -> object:
    """A list nested `depth` levels deep."""
    doc: object = 0
    for _ in range(depth - 1):
        doc = [doc]
    return [doc]


@pytest.mark.parametrize("ct", ["application/json", "application/cbor"])
def test_nesting_up_to_the_limit_decodes_and_beyond_is_a_decode_error(ct):
    dump = cbor2.dumps if ct == "application/cbor" else (lambda d: json.dumps(d).encode())
    value, error = decode_value(encode_b64(dump(nested(MAX_DEPTH))), ct, "/9000/0/1", MODEL)
    assert error is None
    assert value == nested(MAX_DEPTH)
    value, error = decode_value(encode_b64(dump(nested(MAX_DEPTH + 1))), ct, "/9000/0/1", MODEL)
    assert value is None
    assert f"nested more than {MAX_DEPTH} levels" in str(error)


def test_cbor_head_declaring_more_items_than_the_payload_holds_is_refused_before_allocating():
    raw = bytes([0x9B]) + (2**40).to_bytes(8, "big")  # an array of 2**40 items, nothing after
    value, error = decode_value(encode_b64(raw), "application/cbor", "/9000/0/1", MODEL)
    assert value is None
    assert "truncated" in str(error)


def test_cbor_bignum_of_thousands_of_digits_is_a_decode_error_and_a_smaller_one_a_number():
    huge = cbor2.dumps(2**16000)  # a 2,000-byte bignum (tag 2)
    value, error = decode_value(encode_b64(huge), "application/cbor", "/9000/0/1", MODEL)
    assert value is None
    assert "too large to represent" in str(error)
    value, error = decode_value(encode_b64(cbor2.dumps(2**100)), "application/cbor", "/9000/0/1", MODEL)
    assert (value, error) == (2**100, None)
    json.dumps(value)


def test_json_number_beyond_float_range_is_json_safe_text():
    value, error = decode_value(encode_b64(b'{"t": 1e999, "u": -1e999}'), "application/json", "/9/0/1", MODEL)
    assert (value, error) == ({"t": "Infinity", "u": "-Infinity"}, None)


def test_json_lone_surrogate_is_repaired_and_survives_utf8():
    value, error = decode_value(encode_b64(b'{"\\udc00": "a\\ud800b"}'), "application/json", "/9/0/1", MODEL)
    assert (value, error) == ({"\ufffd": "a\ufffdb"}, None)
    json.dumps(value, ensure_ascii=False).encode("utf-8")
