"""Generate the compact built-in object model (objects.json) from the LwM2M registry JSON schema.

Usage::

    python -m workers.decoding.build_model /work/shared/reference/lwm2m-registry.schema.json \\
        > workers/decoding/objects.json

The schema (NordicSemiconductor lwm2m-types-js, BSD-3-Clause, built from the OMA LwM2M registry) keys
objects as ``ID``, ``ID:OBJVER``, ``ID@LWM2MVER`` or ``ID:OBJVER@LWM2MVER``; the newest object version
of each id wins. It describes resources by JSON types, which lose LwM2M types; this generator maps them
back as far as the schema allows:

- ``number`` -> float; ``integer`` with ``unixTimestamp`` -> time;
- ``integer`` with minimum 0 and maximum 1 -> boolean (the schema's converter writes LwM2M Boolean that
  way; the rare Integer resources with range 0..1 are corrected in OVERRIDES);
- other ``integer`` -> integer (Unsigned Integer is indistinguishable; corrected in OVERRIDES);
- ``string`` with pattern ``^dd:dd$`` -> objlnk; with the RFC 6690 link pattern -> corelnk;
- other ``string`` -> string (Opaque is indistinguishable; corrected in OVERRIDES);
- ``array`` -> the item's type, multiple; executable resources are absent from the schema (added for
  the core objects in OVERRIDES with type ``none``).

OVERRIDES then sets the facts the JSON types lose, taken from the OMA object definitions, plus the
facts the decoder's behaviour is pinned to (so a newer schema cannot silently change them). Edit the
tables here, never objects.json by hand, and regenerate.
"""

import json
import re
import sys
from collections.abc import Mapping
from typing import Any

# (object id, resource id) -> (name, type, multiple). Applied after the schema mapping.
ResourceEntry = tuple[str, str, bool]

OBJECT_NAMES: dict[int, str] = {
    0: "LwM2M Security",  # not in the schema (it omits the bootstrap-only Security object)
}

