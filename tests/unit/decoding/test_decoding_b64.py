"""Base64 as Device Management sends it: padded, unpadded, url-safe, with whitespace; garbage refused."""

import pytest

from workers.decoding import DecodeError, decode_b64, decode_value, default_object_model, encode_b64


@pytest.mark.parametrize(
    "text",
    ["MjMuNQ==", "MjMuNQ", "MjMu\nNQ==", " MjMuNQ== ", "Mj Mu NQ", "MjMuNQ=", "MjMuNQ\r\n"],
)
def test_b64_padded_unpadded_and_whitespace_variants_decode_alike(text):
    assert decode_b64(text) == b"23.5"


def test_b64_url_safe_alphabet_decodes():
    assert decode_b64("-_8") == b"\xfb\xff"
    assert decode_b64("-_8=") == b"\xfb\xff"


def test_b64_standard_alphabet_decodes():
    assert decode_b64("+/8=") == b"\xfb\xff"


def test_b64_empty_text_is_no_bytes():
    assert decode_b64("") == b""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("!!!!", "unexpected character '!'"),
        ("QQ==QQ==", "unexpected character '='"),
        ("QUJDR", "5 significant characters cannot encode whole bytes"),
        ("Grüße", "unexpected character 'ü'"),
    ],
)
def test_b64_garbage_raises_decode_error_saying_why(text, message):
    with pytest.raises(DecodeError, match=message):
        decode_b64(text)


def test_b64_encode_is_canonical_padded_standard():
    assert encode_b64(b"\xfb\xff") == "+/8="


def test_b64_garbage_payload_is_a_decode_error_not_an_exception():
    value, error = decode_value("not base64!", "text/plain", "/3303/0/5700", default_object_model())
    assert value is None
    assert "not base64" in str(error)
