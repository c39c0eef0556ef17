"""OMA LwM2M TLV (TS 1.0 section 6.4.3) vectors, written byte by byte from the spec.

Type byte: bits 7-6 identifier type (00 object instance, 01 resource instance, 10 multiple resource,
11 resource with value); bit 5 identifier length (0: 8 bits, 1: 16 bits); bits 4-3 length type (00: in
bits 2-0, 01: 8-bit, 10: 16-bit, 11: 24-bit length field). So 0xC1 = resource, 8-bit id, length 1;
0xE4 = resource, 16-bit id, length 4; 0xC8 = resource, 8-bit id, 8-bit length field; 0x41 = resource
instance, length 1; 0x86 = multiple resource, length 6; 0x08 = object instance, 8-bit length field.
"""

import json

import pytest

from workers.decoding import decode_value, default_object_model, encode_b64, encode_paths
from workers.decoding.errors import DecodeError
from workers.decoding.tlv import (
    MULTIPLE_RESOURCE,
    OBJECT_INSTANCE,
    RESOURCE,
    RESOURCE_INSTANCE,
    Tlv,
    decode_tlv,
    encode_tlv,
    parse_tlv,
)

TLV = "application/vnd.oma.lwm2m+tlv"
MODEL = default_object_model()

# The spec's example: a read of the Device object instance /3/0 (TS 1.0, 6.4.3.1).
DEVICE = bytes.fromhex(
    # Manufacturer (0): resource, 8-bit length field = 0x14 (20) "Open Mobile Alliance"
    "C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65"
    # Model Number (1): length 0x16 (22) "Lightweight M2M Client"
    " C8 01 16 4C 69 67 68 74 77 65 69 67 68 74 20 4D 32 4D 20 43 6C 69 65 6E 74"
    # Serial Number (2): length 9 "345000123"
    " C8 02 09 33 34 35 30 30 30 31 32 33"
    # Firmware Version (3): length 3 in the type byte, "1.0"
    " C3 03 31 2E 30"
    # Available Power Sources (6): multiple resource of 6 bytes: [0] = 1, [1] = 5
    " 86 06 41 00 01 41 01 05"
    # Power Source Voltage (7): multiple resource, 8-bit length field 8: [0] = 3800, [1] = 5000
    " 88 07 08 42 00 0E D8 42 01 13 88"
    # Power Source Current (8): multiple resource of 7 bytes: [0] = 125, [1] = 900
    " 87 08 41 00 7D 42 01 03 84"
    # Battery Level (9) = 100; Memory Free (10) = 15
    " C1 09 64 C1 0A 0F"
    # Error Code (11): multiple resource of 3 bytes: [0] = 0
    " 83 0B 41 00 00"
    # Current Time (13) = 0x5182428F = 1367491215; UTC Offset (14) = "+02:00"; Binding (16) = "U"
    " C4 0D 51 82 42 8F C6 0E 2B 30 32 3A 30 30 C1 10 55"
)
DEVICE_VALUES = {
    "/3/0/0": "Open Mobile Alliance",
    "/3/0/1": "Lightweight M2M Client",
    "/3/0/2": "345000123",
    "/3/0/3": "1.0",
    "/3/0/6/0": 1,
    "/3/0/6/1": 5,
    "/3/0/7/0": 3800,
    "/3/0/7/1": 5000,
    "/3/0/8/0": 125,
    "/3/0/8/1": 900,
    "/3/0/9": 100,
    "/3/0/10": 15,
    "/3/0/11/0": 0,
    "/3/0/13": 1367491215,
    "/3/0/14": "+02:00",
    "/3/0/16": "U",
}

# Modelled on the spec's read of the multiple-instance Access Control object /2 (TS 1.0, 6.4.3.2).
ACCESS_CONTROL = bytes.fromhex(
    "08 00 0E"  # object instance 0, 8-bit length field: 14 bytes
    " C1 00 01"  # Object ID = 1
    " C1 01 00"  # Object Instance ID = 0
    " 83 02 41 7F 07"  # ACL: multiple resource of 3 bytes, [127] = 7
    " C1 03 7F"  # Access Control Owner = 127
    " 08 02 12"  # object instance 2, 18 bytes
    " C1 00 03"  # Object ID = 3
    " C1 01 00"  # Object Instance ID = 0
    " 87 02 41 7F 07 61 01 36 01"  # ACL of 7 bytes: [127] = 7, [310] = 1 (0x61: 16-bit instance id 0x0136)
    " C1 03 7F"  # Access Control Owner = 127
)


