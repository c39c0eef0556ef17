"""The object model: built-in facts, user object files, and the generator that builds objects.json."""

import json
from pathlib import Path

import pytest

from workers.decoding import (
    ObjectModelError,
    ResourceDef,
    build_model,
    default_object_model,
    load_object_model,
)
from workers.decoding.model import RESOURCE_TYPES, model_from_compact

MODEL = default_object_model()
PACKAGE = Path(build_model.__file__).parent
SCHEMA = Path(__file__).resolve().parents[4] / "shared" / "reference" / "lwm2m-registry.schema.json"


@pytest.mark.parametrize(
    ("obj", "res", "name", "rtype", "multiple"),
    [
        (3, 0, "Manufacturer", "string", False),
        (3, 1, "Model Number", "string", False),
        (3, 2, "Serial Number", "string", False),
        (3, 3, "Firmware Version", "string", False),
        (3, 4, "Reboot", "none", False),
        (3, 6, "Available Power Sources", "integer", True),
        (3, 7, "Power Source Voltage", "integer", True),
        (3, 8, "Power Source Current", "integer", True),
        (3, 11, "Error Code", "integer", True),
        (3, 13, "Current Time", "time", False),
        (3, 22, "ExtDevInfo", "objlnk", True),
        (0, 3, "Public Key or Identity", "opaque", False),
        (1, 0, "Short Server ID", "integer", False),
        (1, 6, "Notification Storing When Disabled or Offline", "boolean", False),
        (1, 11, "TLS-DTLS Alert Code", "unsigned", False),
        (1, 26, "Default Notification Mode", "integer", False),
        (5, 0, "Package", "opaque", False),
        (6, 4, "Velocity", "opaque", False),
        (3303, 5700, "Sensor Value", "float", False),
        (3303, 5601, "Min Measured Value", "float", False),
        (3303, 5602, "Max Measured Value", "float", False),
        (3303, 5701, "Sensor Units", "string", False),
        (3303, 5750, "Application Type", "string", False),
        (3304, 5700, "Sensor Value", "float", False),
        (3311, 5850, "On/Off", "boolean", False),
        (3311, 5851, "Dimmer", "integer", False),
        (3311, 5706, "Colour", "string", False),
        (3200, 5500, "Digital Input State", "boolean", False),
    ],
)
def test_model_knows_the_core_and_common_ipso_resources(obj, res, name, rtype, multiple):
    assert MODEL.resource(obj, res) == ResourceDef(res, name, rtype, multiple)


def test_model_ipso_sensor_values_in_3300_to_3350_are_floats():
    sensors = [oid for oid in range(3300, 3351) if MODEL.resource(oid, 5700) is not None]
    assert len(sensors) > 20
    assert {MODEL.resource(oid, 5700).type for oid in sensors} == {"float"}  # type: ignore[union-attr]


def test_model_object_names_and_unknowns():
    assert MODEL.object_name(3) == "Device"
    assert MODEL.object_name(3303) == "Temperature"
    assert MODEL.object_name(0) == "LwM2M Security"
    assert MODEL.object_name(65000) is None
    assert MODEL.resource(3, 9999) is None
    assert MODEL.resource(65000, 0) is None


def test_model_uses_only_known_types():
    assert {d.type for obj in MODEL.object_ids() for d in MODEL.resources_of(obj)} <= RESOURCE_TYPES


def test_default_model_is_cached():
    assert default_object_model() is MODEL


def test_builtin_model_file_is_compact():
    assert (PACKAGE / "objects.json").stat().st_size < 400_000


def write(tmp_path: Path, name: str, doc: object) -> str:
    """Write a JSON document to a file and return its path."""
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc, encoding="utf-8")
    return str(path)


def test_user_file_adds_objects_and_overrides_resources_keeping_the_rest(tmp_path):
    user = write(
        tmp_path,
        "vendor.json",
        {
            "_comment": "ignored",
            "26241": {"name": "Vendor Sensor", "resources": {"1": ["Reading", "float", False]}},
            "3": {"resources": {"9": {"name": "Battery", "type": "float"}}},
        },
    )
    model = load_object_model([user])
    assert model.object_name(26241) == "Vendor Sensor"
    assert model.resource(26241, 1) == ResourceDef(1, "Reading", "float", False)
    assert model.resource(3, 9) == ResourceDef(9, "Battery", "float", False)
    assert model.resource(3, 13) == MODEL.resource(3, 13)
    assert MODEL.resource(3, 9).type == "integer"  # type: ignore[union-attr]


def test_later_user_files_win(tmp_path):
    first = write(tmp_path, "a.json", {"9000": {"name": "A", "resources": {"1": ["x", "string", False]}}})
    second = write(tmp_path, "b.json", {"9000": {"name": "B", "resources": {"1": ["x", "integer", True]}}})
    model = load_object_model([first, second])
    assert model.object_name(9000) == "B"
    assert model.resource(9000, 1) == ResourceDef(1, "x", "integer", True)


def test_a_single_file_name_is_not_taken_for_a_list_of_characters(tmp_path):
    user = write(tmp_path, "one.json", {"9001": {"name": "One", "resources": {}}})
    assert load_object_model(user).object_name(9001) == "One"  # type: ignore[arg-type]


