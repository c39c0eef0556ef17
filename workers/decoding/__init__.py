"""The pure, I/O-free decoding core: notification payloads -> JSON-safe values.

`decode_value(payload_b64, ct, path, model)` returns (value, decode_error) and never raises; the rules
per content type are in `workers.decoding.core`, one module per format beside it. The LwM2M object
model that types values is `default_object_model()` (built in, lazily loaded, cached) or
`load_object_model(files)` (user object files merged over it; see `workers.decoding.model`);
`model_for(settings)` is the configured one (LWM2M_OBJECTS, LWM2M_RESOURCE_TYPES, LWM2M_TLV_STRICT).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workers.decoding.b64 import decode_b64, encode_b64
from workers.decoding.core import decode_value, normalize_ct, shape_values
from workers.decoding.errors import DecodeError, ObjectModelError
from workers.decoding.model import ObjectModel, ResourceDef, default_object_model, load_object_model
from workers.decoding.tlv import encode_paths, encode_tlv

if TYPE_CHECKING:
    from app.config import Settings

__all__ = [
    "DecodeError",
    "ObjectModel",
    "ObjectModelError",
    "ResourceDef",
    "decode_b64",
    "decode_value",
    "default_object_model",
    "encode_b64",
    "encode_paths",
    "encode_tlv",
    "load_object_model",
    "model_for",
    "normalize_ct",
    "shape_values",
]


def model_for(settings: Settings) -> ObjectModel:
    """The object model the settings configure: their object files and resource types over the built-in."""
    return load_object_model(
        settings.object_model_files, settings.resource_types, tlv_strict=settings.tlv_strict
    )
