"""What real senders do (mbed Cloud Client's TLV, typing by resource id, one value shape), rule by rule."""

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.decoding import (
    ObjectModel,
    ResourceDef,
    decode_value,
    default_object_model,
    encode_b64,
    encode_paths,
    load_object_model,
    shape_values,
)
from workers.decoding.tlv import MBED, encode_value

TLV = "application/vnd.oma.lwm2m+tlv"
MODEL = default_object_model()
STRICT = MODEL.with_options(tlv_strict=True)


def tlv_resource(rid: int, value: bytes) -> bytes:
    """One resource TLV with a 16-bit id and an 8-bit length field (enough for these cases)."""
    return bytes([0xE8]) + rid.to_bytes(2, "big") + bytes([len(value)]) + value


def temperature(raw: bytes, model: ObjectModel = MODEL) -> tuple[Any, str | None]:
    """Decode a TLV Sensor Value /3303/0/5700."""
    return decode_value(encode_b64(tlv_resource(5700, raw)), TLV, "/3303/0/5700", model)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        (b"24.611110687", 24.611110687),  # the example, as mbed Cloud Client writes it
        (b"23.5", 23.5),  # 4 bytes: IEEE float32 would read 1.0e-8
        (b"21.50000", 21.5),  # 8 bytes: IEEE float64 would read 1.3e-76
        (b"-7", -7.0),
        (b"1e-3", 0.001),
        (b".5", 0.5),
        (b"19.", 19.0),
    ],
)
def test_tlv_float_whose_bytes_are_decimal_text_is_that_number(text, number):
    value, error = temperature(text)
    assert error is None
    assert value == {"/3303/0/5700": number}
    assert isinstance(value["/3303/0/5700"], float)


def test_tlv_float_of_4_or_8_binary_bytes_is_still_ieee():
    assert temperature(bytes.fromhex("41BC0000")) == ({"/3303/0/5700": 23.5}, None)
    assert temperature(bytes.fromhex("4037800000000000")) == ({"/3303/0/5700": 23.5}, None)


def test_tlv_float_that_is_neither_text_nor_4_or_8_bytes_is_a_decode_error():
    value, error = temperature(b"23.5C")
    assert value is None
    assert "float needs 4 or 8 bytes or decimal text, got 5 bytes" in str(error)


def test_strict_tlv_reads_4_text_bytes_as_ieee_and_refuses_other_text():
    value, error = temperature(b"23.5", STRICT)
    assert error is None
    assert value["/3303/0/5700"] != 23.5
    assert abs(value["/3303/0/5700"]) < 1e-7  # 0x32332E35 read as an IEEE float32
    assert temperature(b"24.611110687", STRICT)[0] is None


def test_load_object_model_sets_the_strict_mode():
    assert load_object_model(tlv_strict=True).tlv_strict
    assert not load_object_model().tlv_strict


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\x01", True),
        (b"\x00", False),
        (bytes(7) + b"\x01", True),  # older mbed clients: 8 bytes
        (bytes(8), False),
        (b"1", True),
        (b"false", False),
    ],
)
def test_tlv_boolean_accepts_one_byte_eight_bytes_and_text(raw, expected):
    payload = encode_b64(tlv_resource(5850, raw))
    assert decode_value(payload, TLV, "/3311/0/5850", MODEL) == ({"/3311/0/5850": expected}, None)


@pytest.mark.parametrize("raw", [bytes(7) + b"\x01", b"1", b"\x02"])
def test_strict_tlv_boolean_is_one_byte_0_or_1_only(raw):
    value, error = decode_value(encode_b64(tlv_resource(5850, raw)), TLV, "/3311/0/5850", STRICT)
    assert value is None
    assert "boolean needs one byte 0 or 1" in str(error)


def test_tlv_integer_of_other_length_as_decimal_text_is_that_integer_unless_strict():
    payload = encode_b64(bytes.fromhex("C3 09") + b"100")  # Battery Level as 3 text bytes
    assert decode_value(payload, TLV, "/3/0/9", MODEL) == ({"/3/0/9": 100}, None)
    assert decode_value(payload, TLV, "/3/0/9", STRICT)[0] is None


def test_tlv_objlnk_as_text_is_kept_unless_strict():
    model = MODEL.merged(ObjectModel({9100: "Links"}, {(9100, 1): ResourceDef(1, "Link", "objlnk", False)}))
    payload = encode_b64(bytes.fromhex("C6 01") + b"3303:0")
    assert decode_value(payload, TLV, "/9100/0/1", model) == ({"/9100/0/1": "3303:0"}, None)
    assert decode_value(payload, TLV, "/9100/0/1", model.with_options(tlv_strict=True))[0] is None


# --- the simulator's mbed encoding is decoded back exactly ----------------------------------------

MBED_VALUES = {
    "/3/0/9": st.integers(0, 100),  # integer
    "/3/0/13": st.integers(0, 2**40),  # time
    "/3/0/0": st.text(max_size=20),  # string
    "/3303/0/5700": st.floats(allow_nan=False, allow_infinity=False),  # float
    "/3311/0/5850": st.booleans(),  # boolean
}


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({}, optional=MBED_VALUES))
def test_mbed_style_encoding_decodes_back_to_the_same_values(values):
    for path, value in values.items():
        raw = encode_paths({path: value}, path, MODEL, MBED)
        assert decode_value(encode_b64(raw), TLV, path, MODEL) == ({path: value}, None)