def tlv(payload: bytes, path: str) -> tuple[object, str | None]:
    """Decode a TLV payload on `path` through the public entry point."""
    return decode_value(encode_b64(payload), TLV, path, MODEL)


def test_tlv_spec_device_example_decodes_every_resource():
    assert tlv(DEVICE, "/3/0") == (DEVICE_VALUES, None)


def test_tlv_spec_device_example_is_reproduced_byte_for_byte_by_the_encoder():
    assert encode_paths(DEVICE_VALUES, "/3/0", MODEL) == DEVICE


def test_tlv_spec_access_control_example_recurses_object_instances_and_16_bit_instance_ids():
    assert tlv(ACCESS_CONTROL, "/2") == (
        {
            "/2/0/0": 1,
            "/2/0/1": 0,
            "/2/0/2/127": 7,
            "/2/0/3": 127,
            "/2/2/0": 3,
            "/2/2/1": 0,
            "/2/2/2/127": 7,
            "/2/2/2/310": 1,
            "/2/2/3": 127,
        },
        None,
    )


def test_tlv_object_path_resolves_object_instances_wrapping_the_device_example():
    payload = bytes([0x08, 0x00, len(DEVICE)]) + DEVICE  # object instance 0, 8-bit length field
    assert tlv(payload, "/3") == (DEVICE_VALUES, None)


def test_tlv_instance_path_accepts_a_wrapping_object_instance_with_the_same_id():
    payload = bytes([0x08, 0x00, len(DEVICE)]) + DEVICE
    assert tlv(payload, "/3/0") == (DEVICE_VALUES, None)


def test_tlv_instance_path_rejects_a_wrapping_object_instance_with_another_id():
    value, error = tlv(bytes([0x08, 0x01, len(DEVICE)]) + DEVICE, "/3/0")
    assert value is None
    assert "names id 0" in str(error)


def test_tlv_resource_path_resolves_a_single_resource():
    assert tlv(bytes.fromhex("C1 09 64"), "/3/0/9") == ({"/3/0/9": 100}, None)


def test_tlv_resource_path_resolves_a_multiple_resource():
    assert tlv(bytes.fromhex("83 0B 41 00 00"), "/3/0/11") == ({"/3/0/11/0": 0}, None)


def test_tlv_resource_path_resolves_bare_resource_instances():
    payload = bytes.fromhex("41 00 00 41 01 05")  # [0] = 0, [1] = 5
    assert tlv(payload, "/3/0/11") == ({"/3/0/11/0": 0, "/3/0/11/1": 5}, None)


def test_tlv_resource_instance_path_resolves_one_resource_instance():
    assert tlv(bytes.fromhex("41 01 05"), "/3/0/11/1") == ({"/3/0/11/1": 5}, None)


def test_tlv_resource_instance_path_accepts_a_multiple_resource_wrapping_only_it():
    assert tlv(bytes.fromhex("83 0B 41 01 05"), "/3/0/11/1") == ({"/3/0/11/1": 5}, None)


def test_tlv_path_without_leading_slash_resolves_like_with_it():
    assert tlv(bytes.fromhex("C1 09 64"), "3/0/9") == ({"/3/0/9": 100}, None)


def test_tlv_resource_path_rejects_a_resource_with_another_id():
    value, error = tlv(bytes.fromhex("C1 0A 0F"), "/3/0/9")
    assert value is None
    assert "/3/0/9 names id 9" in str(error)


def test_tlv_resource_instance_path_rejects_another_instance_id():
    value, error = tlv(bytes.fromhex("41 00 00"), "/3/0/11/1")
    assert value is None
    assert "names id 1" in str(error)


def test_tlv_object_path_rejects_resources_outside_an_object_instance():
    value, error = tlv(bytes.fromhex("C1 09 64"), "/3")
    assert value is None
    assert "expects object instance, found resource 9" in str(error)


def test_tlv_instance_path_rejects_a_bare_resource_instance():
    value, error = tlv(bytes.fromhex("41 00 00"), "/3/0")
    assert value is None
    assert "found resource instance 0" in str(error)


