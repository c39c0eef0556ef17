"""decode_value: one item's payload -> (value, decode_error), dispatched by content type. Never raises.

Rules (see each format's module for its details):

- no payload (None or "") or a payload of zero bytes -> (None, None): nothing to decode is not an error
  (registrations carry no payload; an empty notification has no value). A handler that must tell an
  empty string resource apart reads `payload_b64`.
- payload that is not base64 (padded, unpadded, url-safe and whitespace are all accepted) -> decode_error.
- text/plain, a missing or empty ct, ct 0: text typed by the object model (workers.decoding.text);
  application/link-format (40): the text, untyped.
- application/vnd.oma.lwm2m+tlv (11542, legacy 1542): {full path: typed value} (workers.decoding.tlv).
- application/json (50): the parsed document; application/vnd.oma.lwm2m+json (11543, legacy 1543):
  {full path: value}; application/senml+json (110), application/senml+cbor (112): {name: value}
  (workers.decoding.senml); application/cbor (60) and application/vnd.oma.lwm2m+cbor (11544): the item
  as JSON-safe values (workers.decoding.cbor).
- application/octet-stream (42) and any other content type: canonical base64 text of the bytes.

Content types match case-insensitively, parameters (';charset=...') ignored, by name or CoAP number.
On failure the value is None and decode_error says what went wrong and where; any unexpected
exception is caught and reported the same way, so one bad item never aborts a batch.
"""

import binascii
from collections.abc import Callable
from typing import Any

from app.paths import normalize_path
from workers.decoding.b64 import decode_b64, encode_b64
from workers.decoding.cbor import decode_cbor
from workers.decoding.errors import DecodeError
from workers.decoding.jsondoc import decode_json
from workers.decoding.model import ObjectModel, default_object_model
from workers.decoding.senml import decode_lwm2m_json, decode_senml_cbor, decode_senml_json
from workers.decoding.text import decode_text
from workers.decoding.tlv import decode_tlv

Decoder = Callable[[bytes, str, ObjectModel], Any]
_CACHE_LIMIT = 512


def decode_opaque(raw: bytes, path: str, model: ObjectModel) -> str:
    """Render opaque (or unknown) content as canonical base64 text."""
    return encode_b64(raw)


def decode_link_format(raw: bytes, path: str, model: ObjectModel) -> str:
    """Decode application/link-format as UTF-8 text, untyped."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"link-format payload is not valid UTF-8: byte offset {exc.start}") from None


CONTENT_TYPES: dict[str, Decoder] = {
    "text/plain": decode_text,
    "application/link-format": decode_link_format,
    "application/octet-stream": decode_opaque,
    "application/json": decode_json,
    "application/cbor": decode_cbor,
    "application/senml+json": decode_senml_json,
    "application/senml+cbor": decode_senml_cbor,
    "application/vnd.oma.lwm2m+tlv": decode_tlv,
    "application/vnd.oma.lwm2m+json": decode_lwm2m_json,
    "application/vnd.oma.lwm2m+cbor": decode_cbor,
}
CONTENT_FORMATS: dict[int, str] = {
    0: "text/plain",
    40: "application/link-format",
    42: "application/octet-stream",
    50: "application/json",
    60: "application/cbor",
    110: "application/senml+json",
    112: "application/senml+cbor",
    1542: "application/vnd.oma.lwm2m+tlv",
    1543: "application/vnd.oma.lwm2m+json",
    11542: "application/vnd.oma.lwm2m+tlv",
    11543: "application/vnd.oma.lwm2m+json",
    11544: "application/vnd.oma.lwm2m+cbor",
}
_decoder_cache: dict[Any, Decoder] = {None: decode_text, "": decode_text}


def normalize_ct(ct: str | int | None) -> str:
    """Return the canonical media type for a ct given by name or CoAP number ('' when missing)."""
    if ct is None:
        return ""
    text = str(ct).split(";", 1)[0].strip().lower()
    if text.isascii() and text.isdigit():
        return CONTENT_FORMATS.get(int(text), text)
    return text


def decoder_for(ct: str | int | None) -> Decoder:
    """Return the decoder for a content type (cached; unknown types decode as opaque)."""
    decoder = _decoder_cache.get(ct)
    if decoder is None:
        name = normalize_ct(ct)
        decoder = decode_text if name == "" else CONTENT_TYPES.get(name, decode_opaque)
        if len(_decoder_cache) < _CACHE_LIMIT:
            _decoder_cache[ct] = decoder
    return decoder


PATH_MAP_TYPES = frozenset(
    {
        "application/vnd.oma.lwm2m+tlv",
        "application/vnd.oma.lwm2m+json",
        "application/senml+json",
        "application/senml+cbor",
    }
)


def shape_values(decoded: Any, ct: str | int | None, path: str) -> tuple[Any, dict[str, Any]]:
    """(value, values) for handlers, the same shape for every content type.

    ``values`` maps full path -> typed value, always a dict: the decoded map of the path-keyed formats
    (TLV, LwM2M JSON, SenML JSON/CBOR; its keys normalised like Event.path), or one entry
    {path: decoded value} for every other format; {} when there is no value (no payload, or a
    decode_error). ``value`` is the scalar whenever the event's path names one resource (or resource
    instance) present in that map, whatever the content type, so a handler on /3303/0/5700 reads the
    same 19.05 from a text device and a TLV device; otherwise (an object or instance path, a
    multiple resource, an empty map) ``value`` is the map itself, or the one decoded value."""
    if decoded is None:
        return None, {}
    if isinstance(decoded, dict) and normalize_ct(ct) in PATH_MAP_TYPES:
        if path not in decoded and path:
            path = normalize_path(path)
        return decoded.get(path, decoded), decoded
    return decoded, {normalize_path(path) if path else path: decoded}


def decode_value(
    payload_b64: str | None, ct: str | None, path: str, model: ObjectModel | None = None
) -> tuple[Any, str | None]:
    """Decode one item's payload to (value, decode_error). Never raises."""
    if not payload_b64:
        return None, None
    try:
        try:
            raw = binascii.a2b_base64(payload_b64, strict_mode=True)
        except (ValueError, TypeError):
            raw = decode_b64(payload_b64)
        if not raw:
            return None, None
        decoder = _decoder_cache.get(ct) or decoder_for(ct)
        return decoder(raw, path, default_object_model() if model is None else model), None
    except DecodeError as exc:
        return None, str(exc)
    except Exception as exc:
        return None, f"could not decode payload ({type(exc).__name__}: {exc})"
