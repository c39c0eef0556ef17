"""SenML (RFC 8428) in JSON (ct 110) and CBOR (ct 112), and OMA LwM2M JSON (ct 11543): path -> value.

SenML: the payload is an array of records (a single record object is accepted too). Base fields (bn,
bt, bv, bs, bu, bver) apply to their record and every later one until replaced. A record's name is
bn + n (plain concatenation, as RFC 8428 says; an empty result falls back to the notification path);
its value is, in this order: bv + v (numbers), vs (text), vb (boolean), vd (data, rendered as
canonical base64), vlo (the LwM2M object-link extension, 'objid:instid'), bs + s (a sum); a record
with none of these only carries base fields and yields nothing. In CBOR the labels are the RFC's
integers (-2 = bn, 0 = n, 2 = v, 8 = vd, ...) and vd is a byte string.

LwM2M JSON (LwM2M 1.0 TS 6.4.4): {"bn": "/3/0/", "bt": ..., "e": [{"n": "0", "sv": ...}, ...]}, values
in v (number), bv (boolean), sv (text; base64 for opaque), ov (object link). As in SenML, the name is
bn + n appended as text, nothing inserted: bn "/3/0/1" + n "1/0" is /3/0/11/0 (Leshan's
"cut basename in the middle of an id" case), bn "1024/0/" + n "0" is /1024/0/0, bn "/" + n "3/0/0" is
/3/0/0; an entry without n is bn itself (a time series of one resource). Without bn, a name starting
with '/' is absolute and any other is relative to the notification path (the old Connector clients
sent {"e": [{"n": "0", ...}]} on /3/0). An empty "e" is an empty map; a document without "e" an error.

Names that are LwM2M paths are normalised (`app.paths.normalize_path`: one leading '/', no trailing
one), so the keys of the map are the same spelling as an Event's `path` in every format.

When a name appears more than once (a time series), the value with the latest time (bt + t) wins; on
equal times the later record wins. Numbers are adjusted to the resource's type from the object model
when nothing is lost (25 for a float resource -> 25.0, 3.0 for an integer resource -> 3, 0/1 for a
boolean resource -> false/true). Malformed records raise DecodeError naming the record's index.
"""

from typing import Any

from app.paths import normalize_path
from workers.decoding.b64 import decode_b64, encode_b64
from workers.decoding.cbor import parse_cbor, to_json_safe
from workers.decoding.errors import DecodeError
from workers.decoding.jsondoc import parse_json
from workers.decoding.limits import MAX_ENTRIES, check_records_bytes
from workers.decoding.model import ObjectModel
from workers.decoding.paths import resource_key
from workers.decoding.values import coerce_number, json_float

_CBOR_LABELS = {
    "-1": "bver",
    "-2": "bn",
    "-3": "bt",
    "-4": "bu",
    "-5": "bv",
    "-6": "bs",
    "0": "n",
    "1": "u",
    "2": "v",
    "3": "vs",
    "4": "vb",
    "5": "s",
    "6": "t",
    "7": "ut",
    "8": "vd",
}
_BASE_FIELDS = ("bn", "bt", "bv", "bs")
_NO_VALUE = object()


class _Results:
    """Collect name -> value, keeping the latest by time for repeated names."""

    def __init__(self, path: str, model: ObjectModel) -> None:
        """Start an empty result for a notification on `path`."""
        self.path = path
        self.model = model
        self.values: dict[str, Any] = {}
        self.times: dict[str, float] = {}

    def add(self, name: str, value: Any, time: float) -> None:
        """Record `value` for `name` unless a later-timed value is already there."""
        name = name or self.path
        key = resource_key(name)
        if key is not None:
            name = normalize_path(name)
        if name in self.times and time < self.times[name]:
            return
        if key is not None:
            rdef = self.model.resource_by_key(key)
            value = coerce_number(value, rdef.type if rdef is not None else None)
        self.values.pop(name, None)
        self.values[name] = value
        self.times[name] = time


def _number(value: Any, field: str, index: int) -> float:
    """Return `value` if it is a number (not a boolean), else raise DecodeError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DecodeError(f"record {index}: {field} must be a number, got {value!r}")
    return value


def _text(value: Any, field: str, index: int) -> str:
    """Return `value` if it is text, else raise DecodeError."""
    if not isinstance(value, str):
        raise DecodeError(f"record {index}: {field} must be text, got {value!r}")
    return value


def _data(value: Any, index: int) -> str:
    """Render a vd field (base64url text in JSON, bytes in CBOR) as canonical base64."""
    if isinstance(value, bytes):
        return encode_b64(value)
    try:
        return encode_b64(decode_b64(_text(value, "vd", index)))
    except DecodeError as exc:
        raise DecodeError(f"record {index}: vd is not base64: {exc}") from None


def _senml_value(record: dict[str, Any], base: dict[str, Any], index: int) -> Any:
    """Return the record's value per RFC 8428, or _NO_VALUE when it carries none."""
    if "v" in record:
        value = _number(record["v"], "v", index) + _number(base.get("bv", 0), "bv", index)
        return json_float(value) if isinstance(value, float) else value
    if "vs" in record:
        return _text(record["vs"], "vs", index)
    if "vb" in record:
        if not isinstance(record["vb"], bool):
            raise DecodeError(f"record {index}: vb must be true or false, got {record['vb']!r}")
        return record["vb"]
    if "vd" in record:
        return _data(record["vd"], index)
    if "vlo" in record:
        return _text(record["vlo"], "vlo", index)
    if "s" in record:
        value = _number(record["s"], "s", index) + _number(base.get("bs", 0), "bs", index)
        return json_float(value) if isinstance(value, float) else value
    return _NO_VALUE


