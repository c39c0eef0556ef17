"""JSON, OMA LwM2M JSON, SenML JSON/CBOR and CBOR payloads."""

import datetime
import json
import uuid
from decimal import Decimal

import cbor2
import pytest

from workers.decoding import decode_value, default_object_model, encode_b64

MODEL = default_object_model()


def decode(raw: bytes, ct: str, path: str = "/3303/0") -> tuple[object, str | None]:
    """Decode raw bytes sent with content type `ct` on `path`."""
    return decode_value(encode_b64(raw), ct, path, MODEL)


def as_json(doc: object) -> bytes:
    """Serialise a document to JSON bytes."""
    return json.dumps(doc).encode()


# --- application/json ------------------------------------------------------------------------------


def test_json_payload_is_parsed():
    assert decode(b'{"a": [1, 2.5, "x", null, true]}', "application/json") == (
        {"a": [1, 2.5, "x", None, True]},
        None,
    )


def test_json_by_number_50():
    assert decode(b"[1]", "50") == ([1], None)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "not valid JSON"),
        (b"NaN", "not valid JSON: non-standard JSON constant NaN"),
        (b"\xff", "not valid UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_json_invalid_is_a_decode_error(raw, message):
    value, error = decode(raw, "application/json")
    assert value is None
    assert message in str(error)


# --- OMA LwM2M JSON --------------------------------------------------------------------------------


def test_lwm2m_json_resolves_bn_and_n_into_paths():
    doc = {
        "bn": "/3/0/",
        "e": [
            {"n": "0", "sv": "Open Mobile Alliance"},
            {"n": "9", "v": 95},
            {"n": "11/0", "v": 0},
            {"n": "13", "v": 1367491215},
            {"n": "22/0", "ov": "3:0"},
        ],
    }
    assert decode(as_json(doc), "application/vnd.oma.lwm2m+json", "/3/0") == (
        {
            "/3/0/0": "Open Mobile Alliance",
            "/3/0/9": 95,
            "/3/0/11/0": 0,
            "/3/0/13": 1367491215,
            "/3/0/22/0": "3:0",
        },
        None,
    )


def test_lwm2m_json_by_number_11543_types_numbers_by_the_model():
    doc = {"bn": "/3303/0/", "e": [{"n": "5700", "v": 25}, {"n": "5701", "sv": "Cel"}]}
    value, error = decode(as_json(doc), "11543")
    assert error is None
    assert value == {"/3303/0/5700": 25.0, "/3303/0/5701": "Cel"}
    assert isinstance(value["/3303/0/5700"], float)  # type: ignore[index]


def test_lwm2m_json_boolean_value():
    doc = {"bn": "/3311/0/", "e": [{"n": "5850", "bv": True}]}
    assert decode(as_json(doc), "application/vnd.oma.lwm2m+json", "/3311/0") == ({"/3311/0/5850": True}, None)


def test_lwm2m_json_without_bn_resolves_against_the_notification_path():
    doc = {"e": [{"n": "5700", "v": 21.5}]}
    assert decode(as_json(doc), "application/vnd.oma.lwm2m+json", "/3303/0") == ({"/3303/0/5700": 21.5}, None)


def test_lwm2m_json_time_series_keeps_the_latest_value():
    doc = {
        "bn": "/3303/0/",
        "bt": 100,
        "e": [{"n": "5700", "v": 1.0, "t": 5}, {"n": "5700", "v": 2.0, "t": -5}],
    }
    assert decode(as_json(doc), "application/vnd.oma.lwm2m+json") == ({"/3303/0/5700": 1.0}, None)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], 'must be an object with an "e" array'),
        ({"e": [{"n": "1"}]}, "record 0: has no value"),
        ({"e": [1]}, "record 0: must be an object"),
        ({"e": [{"n": "1", "v": "x"}]}, "record 0: v must be a number"),
        ({"e": [{"n": "1", "bv": 1}]}, "record 0: bv must be true or false"),
    ],
)
def test_lwm2m_json_malformed_is_a_decode_error(doc, message):
    value, error = decode(as_json(doc), "application/vnd.oma.lwm2m+json")
    assert value is None
    assert message in str(error)


