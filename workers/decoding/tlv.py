"""OMA LwM2M TLV (application/vnd.oma.lwm2m+tlv, ct 11542), decoded to the spec (LwM2M 1.0 TS 6.4.3).

Each TLV is a type byte, an identifier, an optional length field and the value:

- type byte bits 7-6: identifier type - 00 object instance, 01 resource instance, 10 multiple resource,
  11 resource with value; bit 5: identifier length (0: 8 bits, 1: 16 bits); bits 4-3: length type (00:
  the length is in bits 2-0, 01/10/11: an 8/16/24-bit length field follows the identifier).
- object instances contain resources and multiple resources; multiple resources contain resource
  instances; resources and resource instances hold values. Any other nesting is rejected.

`decode_tlv(raw, path, model)` returns a mapping from each full path ('/3/0/0', resource instances
'/3/0/11/0') to its typed value, resolving the TLVs against the notification path at any depth:

- '/3': object instances (recursed: their resources and resource instances);
- '/3/0': resources and multiple resources (a single object-instance TLV with id 0 is also accepted);
- '/3/0/11': one resource TLV with id 11, one multiple-resource TLV with id 11, or bare resource instances;
- '/3/0/11/0': one resource-instance TLV with id 0 (or a multiple resource 11 wrapping only it).

Values are typed by the object model. Two senders matter, and both are accepted by default:

- the specification (LwM2M 1.0 TS 6.4.3, Appendix C): integer and time - signed big-endian of 1, 2, 4
  or 8 bytes; unsigned - the same, unsigned; float - IEEE 754 of 4 or 8 bytes (a float32 is rendered
  as the shortest decimal that maps back to the same float32, e.g. 23.4 rather than
  23.399999618530273; NaN and infinities as the strings 'NaN', 'Infinity', '-Infinity'); boolean - one
  byte 0 or 1; string and corelnk - UTF-8 text (base64 text when not valid UTF-8); opaque - base64
  text; objlnk - 4 bytes rendered 'objid:instid';
- mbed Cloud Client (Pelion Device Management Client, on nearly every device of Device Management):
  its serializer (`mbed-client/source/m2mtlvserializer.cpp`) writes only INTEGER, BOOLEAN and TIME
  resources in binary - integers and time as 8 bytes, booleans as 1 byte (older clients: 8) - and
  every other resource, FLOAT included, as the resource's *text*: 24.61 arrives as the ASCII bytes
  ``24.611110687``.

The rule that reads both: a float whose bytes are a decimal number in ASCII (``-12``, ``23.5``,
``1e-3``) is that number, whatever its length - also at 4 or 8 bytes, where reading ``23.5`` as an
IEEE float32 would give 1.0e-8 silently; any other 4 or 8 bytes are IEEE. (A binary float32 whose four
bytes happen to spell such text is a value below 1e-7 or above 1e16 in magnitude, far from any sensor
reading.) A boolean of 8 bytes holding 0 or 1, and the text '0', '1', 'true', 'false', are accepted;
an integer of another length than 1, 2, 4 or 8 whose bytes are decimal text is that number; an objlnk
given as the text 'objid:instid' is kept. `ObjectModel.tlv_strict` (setting `LWM2M_TLV_STRICT=1`)
turns these readings off for fleets that are strictly binary: only the specification's encodings.

Unknown resources (and executable ones, type 'none'): the TLV carries no type, and guessing one is what
the old SDKs got wrong (42 shown as '*', 1.5 as 1069547520). The value is the text when the bytes are
valid, printable UTF-8 (tab, CR and LF allowed), otherwise the canonical base64 of the bytes. Add the
resource to a user object file to have it typed.

Truncated or inconsistent input (a length past the end, a bad nesting, an identifier that contradicts
the path, a value of the wrong size for its type, a duplicate path) raises DecodeError saying what and
where (byte offsets count from the start of the payload).

The encoder (`encode_tlv` for explicit records, `encode_paths` for a path -> value mapping, the exact
inverse of `decode_tlv`) serves tests and the Device Management simulator.
"""