def test_tlv_needs_a_numeric_path():
    value, error = tlv(bytes.fromhex("C1 09 64"), "/device/battery")
    assert value is None
    assert "needs an LwM2M path" in str(error)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("C1 0A 00", 0),
        ("C1 0A 7F", 127),
        ("C1 0A 80", -128),
        ("C2 0A FF 38", -200),
        ("C2 0A 7F FF", 32767),
        ("C4 0A FF FF FF FE", -2),
        ("C4 0A 80 00 00 00", -(2**31)),
        ("C8 0A 08 7F FF FF FF FF FF FF FF", 2**63 - 1),  # 8 bytes need the 8-bit length field
        ("C8 0A 08 80 00 00 00 00 00 00 00", -(2**63)),
        ("C8 0A 08 FF FF FF FF FF FF FF FF", -1),
    ],
)
def test_tlv_signed_integers_of_1_2_4_8_bytes(payload, expected):
    assert tlv(bytes.fromhex(payload), "/3/0/10") == ({"/3/0/10": expected}, None)


def test_tlv_negative_one_byte_integer_decodes_to_minus_one():
    assert tlv(bytes.fromhex("C1 0A FF"), "/3/0/10") == ({"/3/0/10": -1}, None)


@pytest.mark.parametrize("payload", ["C3 0A 00 00 01", "C0 0A", "C5 0A 00 00 00 00 01"])
def test_tlv_integer_of_3_0_or_5_bytes_is_a_decode_error(payload):
    value, error = tlv(bytes.fromhex(payload), "/3/0/10")
    assert value is None
    assert "/3/0/10: integer needs 1, 2, 4 or 8 bytes" in str(error)


def test_tlv_unsigned_integer_is_not_sign_extended():
    # /1/0/11 TLS-DTLS Alert Code is an Unsigned Integer.
    assert tlv(bytes.fromhex("C1 0B FF"), "/1/0/11") == ({"/1/0/11": 255}, None)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("E4 16 44 41 BC 00 00", 23.5),  # 0xE4: resource, 16-bit id 0x1644 = 5700, float32
        ("E4 16 44 3F C0 00 00", 1.5),
        ("E4 16 44 BF 80 00 00", -1.0),
        ("E4 16 44 41 BB 33 33", 23.4),  # float32 23.4 is rendered as its shortest decimal
        ("E8 16 44 08 40 37 80 00 00 00 00 00", 23.5),  # float64, 8-bit length field
        ("E8 16 44 08 3F B9 99 99 99 99 99 9A", 0.1),
        ("E4 16 44 7F C0 00 00", "NaN"),
        ("E4 16 44 FF 80 00 00", "-Infinity"),
    ],
)
def test_tlv_floats_of_4_and_8_bytes(payload, expected):
    assert tlv(bytes.fromhex(payload), "/3303/0/5700") == ({"/3303/0/5700": expected}, None)


def test_tlv_float_of_2_bytes_is_a_decode_error():
    value, error = tlv(bytes.fromhex("E2 16 44 3F C0"), "/3303/0/5700")
    assert value is None
    assert "float needs 4 or 8 bytes or decimal text, got 2 bytes" in str(error)


@pytest.mark.parametrize(("byte", "expected"), [("00", False), ("01", True)])
def test_tlv_boolean(byte, expected):
    # /3311/0/5850 On/Off; 0xE1: resource, 16-bit id 0x16DA = 5850, length 1
    assert tlv(bytes.fromhex(f"E1 16 DA {byte}"), "/3311/0/5850") == ({"/3311/0/5850": expected}, None)


@pytest.mark.parametrize("payload", ["E1 16 DA 02", "E2 16 DA 00 01", "E0 16 DA"])
def test_tlv_boolean_other_than_one_byte_0_or_1_is_a_decode_error(payload):
    value, error = tlv(bytes.fromhex(payload), "/3311/0/5850")
    assert value is None
    assert "boolean needs one byte 0 or 1" in str(error)


def test_tlv_string_is_utf8_text():
    payload = bytes.fromhex("C6 00") + "Größe".encode()[:6]  # 6 bytes "Größ"
    assert tlv(payload, "/3/0/0") == ({"/3/0/0": "Größ"}, None)


