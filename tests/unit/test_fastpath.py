"""The hand-written notification check agrees with the marshmallow schema wherever it answers."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from workers.events import Event
from workers.fastpath import fast_notification
from workers.schemas import load_item

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8))
values = st.one_of(
    scalars, st.lists(scalars, max_size=2), st.dictionaries(st.text(max_size=3), scalars, max_size=2)
)
keys = st.sampled_from(
    ["ep", "path", "ct", "payload", "max-age", "uid", "timestamp", "original-ep", "other", "x"]
)
items = st.dictionaries(keys, st.one_of(values, st.from_regex(r"-?[0-9]{1,4}", fullmatch=True)), max_size=8)


def schema_event(item: Any) -> Event | None:
    try:
        return Event(kind="notifications", **load_item("notifications", item))
    except ValidationError:
        return None


@settings(max_examples=600, deadline=None)
@given(items)
def test_fast_path_equals_schema_whenever_it_answers(item: dict[str, Any]) -> None:
    fast = fast_notification(item)
    if fast is None:
        return
    assert Event(kind="notifications", **fast) == schema_event(item)


def test_fast_path_takes_the_common_item() -> None:
    item = {"ep": "a", "path": "3303/0/5700", "ct": "text/plain", "payload": "MQ==", "max-age": "60"}
    fast = fast_notification(item)
    assert fast is not None
    assert fast["path"] == "/3303/0/5700"
    assert fast["max_age"] == 60


def test_fast_path_leaves_odd_items_to_the_schema() -> None:
    assert fast_notification({"ep": "a", "path": "/1", "max-age": True}) is None
    assert fast_notification({"ep": 1, "path": "/1"}) is None
    assert fast_notification(["ep"]) is None