import math
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from workers.decoding.b64 import decode_b64, encode_b64
from workers.decoding.errors import DecodeError
from workers.decoding.limits import MAX_ENTRIES
from workers.decoding.model import ObjectModel, ResourceDef
from workers.decoding.paths import format_path, parse_path
from workers.decoding.values import float32_value, is_float32_exact, json_float, raw_text_or_b64, utf8_or_b64

OBJECT_INSTANCE = 0
RESOURCE_INSTANCE = 1
MULTIPLE_RESOURCE = 2
RESOURCE = 3
KIND_NAMES = ("object instance", "resource instance", "multiple resource", "resource")

_ALLOWED_CHILDREN = {OBJECT_INSTANCE: (RESOURCE, MULTIPLE_RESOURCE), MULTIPLE_RESOURCE: (RESOURCE_INSTANCE,)}
_INT_SIZES = (1, 2, 4, 8)
_F64 = struct.Struct(">d")
_F32 = struct.Struct(">f")
_OBJLNK = struct.Struct(">HH")
_NON_FINITE_TEXT = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
_DECIMAL_TEXT = re.compile(rb"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER_TEXT = re.compile(rb"[+-]?[0-9]+")
_OBJLNK_TEXT = re.compile(r"[0-9]{1,5}:[0-9]{1,5}")
_BOOL_TEXT = {b"0": False, b"1": True, b"false": False, b"true": True}
MAX_LENGTH = 0xFFFFFF
MAX_IDENT = 0xFFFF
_Tree = dict[int, dict[int, dict[int, dict[int | None, Any]]]]  # object -> instance -> resource -> instance


@dataclass(frozen=True, slots=True)
class Tlv:
    """One TLV: its kind (identifier type), identifier, and either a value or child TLVs."""

    kind: int
    ident: int
    value: bytes = b""
    children: tuple["Tlv", ...] = ()
    offset: int = field(default=0, compare=False)


# --- parsing ---------------------------------------------------------------------------------------


def parse_tlv(data: bytes, max_entries: int = MAX_ENTRIES) -> list[Tlv]:
    """Parse a TLV payload into its top-level TLVs (containers parsed recursively); raise DecodeError
    past `max_entries` TLVs, before building more (see workers.decoding.limits)."""
    return _parse_range(data, 0, len(data), None, [max_entries])


def _parse_range(data: bytes, start: int, end: int, parent: Tlv | None, left: list[int]) -> list[Tlv]:
    """Parse the TLVs in data[start:end]; `parent` is the enclosing container, for nesting checks;
    `left` holds how many more TLVs the payload may have."""
    tlvs: list[Tlv] = []
    pos = start
    while pos < end:
        left[0] -= 1
        if left[0] < 0:
            raise DecodeError(f"TLV payload has more than {MAX_ENTRIES} TLVs (byte {pos})")
        tlv, pos = _parse_one(data, pos, end, left)
        if parent is not None and tlv.kind not in _ALLOWED_CHILDREN[parent.kind]:
            raise DecodeError(
                f"TLV inconsistent at byte {tlv.offset}: {KIND_NAMES[parent.kind]} {parent.ident} "
                f"(byte {parent.offset}) cannot contain {KIND_NAMES[tlv.kind]} {tlv.ident}"
            )
        tlvs.append(tlv)
    return tlvs


def _parse_one(data: bytes, pos: int, end: int, left: list[int]) -> tuple[Tlv, int]:
    """Parse the TLV whose type byte is at `pos`; return it and the offset just past it."""
    at = pos
    type_byte = data[pos]
    kind = type_byte >> 6
    id_size = 2 if type_byte & 0x20 else 1
    len_size = (type_byte >> 3) & 0x03
    pos += 1
    if pos + id_size + len_size > end:
        raise DecodeError(
            f"TLV truncated at byte {at}: the {KIND_NAMES[kind]} header needs {1 + id_size + len_size} "
            f"bytes, {end - at} left"
        )
    ident = int.from_bytes(data[pos : pos + id_size], "big")
    pos += id_size
    if len_size:
        length = int.from_bytes(data[pos : pos + len_size], "big")
        pos += len_size
    else:
        length = type_byte & 0x07
    if pos + length > end:
        raise DecodeError(
            f"TLV truncated at byte {at}: {KIND_NAMES[kind]} {ident} declares {length} value bytes, "
            f"{end - pos} left"
        )
    if kind in _ALLOWED_CHILDREN:
        container = Tlv(kind, ident, offset=at)
        children = tuple(_parse_range(data, pos, pos + length, container, left))
        return Tlv(kind, ident, children=children, offset=at), pos + length
    return Tlv(kind, ident, value=bytes(data[pos : pos + length]), offset=at), pos + length


# --- resolving against the notification path ------------------------------------------------------


def decode_tlv(raw: bytes, path: str, model: ObjectModel) -> dict[str, Any]:
    """Decode a TLV payload into {full path: typed value}, resolved against the notification `path`."""
    ids = parse_path(path)
    if ids is None:
        raise DecodeError(f"TLV payload needs an LwM2M path such as /3/0 to resolve against, got {path!r}")
    out: dict[str, Any] = {}
    _RESOLVERS[len(ids)](parse_tlv(raw), ids, model, out)
    return out


def _resolve_object(tlvs: list[Tlv], ids: tuple[int, ...], model: ObjectModel, out: dict[str, Any]) -> None:
    """Path /O: every TLV must be an object instance."""
    for tlv in tlvs:
        _expect(tlv, (OBJECT_INSTANCE,), ids)
        _emit_resources(tlv.children, (ids[0], tlv.ident), model, out)


def _resolve_instance(tlvs: list[Tlv], ids: tuple[int, ...], model: ObjectModel, out: dict[str, Any]) -> None:
    """Path /O/I: resources and multiple resources, optionally wrapped in object instance I."""
    if len(tlvs) == 1 and tlvs[0].kind == OBJECT_INSTANCE:
        _expect_id(tlvs[0], ids[1], ids)
        tlvs = list(tlvs[0].children)
    _emit_resources(tlvs, ids, model, out)


def _resolve_resource(tlvs: list[Tlv], ids: tuple[int, ...], model: ObjectModel, out: dict[str, Any]) -> None:
    """Path /O/I/R: one resource or multiple resource R, or bare resource instances of R."""
    if tlvs and all(tlv.kind == RESOURCE_INSTANCE for tlv in tlvs):
        _emit_instances(tlvs, ids, model, out)
        return
    if len(tlvs) != 1:
        first = tlvs[1] if tlvs else None
        where = f" (second TLV at byte {first.offset})" if first else ""
        raise DecodeError(f"TLV inconsistent: path {format_path(ids)} expects one resource TLV{where}")
    _expect(tlvs[0], (RESOURCE, MULTIPLE_RESOURCE), ids)
    _expect_id(tlvs[0], ids[2], ids)
    _emit_resources(tlvs, ids[:2], model, out)


def _resolve_resource_instance(
    tlvs: list[Tlv], ids: tuple[int, ...], model: ObjectModel, out: dict[str, Any]
) -> None:
    """Path /O/I/R/N: one resource instance N (or a multiple resource R holding only it)."""
    if len(tlvs) == 1 and tlvs[0].kind == MULTIPLE_RESOURCE:
        _expect_id(tlvs[0], ids[2], ids)
        tlvs = list(tlvs[0].children)
    if len(tlvs) != 1:
        raise DecodeError(f"TLV inconsistent: path {format_path(ids)} expects one resource instance TLV")
    _expect(tlvs[0], (RESOURCE_INSTANCE,), ids)
    _expect_id(tlvs[0], ids[3], ids)
    _emit_instances(tlvs, ids[:3], model, out)


_RESOLVERS = {
    1: _resolve_object,
    2: _resolve_instance,
    3: _resolve_resource,
    4: _resolve_resource_instance,
}


def _expect(tlv: Tlv, kinds: tuple[int, ...], ids: tuple[int, ...]) -> None:
    """Raise DecodeError unless the TLV is of one of `kinds`."""
    if tlv.kind not in kinds:
        wanted = " or ".join(KIND_NAMES[k] for k in kinds)
        raise DecodeError(
            f"TLV inconsistent at byte {tlv.offset}: path {format_path(ids)} expects {wanted}, "
            f"found {KIND_NAMES[tlv.kind]} {tlv.ident}"
        )


def _expect_id(tlv: Tlv, ident: int, ids: tuple[int, ...]) -> None:
    """Raise DecodeError unless the TLV's identifier is the one the path names."""
    if tlv.ident != ident:
        raise DecodeError(
            f"TLV inconsistent at byte {tlv.offset}: path {format_path(ids)} names id {ident}, "
            f"the {KIND_NAMES[tlv.kind]} TLV has id {tlv.ident}"
        )


def _emit_resources(
    tlvs: Iterable[Tlv], inst: tuple[int, ...], model: ObjectModel, out: dict[str, Any]
) -> None:
    """Emit the resources (and multiple resources) of object instance `inst` = (O, I)."""
    for tlv in tlvs:
        _expect(tlv, (RESOURCE, MULTIPLE_RESOURCE), inst)
        res_ids = (*inst, tlv.ident)
        if tlv.kind == MULTIPLE_RESOURCE:
            _emit_instances(tlv.children, res_ids, model, out)
        else:
            _put(out, res_ids, tlv, model.resource(inst[0], tlv.ident), model.tlv_strict)


def _emit_instances(
    tlvs: Iterable[Tlv], res_ids: tuple[int, ...], model: ObjectModel, out: dict[str, Any]
) -> None:
    """Emit the resource instances of resource `res_ids` = (O, I, R)."""
    rdef = model.resource(res_ids[0], res_ids[2])
    for tlv in tlvs:
        _put(out, (*res_ids, tlv.ident), tlv, rdef, model.tlv_strict)


def _put(out: dict[str, Any], ids: tuple[int, ...], tlv: Tlv, rdef: ResourceDef | None, strict: bool) -> None:
    """Store the typed value of a leaf TLV under its full path, refusing duplicates."""
    key = format_path(ids)
    if key in out:
        raise DecodeError(f"TLV inconsistent at byte {tlv.offset}: {key} appears twice")
    out[key] = typed_value(tlv.value, rdef, key, strict)


# --- values ----------------------------------------------------------------------------------------


def typed_value(raw: bytes, rdef: ResourceDef | None, where: str, strict: bool = False) -> Any:
    """Decode one TLV value by the resource's LwM2M type (see the module doc for the rules; `strict`:
    the specification's binary encodings only)."""
    rtype = rdef.type if rdef is not None else None
    if rtype in ("integer", "time", "unsigned"):
        if len(raw) in _INT_SIZES:
            return int.from_bytes(raw, "big", signed=rtype != "unsigned")
        if not strict and _INTEGER_TEXT.fullmatch(raw):
            return int(raw)
        raise DecodeError(f"TLV value at {where}: {rtype} needs 1, 2, 4 or 8 bytes, got {len(raw)}")
    if rtype == "float":
        if not strict and _DECIMAL_TEXT.fullmatch(raw):
            return json_float(float(raw))
        if len(raw) == 4:
            return float32_value(raw)
        if len(raw) == 8:
            return json_float(_F64.unpack(raw)[0])
        raise DecodeError(
            f"TLV value at {where}: float needs 4 or 8 bytes or decimal text, got {len(raw)} bytes"
        )
    if rtype == "boolean":
        return _boolean(raw, where, strict)
    if rtype in ("string", "corelnk"):
        return utf8_or_b64(raw)
    if rtype == "opaque":
        return encode_b64(raw)
    if rtype == "objlnk":
        return _objlnk(raw, where, strict)
    return raw_text_or_b64(raw)


def _boolean(raw: bytes, where: str, strict: bool) -> bool:
    """One byte 0 or 1; unless strict also 8 bytes 0 or 1 (older mbed clients) and the text 0/1/true/false."""
    if len(raw) == 1 and raw[0] <= 1:
        return raw[0] == 1
    if not strict:
        if len(raw) == 8 and raw[:7] == bytes(7) and raw[7] <= 1:
            return raw[7] == 1
        if raw.lower() in _BOOL_TEXT:
            return _BOOL_TEXT[raw.lower()]
    raise DecodeError(f"TLV value at {where}: boolean needs one byte 0 or 1, got {raw.hex() or 'nothing'}")


def _objlnk(raw: bytes, where: str, strict: bool) -> str:
    """Four bytes 'objid:instid'; unless strict also that text itself."""
    if len(raw) == 4:
        obj_id, inst_id = _OBJLNK.unpack(raw)
        return f"{obj_id}:{inst_id}"
    text = raw.decode("ascii", "replace")
    if not strict and _OBJLNK_TEXT.fullmatch(text):
        return text
    raise DecodeError(f"TLV value at {where}: objlnk needs 4 bytes, got {len(raw)}")


# --- encoding --------------------------------------------------------------------------------------


def encode_tlv(tlvs: Iterable[Tlv]) -> bytes:
    """Encode TLVs (containers from their children) with the shortest identifier and length fields."""
    return b"".join(_encode_one(tlv) for tlv in tlvs)


def _encode_one(tlv: Tlv) -> bytes:
    """Encode one TLV."""
    body = encode_tlv(tlv.children) if tlv.kind in _ALLOWED_CHILDREN else tlv.value
    return tlv_header(tlv.kind, tlv.ident, len(body)) + body


def tlv_header(kind: int, ident: int, length: int) -> bytes:
    """Return the type byte, identifier and length field for a TLV."""
    if not 0 <= kind <= 3:
        raise ValueError(f"TLV kind must be 0..3, got {kind}")
    if not 0 <= ident <= MAX_IDENT:
        raise ValueError(f"TLV identifier must be 0..{MAX_IDENT}, got {ident}")
    if not 0 <= length <= MAX_LENGTH:
        raise ValueError(f"TLV value must be at most {MAX_LENGTH} bytes, got {length}")
    type_byte = kind << 6
    id_bytes = ident.to_bytes(2 if ident > 0xFF else 1, "big")
    if ident > 0xFF:
        type_byte |= 0x20
    if length <= 7:
        return bytes([type_byte | length]) + id_bytes
    len_size = 1 if length <= 0xFF else 2 if length <= 0xFFFF else 3
    return bytes([type_byte | (len_size << 3)]) + id_bytes + length.to_bytes(len_size, "big")


SPEC = "spec"
MBED = "mbed"
STYLES = (SPEC, MBED)


def encode_value(value: Any, rtype: str | None, style: str = SPEC) -> bytes:
    """Encode one value for a resource of LwM2M type `rtype` (None: inferred from the Python type), as
    the specification's shortest binary (`style` 'spec') or as mbed Cloud Client writes it ('mbed':
    integers and time in 8 bytes, booleans in 1, floats and object links as their text)."""
    rtype = rtype if rtype not in (None, "none") else _infer_type(value)
    if style == MBED:
        mbed = _encode_mbed(value, rtype)
        if mbed is not None:
            return mbed
    if rtype in ("integer", "time", "unsigned"):
        return _encode_int(value, signed=rtype != "unsigned")
    if rtype == "float":
        return _encode_float(value)
    if rtype == "boolean":
        if value not in (True, False):
            raise ValueError(f"boolean resource needs True or False, got {value!r}")
        return b"\x01" if value else b"\x00"
    if rtype == "opaque":
        return bytes(value) if isinstance(value, bytes | bytearray) else decode_b64(str(value))
    if rtype == "objlnk":
        obj_id, inst_id = value.split(":") if isinstance(value, str) else value
        return _OBJLNK.pack(int(obj_id), int(inst_id))
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if not isinstance(value, str):
        raise ValueError(f"{rtype} resource needs text, got {value!r}")
    return value.encode("utf-8")


def _encode_mbed(value: Any, rtype: str) -> bytes | None:
    """mbed Cloud Client's encoding of the types it writes differently from the shortest binary, else None."""
    if rtype in ("integer", "time", "unsigned"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"integer resource needs an int, got {value!r}")
        return value.to_bytes(8, "big", signed=rtype != "unsigned")
    if rtype == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"float resource needs a number, got {value!r}")
        return repr(float(value)).encode("ascii") if math.isfinite(value) else None
    if rtype == "objlnk":
        obj_id, inst_id = value.split(":") if isinstance(value, str) else value
        return f"{int(obj_id)}:{int(inst_id)}".encode("ascii")
    return None


