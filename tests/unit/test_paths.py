"""The one path normaliser, and that the modules which used to carry their own copy now agree with it."""

from __future__ import annotations

import pytest

from app.paths import normalize_path
from workers.fastpath import fast_notification
from workers.handlers.router import Router
from workers.schemas import load_item


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/3/0/1", "/3/0/1"),
        ("3/0/1", "/3/0/1"),
        ("/3/0/1/", "/3/0/1"),
        ("//3/0/1//", "/3/0/1"),
        ("/", "/"),
        ("", "/"),
        ("3303/*/5700", "/3303/*/5700"),
        ("/dev/temp", "/dev/temp"),
    ],
)
def test_normalize_path_gives_one_leading_slash_and_no_trailing_one(given: str, expected: str) -> None:
    assert normalize_path(given) == expected
    assert normalize_path(expected) == expected


@pytest.mark.parametrize("given", ["3/0/1", "/3/0/1/", "//3/0/1"])
def test_schema_fast_path_and_router_spell_paths_alike(given: str) -> None:
    item = {"ep": "a", "path": given}
    fast = fast_notification(item)
    assert fast is not None
    assert fast["path"] == load_item("notifications", item)["path"] == "/3/0/1"
    router = Router()

    @router.register("notifications", path=given)
    def handler(event: object) -> None:
        """Match by the pattern as written."""

    [registered] = router.handlers
    assert registered.path == "/3/0/1"
