"""Each way the old Python clients (mbed-cloud-sdk 2.2.0, mbed-connector-api 1.0.4) decoded wrongly."""

from workers.decoding import decode_value, default_object_model, encode_b64

TLV = "application/vnd.oma.lwm2m+tlv"
MODEL = default_object_model()


def test_sdk_failure_tlv_integer_42_is_42_not_asterisk():
    # Battery Level /3/0/9 = 42: C1 09 2A. Guesswork showed the byte 0x2A as the text "*".
    assert decode_value(encode_b64(bytes.fromhex("C1 09 2A")), TLV, "/3/0/9", MODEL) == ({"/3/0/9": 42}, None)


def test_sdk_failure_tlv_float_1_5_is_1_5_not_1069547520():
    # Sensor Value /3303/0/5700 = float32 1.5 = 0x3FC00000 = 1069547520 read as an integer.
    payload = encode_b64(bytes.fromhex("E4 16 44 3F C0 00 00"))
    assert decode_value(payload, TLV, "/3303/0/5700", MODEL) == ({"/3303/0/5700": 1.5}, None)


def test_sdk_failure_tlv_negative_integer_decodes_and_does_not_abort_the_batch():
    items = [
        (bytes.fromhex("C1 0A FF"), "/3/0/10"),  # Memory Free = -1
        (bytes.fromhex("C2 0A"), "/3/0/10"),  # truncated: an error for this item only
        (bytes.fromhex("C2 0A FF 38"), "/3/0/10"),  # -200
    ]
    results = [decode_value(encode_b64(raw), TLV, path, MODEL) for raw, path in items]
    assert results[0] == ({"/3/0/10": -1}, None)
    assert results[1][0] is None
    assert "truncated" in str(results[1][1])
    assert results[2] == ({"/3/0/10": -200}, None)


def test_sdk_failure_tlv_object_instances_are_recursed():
    # /3303 with two Temperature instances: 0x07 = object instance, length 7 (in the type byte)
    payload = bytes.fromhex(
        "07 00 E4 16 44 41 BC 00 00"  # instance 0: 5700 = 23.5
        " 07 01 E4 16 44 C1 20 00 00"  # instance 1: 5700 = -10.0
    )
    assert decode_value(encode_b64(payload), TLV, "/3303", MODEL) == (
        {"/3303/0/5700": 23.5, "/3303/1/5700": -10.0},
        None,
    )


def test_sdk_failure_unpadded_base64_decodes():
    assert decode_value("MjMuNQ", "text/plain", "/3303/0/5700", MODEL) == (23.5, None)
    assert decode_value("wQlk", TLV, "/3/0/9", MODEL) == ({"/3/0/9": 100}, None)