def _infer_type(value: Any) -> str:
    """Pick an LwM2M type for a value of an unknown resource."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, bytes | bytearray):
        return "opaque"
    return "string"


def _encode_int(value: Any, *, signed: bool) -> bytes:
    """Encode an integer in the fewest of 1, 2, 4 or 8 bytes."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"integer resource needs an int, got {value!r}")
    for size in _INT_SIZES:
        try:
            return value.to_bytes(size, "big", signed=signed)
        except OverflowError:
            continue
    raise ValueError(f"integer {value} does not fit in 8 bytes")


def _encode_float(value: Any) -> bytes:
    """Encode a float as float32 when that decodes back to the same value, else float64."""
    if isinstance(value, str) and value in _NON_FINITE_TEXT:
        value = _NON_FINITE_TEXT[value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"float resource needs a number, got {value!r}")
    value = float(value)
    return _F32.pack(value) if is_float32_exact(value) else _F64.pack(value)


def encode_paths(
    values: Mapping[str, Any], path: str, model: ObjectModel | None = None, style: str = SPEC
) -> bytes:
    """Encode {full path: value} as the TLV payload a device sends for a read of `path` (any depth),
    values in `style` ('spec' or 'mbed', see encode_value)."""
    if style not in STYLES:
        raise ValueError(f"TLV style must be one of {', '.join(STYLES)}, got {style!r}")
    base = parse_path(path)
    if base is None:
        raise ValueError(f"not an LwM2M path: {path!r}")
    tree: _Tree = {}
    for key, value in values.items():
        ids = parse_path(key)
        if ids is None or len(ids) < 3 or ids[: len(base)] != base:
            raise ValueError(f"{key!r} is not a resource path under {path!r}")
        slot = tree.setdefault(ids[0], {}).setdefault(ids[1], {}).setdefault(ids[2], {})
        slot[ids[3] if len(ids) == 4 else None] = value
    tlvs = _tree_tlvs(tree, base, model, style)
    return encode_tlv(tlvs)