OVERRIDES: dict[tuple[int, int], ResourceEntry] = {
    # --- 0 LwM2M Security (OMA 0.xml, object version 1.2): absent from the schema.
    (0, 0): ("LwM2M Server URI", "string", False),
    (0, 1): ("Bootstrap-Server", "boolean", False),
    (0, 2): ("Security Mode", "integer", False),
    (0, 3): ("Public Key or Identity", "opaque", False),
    (0, 4): ("Server Public Key", "opaque", False),
    (0, 5): ("Secret Key", "opaque", False),
    (0, 6): ("SMS Security Mode", "integer", False),
    (0, 7): ("SMS Binding Key Parameters", "opaque", False),
    (0, 8): ("SMS Binding Secret Key(s)", "opaque", False),
    (0, 9): ("LwM2M Server SMS Number", "string", False),
    (0, 10): ("Short Server ID", "integer", False),
    (0, 11): ("Client Hold Off Time", "integer", False),
    (0, 12): ("Bootstrap-Server Account Timeout", "integer", False),
    (0, 13): ("Matching Type", "unsigned", False),
    (0, 14): ("SNI", "string", False),
    (0, 15): ("Certificate Usage", "unsigned", False),
    (0, 16): ("DTLS/TLS Ciphersuite", "unsigned", True),
    (0, 17): ("OSCORE Security Mode", "objlnk", False),
    (0, 18): ("Groups To Use by Client", "unsigned", True),
    (0, 19): ("Signature Algorithms Supported by Server", "unsigned", True),
    (0, 20): ("Signature Algorithms To Use by Client", "unsigned", True),
    (0, 21): ("Signature Algorithm Certs Supported by Server", "unsigned", True),
    (0, 22): ("TLS 1.3 Features To Use by Client", "unsigned", False),
    (0, 23): ("TLS Extensions Supported by Server", "unsigned", False),
    (0, 24): ("TLS Extensions To Use by Client", "unsigned", False),
    (0, 25): ("Secondary LwM2M Server URI", "string", True),
    (0, 26): ("MQTT Server", "objlnk", False),
    (0, 27): ("LwM2M COSE Security", "objlnk", True),
    (0, 28): ("RDS Destination Port", "integer", False),
    (0, 29): ("RDS Source Port", "integer", False),
    (0, 30): ("RDS Application ID", "string", False),
    # --- 1 LwM2M Server (OMA 1.xml 1.2): executables, Unsigned Integers, an Integer with range 0..1.
    (1, 0): ("Short Server ID", "integer", False),
    (1, 4): ("Disable", "none", False),
    (1, 6): ("Notification Storing When Disabled or Offline", "boolean", False),
    (1, 8): ("Registration Update Trigger", "none", False),
    (1, 9): ("Bootstrap-Request Trigger", "none", False),
    (1, 11): ("TLS-DTLS Alert Code", "unsigned", False),
    (1, 13): ("Registration Priority Order", "unsigned", False),
    (1, 14): ("Initial Registration Delay Timer", "unsigned", False),
    (1, 17): ("Communication Retry Count", "unsigned", False),
    (1, 18): ("Communication Retry Timer", "unsigned", False),
    (1, 19): ("Communication Sequence Delay Timer", "unsigned", False),
    (1, 20): ("Communication Sequence Retry Count", "unsigned", False),
    (1, 26): ("Default Notification Mode", "integer", False),  # Integer 0..1 (0 = NON, 1 = CON)
    (1, 27): ("Profile ID Hash Algorithm", "unsigned", False),
    # --- 3 Device (OMA 3.xml 1.2): executables; the rest pinned.
    (3, 0): ("Manufacturer", "string", False),
    (3, 1): ("Model Number", "string", False),
    (3, 2): ("Serial Number", "string", False),
    (3, 3): ("Firmware Version", "string", False),
    (3, 4): ("Reboot", "none", False),
    (3, 5): ("Factory Reset", "none", False),
    (3, 6): ("Available Power Sources", "integer", True),
    (3, 7): ("Power Source Voltage", "integer", True),
    (3, 8): ("Power Source Current", "integer", True),
    (3, 9): ("Battery Level", "integer", False),
    (3, 11): ("Error Code", "integer", True),
    (3, 12): ("Reset Error Code", "none", False),
    (3, 13): ("Current Time", "time", False),
    (3, 14): ("UTC Offset", "string", False),
    (3, 16): ("Supported Binding and Modes", "string", False),
    (3, 22): ("ExtDevInfo", "objlnk", True),
    # --- 5 Firmware Update (OMA 5.xml): Package is Opaque; executables; 1.0's resource 4.
    (5, 0): ("Package", "opaque", False),
    (5, 2): ("Update", "none", False),
    (5, 4): ("Update Supported Objects", "boolean", False),  # object version 1.0 (dropped in 1.1)
    (5, 10): ("Cancel", "none", False),
    (5, 13): ("Maximum Defer Period", "unsigned", False),
    (5, 14): ("Automatic Upgrade at Download", "boolean", False),
    # --- 6 Location: Velocity is Opaque (3GPP TS 23.032 encoding).
    (6, 4): ("Velocity", "opaque", False),
    # --- 7 Connectivity Statistics: executables.
    (7, 6): ("Start", "none", False),
    (7, 7): ("Stop", "none", False),
    # --- IPSO objects the decoder is tested against (pinned).
    (3303, 5700): ("Sensor Value", "float", False),
    (3303, 5601): ("Min Measured Value", "float", False),
    (3303, 5602): ("Max Measured Value", "float", False),
    (3303, 5701): ("Sensor Units", "string", False),
    (3303, 5750): ("Application Type", "string", False),
    (3304, 5700): ("Sensor Value", "float", False),
    (3311, 5706): ("Colour", "string", False),
    (3311, 5750): ("Application Type", "string", False),
    (3311, 5850): ("On/Off", "boolean", False),
    (3311, 5851): ("Dimmer", "integer", False),
    (3200, 5500): ("Digital Input State", "boolean", False),
    (3342, 5500): ("Digital Input State", "boolean", False),
    (3347, 5500): ("Digital Input State", "boolean", False),
}

_KEY = re.compile(r"(\d+)(?::(\d+(?:\.\d+)*))?(?:@(\d+(?:\.\d+)*))?")
_OBJLNK_PATTERN = "^dd:dd$"
_CORELNK_PREFIX = "^</"


def parse_key(key: str) -> tuple[int, tuple[int, ...], tuple[int, ...]] | None:
    """Parse a schema key `ID[:OBJVER][@LWM2MVER]` into (id, object version, LwM2M version)."""
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    obj_ver, lwm2m_ver = match.group(2) or "1.0", match.group(3) or "1.0"
    return int(match.group(1)), _version(obj_ver), _version(lwm2m_ver)