def test_tlv_string_that_is_not_utf8_becomes_base64():
    assert tlv(bytes.fromhex("C2 00 FF FE"), "/3/0/0") == ({"/3/0/0": "//4="}, None)


def test_tlv_opaque_with_non_utf8_bytes_is_base64():
    # /5/0/0 Package is Opaque
    assert tlv(bytes.fromhex("C3 00 FF FE 00"), "/5/0/0") == ({"/5/0/0": "//4A"}, None)


def test_tlv_time_is_an_integer():
    assert tlv(bytes.fromhex("C4 0D 51 82 42 8F"), "/3/0/13") == ({"/3/0/13": 1367491215}, None)


def test_tlv_objlnk_is_objid_colon_instid():
    # /1/0/10 APN Link (Objlnk) = 11:1
    assert tlv(bytes.fromhex("C4 0A 00 0B 00 01"), "/1/0/10") == ({"/1/0/10": "11:1"}, None)


def test_tlv_multiple_objlnk_resource():
    # /3/0/22 ExtDevInfo: multiple resource of 6 bytes, [0] = 3:0
    assert tlv(bytes.fromhex("86 16 44 00 00 03 00 00"), "/3/0/22") == ({"/3/0/22/0": "3:0"}, None)


def test_tlv_objlnk_of_3_bytes_is_a_decode_error():
    value, error = tlv(bytes.fromhex("C3 0A 00 0B 00"), "/1/0/10")
    assert value is None
    assert "objlnk needs 4 bytes" in str(error)


def test_tlv_16_bit_resource_id():
    # 0xE1: resource, 16-bit id 0x012C = 300, length 1, "A" (an unknown object: the id is what matters)
    assert tlv(bytes.fromhex("E1 01 2C 41"), "/9999/0") == ({"/9999/0/300": "A"}, None)


def test_tlv_16_bit_length_field():
    text = "x" * 300
    payload = bytes.fromhex("D0 00 01 2C") + text.encode()  # 0xD0: resource, 16-bit length 0x012C
    assert tlv(payload, "/3/0/0") == ({"/3/0/0": text}, None)


def test_tlv_24_bit_length_field():
    text = "y" * 70000
    payload = bytes.fromhex("D8 00 01 11 70") + text.encode()  # 0xD8: resource, 24-bit length 0x011170
    assert tlv(payload, "/3/0/0") == ({"/3/0/0": text}, None)


def test_tlv_length_bits_2_0_are_ignored_when_a_length_field_follows():
    # 0xCF = 11 0 01 111: resource, 8-bit length field (= 3); bits 2-0 (111) are not the length
    assert tlv(bytes.fromhex("CF 00 03 61 62 63"), "/3/0/0") == ({"/3/0/0": "abc"}, None)


def test_tlv_nested_object_instance_resources_multiple_resource_and_instances():
    payload = bytes.fromhex(
        "08 00 14"  # object instance 0, 8-bit length field: 20 bytes
        " C1 09 64"  # Battery Level = 100
        " 88 0B 09 41 00 01 44 01 00 01 00 00"  # Error Code, 9 bytes: [0] = 1, [1] = 65536 (4 bytes)
        " C3 03 31 2E 30"  # Firmware Version "1.0"
        " 08 01 03 C1 09 32"  # object instance 1: Battery Level = 50
    )
    assert tlv(payload, "/3") == (
        {"/3/0/9": 100, "/3/0/11/0": 1, "/3/0/11/1": 65536, "/3/0/3": "1.0", "/3/1/9": 50},
        None,
    )


def test_tlv_16_bit_object_instance_id():
    # 0x20 = object instance, 16-bit id 0x0100, length 3
    assert tlv(bytes.fromhex("23 01 00 C1 09 07"), "/3") == ({"/3/256/9": 7}, None)


def test_tlv_unknown_resource_with_printable_utf8_is_text():
    assert tlv(bytes.fromhex("C5 07 68 65 6C 6C 6F"), "/9999/0") == ({"/9999/0/7": "hello"}, None)


def test_tlv_unknown_resource_with_binary_bytes_is_base64():
    assert tlv(bytes.fromhex("C2 07 00 01"), "/9999/0") == ({"/9999/0/7": "AAE="}, None)


def test_tlv_executable_resource_value_follows_the_unknown_rule():
    assert tlv(bytes.fromhex("C2 04 00 01"), "/3/0") == ({"/3/0/4": "AAE="}, None)


