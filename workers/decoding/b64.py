"""Base64 as Device Management sends it: padded or not, standard or url-safe, with or without whitespace.

`decode_b64` tries the strict standard alphabet first (the common case, one C call), then a tolerant
path that drops ASCII whitespace, maps the url-safe alphabet onto the standard one and restores the
padding. Anything else - a character outside both alphabets, a length that no padding can fix, data
after the padding - raises `DecodeError`.
"""

import binascii
import re

from workers.decoding.errors import DecodeError

_WHITESPACE = re.compile(r"[ \t\r\n\f\v]+")
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")
_BODY = re.compile(r"[A-Za-z0-9+/]*")


def decode_b64(text: str) -> bytes:
    """Decode base64 text (padded, unpadded, url-safe, whitespace tolerant); raise DecodeError on garbage."""
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (ValueError, TypeError):
        return _decode_tolerant(text)


def encode_b64(data: bytes) -> str:
    """Return the canonical (standard alphabet, padded) base64 text of `data`."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _decode_tolerant(text: str) -> bytes:
    """Decode base64 that is not in strict standard form, or raise DecodeError saying why."""
    if not isinstance(text, str):
        raise DecodeError(f"base64 payload must be text, not {type(text).__name__}")
    if len(text) % 4 in (2, 3):  # most often: standard alphabet, padding left off
        try:
            return binascii.a2b_base64(text + "=" * (4 - len(text) % 4), strict_mode=True)
        except ValueError:
            pass
    body = _WHITESPACE.sub("", text).translate(_URLSAFE_TO_STANDARD).rstrip("=")
    if _BODY.fullmatch(body) is None:
        bad = next(ch for ch in body if _BODY.fullmatch(ch) is None)
        raise DecodeError(f"payload is not base64: unexpected character {bad!r}")
    if len(body) % 4 == 1:
        raise DecodeError(
            f"payload is not base64: {len(body)} significant characters cannot encode whole bytes"
        )
    padded = body + "=" * (-len(body) % 4)
    try:
        return binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error as exc:  # pragma: no cover - the checks above leave nothing for it to reject
        raise DecodeError(f"payload is not base64: {exc}") from None