# --- SenML JSON ------------------------------------------------------------------------------------


def test_senml_json_concatenates_bn_and_n_and_reads_every_value_kind():
    records = [
        {"bn": "/3303/0/", "n": "5700", "v": 23.5},
        {"n": "5701", "vs": "Cel"},
        {"bn": "/3311/0/", "n": "5850", "vb": True},
        {"n": "5706", "vs": "red"},
        {"bn": "/9000/0/", "n": "1", "vd": "AAE"},  # base64url, unpadded
        {"n": "2", "vlo": "3:0"},
    ]
    assert decode(as_json(records), "application/senml+json") == (
        {
            "/3303/0/5700": 23.5,
            "/3303/0/5701": "Cel",
            "/3311/0/5850": True,
            "/3311/0/5706": "red",
            "/9000/0/1": "AAE=",
            "/9000/0/2": "3:0",
        },
        None,
    )


def test_senml_json_applies_base_value_and_base_sum():
    records = [
        {"bn": "dev:", "bv": 10, "n": "a", "v": 1},
        {"n": "b", "v": 2.5},
        {"bs": 100, "n": "c", "s": 5},
    ]
    assert decode(as_json(records), "110") == ({"dev:a": 11, "dev:b": 12.5, "dev:c": 105}, None)


def test_senml_json_types_numbers_by_the_model():
    records = [{"n": "/3311/0/5850", "v": 1}, {"n": "/3/0/9", "v": 50.0}]
    value, error = decode(as_json(records), "application/senml+json")
    assert error is None
    assert value == {"/3311/0/5850": True, "/3/0/9": 50}
    assert type(value["/3/0/9"]) is int  # type: ignore[index]


def test_senml_json_record_without_name_takes_the_notification_path():
    assert decode(as_json([{"v": 21.0}]), "application/senml+json", "/3303/0/5700") == (
        {"/3303/0/5700": 21.0},
        None,
    )


def test_senml_json_base_only_record_yields_nothing():
    records = [{"bn": "/3303/0/", "bt": 1000}, {"n": "5700", "v": 1.5}]
    assert decode(as_json(records), "application/senml+json") == ({"/3303/0/5700": 1.5}, None)


def test_senml_json_time_series_keeps_the_latest_and_equal_times_the_last():
    records = [
        {"bn": "/3303/0/", "bt": 1000, "n": "5700", "v": 3.0, "t": 2},
        {"n": "5700", "v": 1.0, "t": 0},
        {"n": "5601", "v": 1.0},
        {"n": "5601", "v": 2.0},
    ]
    assert decode(as_json(records), "application/senml+json") == (
        {"/3303/0/5700": 3.0, "/3303/0/5601": 2.0},
        None,
    )


def test_senml_json_single_record_object_is_accepted():
    assert decode(as_json({"n": "/3/0/9", "v": 5}), "application/senml+json") == ({"/3/0/9": 5}, None)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("x", "must be an array of records"),
        ([1], "record 0: must be an object"),
        ([{"n": 5, "v": 1}], "record 0: n must be text"),
        ([{"n": "a", "vb": "yes"}], "record 0: vb must be true or false"),
        ([{"n": "a", "vd": "!!"}], "record 0: vd is not base64"),
        ([{"n": "a", "v": True}], "record 0: v must be a number"),
    ],
)
def test_senml_json_malformed_is_a_decode_error(doc, message):
    value, error = decode(as_json(doc), "application/senml+json")
    assert value is None
    assert message in str(error)


# --- SenML CBOR ------------------------------------------------------------------------------------


