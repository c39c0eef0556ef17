"""text/plain (and no ct): UTF-8 text typed by the object model; decode_value's general rules."""

import json

import pytest

from workers.decoding import ObjectModel, ResourceDef, decode_value, default_object_model, encode_b64

MODEL = default_object_model()


def text(value: str | bytes, path: str, ct: str | None = "text/plain") -> tuple[object, str | None]:
    """Decode `value` sent as a text/plain payload on `path`."""
    raw = value.encode() if isinstance(value, str) else value
    return decode_value(encode_b64(raw), ct, path, MODEL)


def test_text_hot_path_float_sensor_value():
    assert decode_value("MjMuNQ==", "text/plain", "/3303/0/5700", MODEL) == (23.5, None)


@pytest.mark.parametrize(
    ("payload", "path", "expected"),
    [
        ("42", "/3/0/9", 42),  # integer Battery Level
        ("-7", "/3/0/10", -7),
        ("23.5", "/3303/0/5700", 23.5),  # float Sensor Value
        ("-1", "/3303/0/5700", -1.0),
        ("1e3", "/3303/0/5601", 1000.0),
        ("1", "/3311/0/5850", True),  # boolean On/Off
        ("0", "/3311/0/5850", False),
        ("true", "/3311/0/5850", True),
        ("FALSE", "/3311/0/5850", False),
        ("1367491215", "/3/0/13", 1367491215),  # time
        ("255", "/1/0/11", 255),  # unsigned
        ("Celsius", "/3303/0/5701", "Celsius"),  # string Sensor Units
        ("Open Mobile Alliance", "/3/0/0", "Open Mobile Alliance"),
        ("3:0", "/1/0/10", "3:0"),  # objlnk stays text
        ("80", "/3311/0/5851", 80),  # integer Dimmer
        ("#FF0000", "/3311/0/5706", "#FF0000"),  # string Colour
    ],
)
def test_text_is_typed_by_the_resource(payload, path, expected):
    value, error = text(payload, path)
    assert error is None
    assert value == expected
    assert type(value) is type(expected)


def test_text_without_ct_is_typed_like_text_plain():
    assert text("42", "/3/0/9", ct=None) == (42, None)
    assert text("42", "/3/0/9", ct="") == (42, None)


def test_text_ct_by_number_and_with_parameters():
    assert text("42", "/3/0/9", ct="0") == (42, None)
    assert text("42", "/3/0/9", ct="Text/Plain; charset=utf-8") == (42, None)


def test_text_path_without_leading_slash_is_typed():
    assert text("23.5", "3303/0/5700") == (23.5, None)


def test_text_resource_instance_path_takes_the_resource_type():
    assert text("3", "/3/0/11/0") == (3, None)


@pytest.mark.parametrize("path", ["/9999/0/1", "/3303/0", "/3303", "", "not/a/path", "/3/0/99999"])
def test_text_unknown_or_non_resource_path_keeps_the_text(path):
    assert text("42", path) == ("42", None)


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ("abc", "/3303/0/5700"),
        ("nan", "/3303/0/5700"),
        ("1e999", "/3303/0/5700"),
        ("1_000", "/3303/0/5700"),
        ("1.5", "/3/0/9"),
        ("١٢", "/3/0/9"),  # Arabic-Indic digits: int() would accept them, a device never means them
        ("maybe", "/3311/0/5850"),
        ("-1", "/1/0/11"),  # negative for an unsigned resource
    ],
)
def test_text_that_does_not_parse_as_the_resource_type_keeps_the_text_without_decode_error(payload, path):
    assert text(payload, path) == (payload, None)


def test_text_non_utf8_is_a_decode_error_with_null_value():
    value, error = text(b"\xff\xfe", "/3303/0/5700")
    assert value is None
    assert error == "text/plain payload is not valid UTF-8: byte 0xff at offset 0"


@pytest.mark.parametrize("payload", [None, ""])
def test_missing_or_empty_payload_is_no_value_and_no_error(payload):
    assert decode_value(payload, "text/plain", "/3303/0/5700", MODEL) == (None, None)


def test_payload_of_zero_bytes_after_base64_is_no_value_and_no_error():
    assert decode_value("  \n", "text/plain", "/3303/0/5700", MODEL) == (None, None)


@pytest.mark.parametrize("ct", ["application/octet-stream", "42", "application/x-unknown", "image/png"])
def test_opaque_and_unknown_content_types_are_canonical_base64(ct):
    # unpadded url-safe in, canonical padded standard out
    assert decode_value("-_8", ct, "/5/0/0", MODEL) == ("+/8=", None)


def test_link_format_is_untyped_text():
    value = '</3/0>,</3303/0>;rt="temperature"'
    assert text(value, "/3/0/9", ct="application/link-format") == (value, None)


def test_decode_value_uses_the_default_model_when_none_is_given():
    assert decode_value("NDI=", "text/plain", "/3/0/9") == (42, None)


def test_decode_value_uses_the_model_it_is_given():
    model = ObjectModel({9000: "Vendor"}, {(9000, 1): ResourceDef(1, "Reading", "float", False)})
    assert decode_value(encode_b64(b"7"), "text/plain", "/9000/0/1", model) == (7.0, None)
    assert decode_value(encode_b64(b"7"), "text/plain", "/3/0/9", model) == ("7", None)


def test_decode_value_never_raises_on_wrong_argument_types():
    value, error = decode_value(12345, "text/plain", "/3/0/9", MODEL)  # type: ignore[arg-type]
    assert value is None
    assert error is not None


def test_text_values_are_json_serialisable():
    for payload, path in [("23.5", "/3303/0/5700"), ("1", "/3311/0/5850"), ("x", "/3/0/0")]:
        value, _ = text(payload, path)
        json.dumps(value, allow_nan=False)
