"""The LwM2M object model: object names and, per resource, its name, LwM2M type and multiplicity.

The built-in model is `objects.json` beside this module, generated from the OMA/IPSO registry by
`python -m workers.decoding.build_model` (see that module for the corrections it applies). It is read
lazily, on the first call to `default_object_model()`, and cached.

User object files have the same compact JSON shape and are merged over the built-in model by
`load_object_model(files)`, in order, later files winning::

    {
      "_comment": "keys starting with '_' are ignored",
      "26241": {
        "name": "Vendor Sensor",
        "resources": {
          "1": ["Reading", "float", false],
          "2": {"name": "Samples", "type": "integer", "multiple": true}
        }
      }
    }

Object and resource ids are decimal strings (0..65535). A resource is `[name, type, multiple]` or an
object with `name`, `type` and optional `multiple` (default false); `type` is one of `RESOURCE_TYPES`.
Merging is per resource: a user file that names an object already known replaces that object's name
(when given) and the resources it lists, and keeps the others. Any problem raises `ObjectModelError`
(a `ValueError`) naming the file and the offending object or resource.

Typing by resource id, for objects the model does not list (vendors reuse resources in their own
objects): a lookup of (object, resource) that finds nothing falls back to

1. the user mapping by resource id (`LWM2M_RESOURCE_TYPES`, e.g. ``5700:float,27001:integer``), then
2. the IPSO reusable resources (ids 5500-5999), which have one type in every object that uses them
   (5700 Sensor Value float, 5850 On/Off boolean, 5501 Digital Input Counter integer, ...): the table
   is derived from the built-in registry, keeping each id whose type agrees across all its objects.

A resource the model lists for that object always wins over both.

`tlv_strict` (setting `LWM2M_TLV_STRICT`) makes TLV decoding follow the specification only; by
default it also accepts what mbed Cloud Client sends (see `workers.decoding.tlv`).
"""

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from workers.decoding.errors import ObjectModelError

RESOURCE_TYPES = frozenset(
    {"string", "integer", "unsigned", "float", "boolean", "opaque", "time", "objlnk", "corelnk", "none"}
)
MAX_ID = 65535
BUILTIN_FILE = "objects.json"
REUSABLE_IDS = range(5500, 6000)


@dataclass(frozen=True, slots=True)
class ResourceDef:
    """One resource definition: id, name, LwM2M type (see RESOURCE_TYPES) and multiplicity."""

    id: int
    name: str
    type: str
    multiple: bool


class ObjectModel:
    """Lookup of LwM2M object and resource definitions, O(1) by (object id, resource id)."""

    __slots__ = ("_by_id", "_names", "_resources", "tlv_strict")

    def __init__(
        self,
        names: Mapping[int, str],
        defs: Mapping[tuple[int, int], ResourceDef],
        by_id: Mapping[int, ResourceDef] | None = None,
        *,
        tlv_strict: bool = False,
    ) -> None:
        """Build a model from object names, resource definitions keyed by (object id, resource id),
        the fallback definitions by resource id alone, and the TLV decoding mode."""
        self._names: dict[int, str] = dict(names)
        self._resources: dict[tuple[int, int], ResourceDef] = dict(defs)
        self._by_id: dict[int, ResourceDef] = dict(by_id or {})
        self.tlv_strict = tlv_strict

    def resource(self, obj_id: int, res_id: int) -> ResourceDef | None:
        """Return the definition of resource `res_id` of object `obj_id`, or None when unknown."""
        return self._resources.get((obj_id, res_id)) or self._by_id.get(res_id)

    def resource_by_key(self, key: tuple[int, int]) -> ResourceDef | None:
        """Return the definition for an (object id, resource id) key, or None (the hot-path lookup)."""
        return self._resources.get(key) or self._by_id.get(key[1])

    def by_id(self) -> dict[int, ResourceDef]:
        """Return the fallback definitions by resource id (user mapping over IPSO reusable resources)."""
        return dict(self._by_id)

    def with_options(
        self, resource_types: Mapping[int, str] | None = None, *, tlv_strict: bool | None = None
    ) -> "ObjectModel":
        """Return a copy with a user mapping by resource id laid over the fallbacks, and/or the TLV mode."""
        by_id = dict(self._by_id)
        for res_id, rtype in (resource_types or {}).items():
            if rtype not in RESOURCE_TYPES:
                raise ObjectModelError(f"resource {res_id}: type {rtype!r} is not one of {_type_list()}")
            by_id[res_id] = ResourceDef(res_id, f"Resource {res_id}", rtype, False)
        strict = self.tlv_strict if tlv_strict is None else tlv_strict
        return ObjectModel(self._names, self._resources, by_id, tlv_strict=strict)

    def object_name(self, obj_id: int) -> str | None:
        """Return the name of object `obj_id`, or None when unknown."""
        return self._names.get(obj_id)

    def object_ids(self) -> list[int]:
        """Return the known object ids, sorted."""
        return sorted(self._names)

    def resources_of(self, obj_id: int) -> list[ResourceDef]:
        """Return the known resources of object `obj_id`, sorted by id."""
        return sorted((d for (o, _), d in self._resources.items() if o == obj_id), key=lambda d: d.id)

    def merged(self, other: "ObjectModel") -> "ObjectModel":
        """Return a new model: this one with `other`'s object names and resources laid over it."""
        return ObjectModel(
            {**self._names, **other._names},
            {**self._resources, **other._resources},
            {**self._by_id, **other._by_id},
            tlv_strict=self.tlv_strict or other.tlv_strict,
        )

    def __len__(self) -> int:
        """Return the number of known resources."""
        return len(self._resources)

    def __repr__(self) -> str:
        """Summarise the model's size."""
        return f"ObjectModel({len(self._names)} objects, {len(self._resources)} resources)"