def test_mbed_style_writes_integers_in_8_bytes_booleans_in_1_and_floats_as_text():
    assert encode_value(87, "integer", MBED) == bytes(7) + b"\x57"
    assert encode_value(True, "boolean", MBED) == b"\x01"
    assert encode_value(23.5, "float", MBED) == b"23.5"


# --- typing by resource id -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "text", "expected"),
    [
        ("/26241/0/5700", "22.600000", 22.6),  # Sensor Value: float
        ("/26241/0/5850", "1", True),  # On/Off: boolean
        ("/26241/0/5501", "406", 406),  # Digital Input Counter: integer
        ("/26241/0/5750", "lamp", "lamp"),  # Application Type: string
        ("/26241/0/27001", "12", "12"),  # not reusable, not mapped: the text
    ],
)
def test_unknown_object_is_typed_by_its_reusable_resource_id(path, text, expected):
    value, error = decode_value(encode_b64(text.encode()), "text/plain", path, MODEL)
    assert (value, error) == (expected, None)
    assert type(value) is type(expected)


def test_tlv_of_an_unknown_object_is_typed_by_reusable_resource_id_too():
    payload = encode_b64(tlv_resource(5700, b"22.600000"))
    assert decode_value(payload, TLV, "/26241/0/5700", MODEL) == ({"/26241/0/5700": 22.6}, None)


def test_user_mapping_by_resource_id_types_unknown_resources():
    model = load_object_model(resource_types={27001: "integer", 5700: "string"})
    assert decode_value(encode_b64(b"12"), "text/plain", "/26241/0/27001", model) == (12, None)
    # the mapping wins over the reusable table, the object model's own entry wins over both
    assert decode_value(encode_b64(b"21.5"), "text/plain", "/26241/0/5700", model) == ("21.5", None)
    assert decode_value(encode_b64(b"21.5"), "text/plain", "/3303/0/5700", model) == (21.5, None)


def test_user_mapping_with_an_unknown_type_is_refused():
    with pytest.raises(ValueError, match="is not one of"):
        load_object_model(resource_types={27001: "decimal"})


def test_reusable_table_keeps_only_ids_whose_type_agrees_across_objects():
    by_id = MODEL.by_id()
    assert by_id[5700].type == "float"
    assert by_id[5850].type == "boolean"
    assert all(5500 <= rid <= 5999 for rid in by_id)


# --- one value shape -------------------------------------------------------------------------------


def test_text_and_tlv_devices_give_the_same_value_and_values():
    text = shape_values(*_decoded("MTkuMDU=", "text/plain", "/3303/0/5700"))
    tlv = shape_values(*_decoded(encode_b64(tlv_resource(5700, b"19.05")), TLV, "/3303/0/5700"))
    assert text == tlv == (19.05, {"/3303/0/5700": 19.05})


def _decoded(payload: str, ct: str, path: str) -> tuple[Any, str, str]:
    """decode_value's value with the ct and path, ready for shape_values."""
    value, error = decode_value(payload, ct, path, MODEL)
    assert error is None
    return value, ct, path


@pytest.mark.parametrize(
    ("decoded", "ct", "path", "value", "values"),
    [
        ({"/3/0/9": 87}, TLV, "/3/0/9", 87, {"/3/0/9": 87}),  # a resource path: the scalar
        ({"/3/0/11/0": 0}, TLV, "/3/0/11/0", 0, {"/3/0/11/0": 0}),  # a resource instance: the scalar
        ({"/3/0/9": 87, "/3/0/0": "x"}, TLV, "/3/0", {"/3/0/9": 87, "/3/0/0": "x"}, None),  # an instance
        ({"/3/0/11/0": 0, "/3/0/11/1": 5}, TLV, "/3/0/11", None, None),  # a multiple resource: the map
        ({}, "application/vnd.oma.lwm2m+json", "/2", {}, {}),  # an empty map stays a map
        ({"/3303/0/5700": 1.5}, "application/senml+json", "/3303/0/5700", 1.5, None),
        ({"a": 1}, "application/json", "/9000/0/1", {"a": 1}, {"/9000/0/1": {"a": 1}}),  # a document
        ("on", "text/plain", "/3/0", "on", {"/3/0": "on"}),  # text on a non-resource path: one entry
        (None, TLV, "/3/0/9", None, {}),  # no value (no payload, or a decode_error): empty values
    ],
)
def test_shape_values_rules(decoded, ct, path, value, values):
    got_value, got_values = shape_values(decoded, ct, path)
    assert got_value == (decoded if value is None and decoded is not None else value)
    assert got_values == (decoded if values is None else values)
    assert isinstance(got_values, dict)
    json.dumps([got_value, got_values])


def test_senml_and_lwm2m_json_names_are_normalised_like_event_paths():
    senml = encode_b64(json.dumps([{"bn": "3303/0/", "n": "5700", "v": 20.5}]).encode())
    value, error = decode_value(senml, "application/senml+json", "/3303/0/5700", MODEL)
    assert (value, error) == ({"/3303/0/5700": 20.5}, None)
    assert shape_values(value, "application/senml+json", "/3303/0/5700")[0] == 20.5


def test_shape_values_reads_a_path_written_without_its_leading_slash():
    assert shape_values({"/3/0/9": 87}, TLV, "3/0/9") == (87, {"/3/0/9": 87})
    assert shape_values(21.5, "text/plain", "3303/0/5700/") == (21.5, {"/3303/0/5700": 21.5})