def test_no_user_files_is_the_builtin_model():
    assert load_object_model() is MODEL


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("{", "is not valid JSON"),
        ([], "top level must be a JSON object"),
        ({"x": {}}, "object 'x': id must be a decimal number"),
        ({"70000": {}}, "id must be at most 65535"),
        ({"1": []}, "object '1': must be a JSON object"),
        ({"1": {"name": 5}}, "'name' must be a string"),
        ({"1": {"resources": []}}, "'resources' must be a JSON object"),
        ({"1": {"resources": {"0": ["n", "double", False]}}}, "resource '0': type 'double' is not one of"),
        ({"1": {"resources": {"0": ["n", "string"]}}}, "must be [name, type, multiple]"),
        ({"1": {"resources": {"0": ["n", "string", "no"]}}}, "multiple must be true or false"),
        ({"1": {"resources": {"0": [1, "string", False]}}}, "name must be a string"),
        ({"1": {"resources": {"0": "string"}}}, "must be [name, type, multiple] or an object"),
    ],
)
def test_bad_user_file_raises_an_error_naming_the_file_and_problem(tmp_path, doc, message):
    path = write(tmp_path, "bad.json", doc)
    with pytest.raises(ObjectModelError, match=r"bad\.json") as caught:
        load_object_model([path])
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_missing_user_file_raises_an_error_naming_it(tmp_path):
    with pytest.raises(ObjectModelError, match=r"nope\.json: cannot read object file"):
        load_object_model([str(tmp_path / "nope.json")])


def test_non_utf8_user_file_raises_an_error_naming_it(tmp_path):
    path = tmp_path / "latin.json"
    path.write_bytes(b'{"1": {"name": "\xe9"}}')
    with pytest.raises(ObjectModelError, match=r"latin\.json: object file is not UTF-8"):
        load_object_model([str(path)])


# --- the generator ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "parsed"),
    [
        ("3", (3, (1, 0), (1, 0))),
        ("3303:1.1", (3303, (1, 1), (1, 0))),
        ("24@1.2", (24, (1, 0), (1, 2))),
        ("1:1.2@1.2", (1, (1, 2), (1, 2))),
        ("$schema", None),
    ],
)
def test_build_model_parses_versioned_schema_keys(key, parsed):
    assert build_model.parse_key(key) == parsed


def test_build_model_prefers_the_newest_object_version():
    newest = build_model.newest_objects({"7": {"title": "old"}, "7:1.1@1.1": {"title": "new"}, "7:1.0": {}})
    assert newest == {7: {"title": "new"}}


@pytest.mark.parametrize(
    ("prop", "entry"),
    [
        ({"type": "number", "title": "F"}, ("F", "float", False)),
        ({"type": "integer", "title": "I"}, ("I", "integer", False)),
        ({"type": "integer", "minimum": 0, "maximum": 1, "title": "B"}, ("B", "boolean", False)),
        ({"type": "integer", "minimum": 0, "maximum": 100, "title": "P"}, ("P", "integer", False)),
        ({"type": "integer", "unixTimestamp": True, "title": "T"}, ("T", "time", False)),
        ({"type": "string", "title": "S"}, ("S", "string", False)),
        ({"type": "string", "pattern": "^dd:dd$", "title": "L"}, ("L", "objlnk", False)),
        ({"type": "string", "pattern": '^</[^>]+>(;[^=]+="[^"]+")*$', "title": "C"}, ("C", "corelnk", False)),
        ({"type": "array", "items": {"type": "integer"}, "title": "M"}, ("M", "integer", True)),
        ({"type": "object", "title": "?"}, None),
    ],
)
def test_build_model_maps_schema_json_types_to_lwm2m_types(prop, entry):
    assert build_model.resource_type(prop) == entry


def test_build_model_applies_overrides_and_renders_loadable_json():
    schema = {
        "properties": {
            "3:1.2@1.1": {
                "type": "object",
                "title": "Device",
                "properties": {"9": {"type": "integer", "title": "Battery Level"}},
            },
            "3311": {
                "type": "array",
                "items": {
                    "title": "Light Control",
                    "properties": {"5850": {"type": "integer", "title": "On/Off"}},
                },
            },
        }
    }
    model = model_from_compact(json.loads(build_model.render(build_model.build(schema))), "test")
    assert model.resource(3, 9) == ResourceDef(9, "Battery Level", "integer", False)
    assert model.resource(3, 13) == ResourceDef(13, "Current Time", "time", False)  # from OVERRIDES
    assert model.resource(3311, 5850) == ResourceDef(5850, "On/Off", "boolean", False)
    assert model.object_name(3311) == "Light Control"
    assert model.object_name(0) == "LwM2M Security"


@pytest.mark.skipif(not SCHEMA.exists(), reason="the shared registry schema is not beside the repository")
def test_build_model_regenerates_the_checked_in_objects_json_exactly():
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert build_model.render(build_model.build(schema)) == (PACKAGE / "objects.json").read_text(
        encoding="utf-8"
    )


def test_build_model_main_without_a_schema_prints_usage(capsys):
    assert build_model.main([]) == 2
    assert "usage" in capsys.readouterr().err