def model_from_compact(data: Any, source: str) -> ObjectModel:
    """Build a model from parsed compact JSON; raise ObjectModelError naming `source` on bad shape."""
    if not isinstance(data, dict):
        raise ObjectModelError(f"{source}: top level must be a JSON object of object ids")
    names: dict[int, str] = {}
    defs: dict[tuple[int, int], ResourceDef] = {}
    for obj_key, obj in data.items():
        if isinstance(obj_key, str) and obj_key.startswith("_"):
            continue
        where = f"{source}: object {obj_key!r}"
        obj_id = _parse_id(obj_key, where)
        if not isinstance(obj, dict):
            raise ObjectModelError(f"{where}: must be a JSON object with 'name' and 'resources'")
        name = obj.get("name", f"Object {obj_id}")
        if not isinstance(name, str):
            raise ObjectModelError(f"{where}: 'name' must be a string")
        names[obj_id] = name
        res_map = obj.get("resources", {})
        if not isinstance(res_map, dict):
            raise ObjectModelError(f"{where}: 'resources' must be a JSON object of resource ids")
        for res_key, entry in res_map.items():
            res_where = f"{where} resource {res_key!r}"
            res_id = _parse_id(res_key, res_where)
            defs[(obj_id, res_id)] = _parse_resource(res_id, entry, res_where)
    return ObjectModel(names, defs)


def _parse_id(key: Any, where: str) -> int:
    """Parse a decimal object or resource id in 0..65535."""
    if not (isinstance(key, str) and key.isascii() and key.isdigit()):
        raise ObjectModelError(f"{where}: id must be a decimal number")
    value = int(key)
    if value > MAX_ID:
        raise ObjectModelError(f"{where}: id must be at most {MAX_ID}")
    return value


def _parse_resource(res_id: int, entry: Any, where: str) -> ResourceDef:
    """Parse one resource entry, `[name, type, multiple]` or `{"name", "type", "multiple"}`."""
    if isinstance(entry, list):
        if len(entry) != 3:
            raise ObjectModelError(f"{where}: must be [name, type, multiple]")
        name, rtype, multiple = entry
    elif isinstance(entry, dict):
        name, rtype, multiple = entry.get("name"), entry.get("type"), entry.get("multiple", False)
    else:
        raise ObjectModelError(f"{where}: must be [name, type, multiple] or an object")
    if not isinstance(name, str):
        raise ObjectModelError(f"{where}: name must be a string")
    if rtype not in RESOURCE_TYPES:
        raise ObjectModelError(f"{where}: type {rtype!r} is not one of {_type_list()}")
    if not isinstance(multiple, bool):
        raise ObjectModelError(f"{where}: multiple must be true or false")
    return ResourceDef(res_id, name, str(rtype), multiple)


def _type_list() -> str:
    """The valid type names, for error messages."""
    return ", ".join(sorted(RESOURCE_TYPES))


def reusable_resources(model: ObjectModel) -> dict[int, ResourceDef]:
    """The IPSO reusable resources (5500-5999) whose type agrees in every object of `model` using them."""
    seen: dict[int, set[str]] = {}
    named: dict[int, ResourceDef] = {}
    for rdef in model._resources.values():
        if rdef.id in REUSABLE_IDS:
            seen.setdefault(rdef.id, set()).add(rdef.type)
            named.setdefault(rdef.id, ResourceDef(rdef.id, rdef.name, rdef.type, False))
    return {res_id: named[res_id] for res_id, types in seen.items() if len(types) == 1}


@functools.cache
def default_object_model() -> ObjectModel:
    """Return the built-in object model (with the reusable-resource fallback), read once and cached."""
    text = resources.files(__package__).joinpath(BUILTIN_FILE).read_text(encoding="utf-8")
    model = model_from_compact(json.loads(text), BUILTIN_FILE)
    return ObjectModel(model._names, model._resources, reusable_resources(model))


def load_object_model(
    extra_files: Sequence[str] = (),
    resource_types: Mapping[int, str] | None = None,
    *,
    tlv_strict: bool = False,
) -> ObjectModel:
    """Return the built-in model with each user file (compact JSON, see module doc) merged over it,
    the user mapping by resource id over the fallbacks, and the TLV mode."""
    model = default_object_model()
    for path in _as_paths(extra_files):
        model = model.merged(_read_user_file(path))
    if resource_types or tlv_strict:
        model = model.with_options(resource_types, tlv_strict=tlv_strict)
    return model


def _as_paths(extra_files: Sequence[str] | str) -> Iterable[str]:
    """Return the file names, treating a lone string as one file rather than a sequence of characters."""
    return [extra_files] if isinstance(extra_files, str) else list(extra_files)


def _read_user_file(path: str) -> ObjectModel:
    """Read and parse one user object file, raising ObjectModelError that names the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ObjectModelError(f"{path}: cannot read object file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ObjectModelError(f"{path}: object file is not UTF-8: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise ObjectModelError(f"{path}: object file is not valid JSON: {exc}") from None
    return model_from_compact(data, path)