def senml_records(records: Any, path: str, model: ObjectModel) -> dict[str, Any]:
    """Resolve SenML records (already parsed, text labels) into {name: value}."""
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list):
        raise DecodeError("SenML payload must be an array of records")
    if len(records) > MAX_ENTRIES:
        raise DecodeError(f"SenML payload has more than {MAX_ENTRIES} records")
    base: dict[str, Any] = {}
    results = _Results(path, model)
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DecodeError(f"record {index}: must be an object, got {type(record).__name__}")
        base.update({k: record[k] for k in _BASE_FIELDS if k in record})
        value = _senml_value(record, base, index)
        if value is _NO_VALUE:
            continue
        name = _text(base.get("bn", ""), "bn", index) + _text(record.get("n", ""), "n", index)
        time = _number(base.get("bt", 0), "bt", index) + _number(record.get("t", 0), "t", index)
        results.add(name, value, time)
    return results.values


def decode_senml_json(raw: bytes, path: str, model: ObjectModel) -> dict[str, Any]:
    """Decode an application/senml+json payload into {name: value}."""
    check_records_bytes(raw, "SenML JSON")
    return senml_records(parse_json(raw, "SenML JSON"), path, model)


def decode_senml_cbor(raw: bytes, path: str, model: ObjectModel) -> dict[str, Any]:
    """Decode an application/senml+cbor payload into {name: value}."""
    item = parse_cbor(raw, "SenML CBOR", max_maps=MAX_ENTRIES)
    if isinstance(item, list):
        item = [_relabel(rec) if isinstance(rec, dict) else rec for rec in item]
    elif isinstance(item, dict):
        item = _relabel(item)
    return senml_records(to_json_safe(item, len(raw)), path, model)


def _relabel(record: dict[Any, Any]) -> dict[str, Any]:
    """Map SenML CBOR integer labels to the JSON field names."""
    return {_CBOR_LABELS.get(str(k), str(k)): v for k, v in record.items()}


# --- OMA LwM2M JSON --------------------------------------------------------------------------------


def _lwm2m_name(base_name: str | None, name: str, path: str) -> str:
    """An LwM2M JSON entry's full name: bn + n as text; without bn, n absolute or relative to `path`."""
    if base_name is None:
        if name.startswith("/"):
            return name
        return normalize_path(f"{path}/{name}") if name else path
    return normalize_path(base_name + name)


def _lwm2m_value(entry: dict[str, Any], index: int) -> Any:
    """Return an LwM2M JSON entry's value from v, bv, sv or ov."""
    if "v" in entry:
        value = _number(entry["v"], "v", index)
        return json_float(value) if isinstance(value, float) else value
    if "bv" in entry:
        if not isinstance(entry["bv"], bool):
            raise DecodeError(f"record {index}: bv must be true or false, got {entry['bv']!r}")
        return entry["bv"]
    if "sv" in entry:
        return _text(entry["sv"], "sv", index)
    if "ov" in entry:
        return _text(entry["ov"], "ov", index)
    raise DecodeError(f"record {index}: has no value (v, bv, sv or ov)")


def decode_lwm2m_json(raw: bytes, path: str, model: ObjectModel) -> dict[str, Any]:
    """Decode an application/vnd.oma.lwm2m+json payload into {path: value}."""
    check_records_bytes(raw, "LwM2M JSON")
    doc = parse_json(raw, "LwM2M JSON")
    if not isinstance(doc, dict) or not isinstance(doc.get("e"), list):
        raise DecodeError('LwM2M JSON payload must be an object with an "e" array')
    if len(doc["e"]) > MAX_ENTRIES:
        raise DecodeError(f"LwM2M JSON payload has more than {MAX_ENTRIES} entries")
    base_name = _text(doc["bn"], "bn", -1) if "bn" in doc else None
    base_time = _number(doc.get("bt", 0), "bt", -1)
    results = _Results(path, model)
    for index, entry in enumerate(doc["e"]):
        if not isinstance(entry, dict):
            raise DecodeError(f"record {index}: must be an object, got {type(entry).__name__}")
        name = _lwm2m_name(base_name, _text(entry.get("n", ""), "n", index), path)
        time = base_time + _number(entry.get("t", 0), "t", index)
        results.add(name, _lwm2m_value(entry, index), time)
    return results.values