def test_senml_cbor_uses_integer_labels_and_byte_string_data():
    records = [
        {-2: "/3303/0/", 0: "5700", 2: 23.5},  # bn, n, v
        {0: "5701", 3: "Cel"},  # vs
        {-2: "/3311/0/", 0: "5850", 4: False},  # vb
        {-2: "/9000/0/", 0: "1", 8: b"\xff\xfe"},  # vd as bytes
        {0: "2", "vlo": "3:0"},
    ]
    assert decode(cbor2.dumps(records), "application/senml+cbor") == (
        {
            "/3303/0/5700": 23.5,
            "/3303/0/5701": "Cel",
            "/3311/0/5850": False,
            "/9000/0/1": "//4=",
            "/9000/0/2": "3:0",
        },
        None,
    )


def test_senml_cbor_by_number_112_applies_base_time_for_time_series():
    records = [{-2: "/3303/0/5700", -3: 1000, 2: 1.0, 6: 5}, {2: 2.0, 6: 1}]
    assert decode(cbor2.dumps(records), "112") == ({"/3303/0/5700": 1.0}, None)


def test_senml_cbor_invalid_is_a_decode_error():
    value, error = decode(b"\x9f", "application/senml+cbor")
    assert value is None
    assert "SenML CBOR payload is not valid CBOR" in str(error)


# --- CBOR ------------------------------------------------------------------------------------------


def test_cbor_is_converted_to_json_safe_values():
    item = {
        "bytes": b"\x00\x01",
        "float": 1.5,
        "nan": float("nan"),
        1: "int key",
        b"\xff": "bytes key",
        "list": [1, "two", None, True],
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "decimal": Decimal("1.10"),
        "uuid": uuid.UUID(int=1),
        "tag": cbor2.CBORTag(4000, [1, b"\x02"]),
        "undefined": cbor2.undefined,
        "simple": cbor2.CBORSimpleValue(99),
        "set": {1},
    }
    value, error = decode(cbor2.dumps(item, datetime_as_timestamp=False), "application/cbor")
    assert error is None
    assert value == {
        "bytes": "AAE=",
        "float": 1.5,
        "nan": "NaN",
        "1": "int key",
        "/w==": "bytes key",
        "list": [1, "two", None, True],
        "when": "2024-01-02T03:04:05+00:00",
        "decimal": "1.10",
        "uuid": "00000000-0000-0000-0000-000000000001",
        "tag": [1, "Ag=="],
        "undefined": None,
        "simple": 99,
        "set": [1],
    }
    json.dumps(value, allow_nan=False)


def test_cbor_array_key_is_rendered_as_json_text():
    assert decode(bytes.fromhex("a1820102f6"), "60") == ({"[1,2]": None}, None)


def test_cbor_trailing_bytes_are_a_decode_error():
    value, error = decode(b"\x01\x02", "application/cbor")
    assert value is None
    assert "1 bytes after the CBOR item" in str(error)


def test_cbor_truncated_is_a_decode_error():
    value, error = decode(b"\x82\x01", "application/cbor")
    assert value is None
    assert "not valid CBOR" in str(error)


def test_cbor_shared_references_that_expand_exponentially_are_a_decode_error():
    doubling: list[object] = []
    # 28 levels with the sharing tags: within limits.MAX_DEPTH, so it is the expansion budget that refuses it
    for _ in range(14):
        doubling = [doubling, doubling]  # 2**14 leaves once expanded, ~60 bytes with value sharing
    payload = cbor2.dumps(doubling, value_sharing=True)
    assert len(payload) < 500
    value, error = decode(payload, "application/cbor")
    assert value is None
    assert "expands too much" in str(error)


def test_cbor_reference_cycle_is_a_decode_error():
    cycle: list[object] = []
    cycle.append(cycle)
    value, error = decode(cbor2.dumps(cycle, value_sharing=True), "application/cbor")
    assert value is None
    assert "reference cycle" in str(error)


def test_cbor_deep_nesting_is_a_decode_error():
    value, error = decode(b"\x81" * 10_000 + b"\x00", "application/cbor")
    assert value is None
    assert error is not None