def test_tlv_object_instance_containing_a_resource_instance_is_inconsistent():
    value, error = tlv(bytes.fromhex("03 00 41 00 01"), "/3")
    assert value is None
    assert "object instance 0 (byte 0) cannot contain resource instance 0" in str(error)


def test_tlv_multiple_resource_containing_a_resource_is_inconsistent():
    value, error = tlv(bytes.fromhex("83 0B C1 00 01"), "/3/0")
    assert value is None
    assert "multiple resource 11 (byte 0) cannot contain resource 0" in str(error)


def test_tlv_object_instance_inside_an_object_instance_is_inconsistent():
    value, error = tlv(bytes.fromhex("05 00 03 01 C1 09 64"), "/3")
    assert value is None
    assert "object instance 0 (byte 0) cannot contain object instance 1" in str(error)


def test_tlv_duplicate_resource_is_inconsistent():
    value, error = tlv(bytes.fromhex("C1 09 64 C1 09 32"), "/3/0")
    assert value is None
    assert "/3/0/9 appears twice" in str(error)


@pytest.mark.parametrize(("payload", "path"), [(DEVICE, "/3/0"), (ACCESS_CONTROL, "/2")])
def test_tlv_truncation_at_every_byte_offset_is_a_decode_error_unless_it_ends_a_top_level_tlv(payload, path):
    ends = {0}
    for top in parse_tlv(payload)[1:]:
        ends.add(top.offset)
    for cut in range(1, len(payload)):
        value, error = tlv(payload[:cut], path)
        if cut in ends:
            assert error is None, cut
            assert isinstance(value, dict)
        else:
            assert value is None, cut
            assert error is not None
            assert "truncated" in error, (cut, error)


def test_tlv_truncation_message_says_what_and_where():
    with pytest.raises(DecodeError, match=r"truncated at byte 0: resource 0 declares 20 value bytes, 3 left"):
        decode_tlv(DEVICE[:6], "/3/0", MODEL)


def test_tlv_truncated_header_says_how_many_bytes_it_needs():
    with pytest.raises(DecodeError, match=r"truncated at byte 0: the resource header needs 3 bytes, 2 left"):
        decode_tlv(bytes.fromhex("C8 00"), "/3/0", MODEL)


def test_tlv_values_are_json_serialisable():
    value, _ = tlv(DEVICE, "/3/0")
    assert json.loads(json.dumps(value, allow_nan=False)) == value


def test_encode_tlv_chooses_16_bit_ids_and_24_bit_lengths_when_needed():
    record = Tlv(RESOURCE, 300, value=b"z" * 70000)
    encoded = encode_tlv([record])
    assert encoded[:6] == bytes.fromhex("F8 01 2C 01 11 70")  # 11 1 11 000: 16-bit id, 24-bit length
    assert parse_tlv(encoded) == [record]


def test_encode_tlv_nests_containers():
    records = [
        Tlv(
            OBJECT_INSTANCE,
            0,
            children=(
                Tlv(RESOURCE, 1, value=b"\x05"),
                Tlv(MULTIPLE_RESOURCE, 2, children=(Tlv(RESOURCE_INSTANCE, 0, value=b"\x01"),)),
            ),
        )
    ]
    # 8 bytes of children: too long for bits 2-0, so an 8-bit length field (0x08)
    assert encode_tlv(records) == bytes.fromhex("08 00 08 C1 01 05 83 02 41 00 01")
    assert parse_tlv(encode_tlv(records)) == records


def test_encode_paths_emits_a_multiple_resource_for_a_resource_path():
    assert encode_paths({"/3/0/11/0": 0, "/3/0/11/1": 5}, "/3/0/11", MODEL) == bytes.fromhex(
        "86 0B 41 00 00 41 01 05"
    )


def test_encode_paths_rejects_values_outside_the_path():
    with pytest.raises(ValueError, match="not a resource path under"):
        encode_paths({"/4/0/1": 1}, "/3/0", MODEL)


def test_encode_paths_rejects_a_resource_given_both_single_and_multiple():
    with pytest.raises(ValueError, match="both as a single value and as resource instances"):
        encode_paths({"/3/0/11": 1, "/3/0/11/0": 1}, "/3/0", MODEL)