def _version(text: str) -> tuple[int, ...]:
    """Turn '1.2' into (1, 2)."""
    return tuple(int(part) for part in text.split("."))


def newest_objects(properties: Mapping[str, Any]) -> dict[int, Mapping[str, Any]]:
    """Return the newest schema definition of each object id."""
    best: dict[int, tuple[tuple[tuple[int, ...], tuple[int, ...]], Mapping[str, Any]]] = {}
    for key, definition in properties.items():
        parsed = parse_key(key)
        if parsed is None or not isinstance(definition, Mapping):
            continue
        obj_id, obj_ver, lwm2m_ver = parsed
        if obj_id not in best or (obj_ver, lwm2m_ver) > best[obj_id][0]:
            best[obj_id] = ((obj_ver, lwm2m_ver), definition)
    return {obj_id: definition for obj_id, (_, definition) in best.items()}


def resource_type(prop: Mapping[str, Any]) -> ResourceEntry | None:
    """Map one schema resource property to (name, LwM2M type, multiple), or None if unmappable."""
    multiple = prop.get("type") == "array"
    item = prop.get("items", {}) if multiple else prop
    jtype = item.get("type")
    if jtype == "number":
        ltype = "float"
    elif jtype == "integer" and item.get("unixTimestamp"):
        ltype = "time"
    elif jtype == "integer" and item.get("minimum") == 0 and item.get("maximum") == 1:
        ltype = "boolean"
    elif jtype == "integer":
        ltype = "integer"
    elif jtype == "string" and item.get("pattern") == _OBJLNK_PATTERN:
        ltype = "objlnk"
    elif jtype == "string" and str(item.get("pattern", "")).startswith(_CORELNK_PREFIX):
        ltype = "corelnk"
    elif jtype == "string":
        ltype = "string"
    elif jtype == "boolean":
        ltype = "boolean"
    else:
        return None
    return str(prop.get("title", "")).strip(), ltype, multiple


def build(schema: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """Build the compact model {obj_id: {"name", "resources": {res_id: [name, type, multiple]}}}."""
    model: dict[int, dict[str, Any]] = {}
    for obj_id, definition in newest_objects(schema.get("properties", {})).items():
        obj = definition.get("items", definition) if definition.get("type") == "array" else definition
        resources: dict[int, list[Any]] = {}
        for res_key, prop in obj.get("properties", {}).items():
            entry = resource_type(prop) if res_key.isdigit() else None
            if entry is not None:
                resources[int(res_key)] = list(entry)
        model[obj_id] = {
            "name": str(obj.get("title", definition.get("title", ""))).strip(),
            "resources": resources,
        }
    for obj_id, name in OBJECT_NAMES.items():
        model.setdefault(obj_id, {"name": name, "resources": {}})["name"] = name
    for (obj_id, res_id), entry in OVERRIDES.items():
        obj_entry = model.setdefault(obj_id, {"name": f"Object {obj_id}", "resources": {}})
        obj_entry["resources"][res_id] = list(entry)
    return model


HEADER = (
    "Generated by `python -m workers.decoding.build_model lwm2m-registry.schema.json`; do not edit: "
    "change OVERRIDES in build_model.py and regenerate. Derived from the LwM2M registry JSON schema, "
    "Copyright (c) 2022-2023 Nordic Semiconductor ASA, BSD-3-Clause (see objects.LICENSE), built from "
    "the OMA LwM2M object registry."
)


def render(model: Mapping[int, Mapping[str, Any]]) -> str:
    """Render the model as JSON, one object per line, sorted by id, for small diffs."""
    lines = [f'  "_comment": {json.dumps(HEADER)}']
    for obj_id in sorted(model):
        obj = model[obj_id]
        resources = {str(rid): obj["resources"][rid] for rid in sorted(obj["resources"])}
        body = json.dumps(
            {"name": obj["name"], "resources": resources}, ensure_ascii=False, separators=(",", ":")
        )
        lines.append(f'  "{obj_id}": {body}')
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main(argv: list[str] | None = None) -> int:
    """Read the schema named on the command line and print objects.json to stdout."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m workers.decoding.build_model SCHEMA.json > objects.json", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as fh:
        schema = json.load(fh)
    sys.stdout.write(render(build(schema)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
