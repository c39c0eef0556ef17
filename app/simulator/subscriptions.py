"""Pre-subscriptions: validation and matching (pure functions)."""

from __future__ import annotations

from typing import Any

from app.paths import normalize_path
from app.simulator.devices import Device

MAX_ENTRIES = 1024
MAX_NAME = 64
MAX_PATH = 128
FIELDS = ("endpoint-name", "endpoint-type", "resource-path")


def validate_presubscriptions(body: Any) -> list[dict[str, Any]]:
    """Check a PresubscriptionArray; raise ValueError saying what is wrong."""
    if not isinstance(body, list):
        raise ValueError("the body must be a JSON array of pre-subscriptions")
    if len(body) > MAX_ENTRIES:
        raise ValueError(f"at most {MAX_ENTRIES} pre-subscription entries are allowed")
    return [_entry(item, i) for i, item in enumerate(body)]


def _entry(item: Any, i: int) -> dict[str, Any]:
    """Check one Presubscription."""
    if not isinstance(item, dict):
        raise ValueError(f"entry {i} must be an object")
    unknown = set(item) - set(FIELDS)
    if unknown:
        raise ValueError(f"entry {i} has unknown fields: {sorted(unknown)}")
    for name in ("endpoint-name", "endpoint-type"):
        value = item.get(name)
        if value is not None and (not isinstance(value, str) or not value or len(value) > MAX_NAME):
            raise ValueError(f"entry {i}: {name} must be a string of 1..{MAX_NAME} characters")
    paths = item.get("resource-path")
    if paths is not None and (
        not isinstance(paths, list)
        or not paths
        or not all(isinstance(p, str) and 0 < len(p) <= MAX_PATH for p in paths)
    ):
        raise ValueError(f"entry {i}: resource-path must be a non-empty array of paths (<= {MAX_PATH})")
    return dict(item)


def pattern_match(pattern: str, value: str) -> bool:
    """Exact match, or prefix match when the pattern ends with `*`."""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def _path_match(pattern: str, path: str) -> bool:
    """Match a resource-path pattern, tolerating a missing leading slash."""
    return pattern_match(normalize_path(pattern), path)


def presubscribed_paths(presubscriptions: list[dict[str, Any]], device: Device) -> set[str]:
    """The observable resource paths of `device` that the pre-subscriptions select."""
    selected: set[str] = set()
    observable = [res.path for res in device.resources if res.obs]
    for entry in presubscriptions:
        name = entry.get("endpoint-name")
        if name is not None and not (pattern_match(name, device.ep) or pattern_match(name, device.name)):
            continue
        ept = entry.get("endpoint-type")
        if ept is not None and not pattern_match(ept, device.ept):
            continue
        patterns = entry.get("resource-path")
        if patterns is None:
            selected.update(observable)
        else:
            selected.update(p for p in observable if any(_path_match(pat, p) for pat in patterns))
    return selected