def _tree_tlvs(tree: _Tree, base: tuple[int, ...], model: ObjectModel | None, style: str) -> list[Tlv]:
    """Build the TLVs for the resource tree at the depth of the `base` path."""
    instances = [
        Tlv(
            OBJECT_INSTANCE,
            inst,
            children=tuple(_resource_tlv(obj, rid, slot, model, style) for rid, slot in res.items()),
        )
        for obj, insts in tree.items()
        for inst, res in insts.items()
    ]
    if len(base) == 1:
        return instances
    resources = [child for inst in instances for child in inst.children]
    if len(base) in (2, 3):
        return resources
    return [child for res in resources for child in res.children]


def _resource_tlv(
    obj: int, rid: int, slot: dict[int | None, Any], model: ObjectModel | None, style: str
) -> Tlv:
    """Build a resource TLV (single value) or a multiple-resource TLV (resource instances)."""
    rdef = model.resource(obj, rid) if model is not None else None
    rtype = rdef.type if rdef is not None else None
    if None in slot:
        if len(slot) > 1:
            raise ValueError(f"/{obj}/x/{rid} is given both as a single value and as resource instances")
        return Tlv(RESOURCE, rid, value=encode_value(slot[None], rtype, style))
    instances = tuple(
        Tlv(RESOURCE_INSTANCE, int(ri), value=encode_value(v, rtype, style))
        for ri, v in slot.items()
        if ri is not None
    )
    return Tlv(MULTIPLE_RESOURCE, rid, children=instances)
