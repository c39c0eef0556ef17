"""Dispatcher containment on a real Redis: what goes wrong settling one handler's failure stays there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis

from app.batches import make_queue
from app.stores import StoreLimits
from workers import dispatch
from workers.deadletters import DeadLetters
from workers.dispatch import RETRY_PREFIX, Dispatcher, split_storable
from workers.events import Event
from workers.handlers import Router
from workers.handlers.delivery import Lanes
from workers.testing import make_event

BIGNUM = 2**16000  # what a 2,000-byte CBOR bignum decodes to; json.dumps refuses it (> 4,300 digits)


def events() -> list[Event]:
    """Good events around poison ones: a bignum value, a lone surrogate, NaN, an object JSON cannot encode."""
    return [
        make_event(ep="good-0", path="/3303/0/5700", payload="1"),
        Event(kind="notifications", ep="bignum", path="/3303/0/5700", value=BIGNUM),
        make_event(ep="\ud800", path="/3303/0/5700", payload="2"),
        Event(kind="notifications", ep="nan", path="/3303/0/5700", value=float("nan")),
        Event(kind="notifications", ep="object", path="/3303/0/5700", value={1j: object()}),
        make_event(ep="good-1", path="/3303/0/5700", payload="3"),
    ]


@pytest.fixture
def lanes() -> Iterator[Lanes]:
    lanes = Lanes()
    yield lanes
    lanes.shutdown()


def dispatcher(router: Router, lanes: Lanes, redis: Redis) -> Dispatcher:
    return Dispatcher(router, lanes, redis, make_queue(redis, "test"), StoreLimits())


def retry_payloads(redis: Redis) -> list[list[dict[str, Any]]]:
    return [json.loads(redis.get(key) or b"[]") for key in redis.scan_iter(RETRY_PREFIX + "*")]


def test_split_storable_keeps_surrogates_and_nan_and_refuses_bignums_and_objects() -> None:
    storable, refused = split_storable(events())
    assert [item["ep"] for item in storable] == ["good-0", "\ud800", "nan", "good-1"]
    assert [(item["ep"], reason.split(":")[0]) for item, reason in refused] == [
        ("bignum", "ValueError"),
        ("object", "TypeError"),
    ]


def test_a_failing_handler_with_unstorable_events_retries_the_rest_and_dead_letters_the_poison(
    redis: Redis, lanes: Lanes
) -> None:
    healthy: list[str | None] = []
    router = Router()
    router.add(lambda e: healthy.append(e.ep), name="healthy")
    router.add(lambda es: (_ for _ in ()).throw(ConnectionError("down")), name="down", batch=True, attempts=3)
    failures = dispatcher(router, lanes, redis).dispatch(events(), source="job-1")
    assert healthy == [e.ep for e in events()]
    assert [f.handler.name for f in failures] == ["down"]
    (stored,) = retry_payloads(redis)
    assert [item["ep"] for item in stored] == ["good-0", "\ud800", "nan", "good-1"]
    (row,) = DeadLetters(redis).list()
    letter = DeadLetters(redis).get(row["id"])
    assert letter is not None
    assert letter["handler"] == "down"
    assert letter["error"].startswith("cannot be stored for a retry (ValueError: Exceeds the limit")
    assert "ConnectionError: down" in letter["error"]
    assert [e["ep"] for e in letter["events"]] == ["bignum", "object"]
    assert letter["events"][0]["value"] == "<int of 16001 bits, too large to store>"


def test_a_bug_while_settling_one_handler_dead_letters_it_and_spares_the_others(
    redis: Redis, lanes: Lanes, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = Router()
    router.add(lambda e: (_ for _ in ()).throw(RuntimeError("first")), name="first", attempts=3)
    router.add(lambda e: (_ for _ in ()).throw(RuntimeError("second")), name="second", attempts=3)
    real_schedule = Dispatcher.schedule

    def schedule(self: Dispatcher, handler: Any, *args: Any) -> str:
        if handler.name == "first":
            raise KeyError("a bug in settling")
        return real_schedule(self, handler, *args)

    monkeypatch.setattr(Dispatcher, "schedule", schedule)
    good = [make_event(ep="a", path="/3303/0/5700", payload="1")]
    dispatcher(router, lanes, redis).dispatch(good, source="job-2")
    (row,) = DeadLetters(redis).list()
    letter = DeadLetters(redis).get(row["id"])
    assert letter is not None
    assert letter["handler"] == "first"
    assert (
        letter["error"]
        == "settling raised KeyError: 'a bug in settling'; the handler failed: RuntimeError: first"
    )
    assert "KeyError" in letter["traceback"]
    (stored,) = retry_payloads(redis)
    assert [item["ep"] for item in stored] == ["a"]


def test_redeliver_of_poison_that_still_fails_dead_letters_it_with_a_storable_copy(
    redis: Redis, lanes: Lanes
) -> None:
    router = Router()
    router.add(lambda e: (_ for _ in ()).throw(ValueError("no")), name="h", attempts=1)
    failed = dispatcher(router, lanes, redis).deliver_to("h", [events()[1]], source="job-3")
    assert failed == 1
    (row,) = DeadLetters(redis).list()
    letter = DeadLetters(redis).get(row["id"])
    assert letter is not None
    assert letter["events"][0]["value"].startswith("<int of 16001 bits")


def test_the_three_entry_points_share_one_deliver_then_settle(
    redis: Redis, lanes: Lanes, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = Dispatcher._deliver_and_settle

    def spy(self: Dispatcher, work: Any, attempt: int, source: str) -> Any:
        calls.append(attempt)
        return real(self, work, attempt, source)

    monkeypatch.setattr(Dispatcher, "_deliver_and_settle", spy)
    router = Router()
    router.add(lambda e: None, name="h")
    d = dispatcher(router, lanes, redis)
    good = [make_event(ep="a", path="/3303/0/5700", payload="1")]
    d.dispatch(good, "s")
    d.deliver_to("h", good, "s")
    redis.set("devicehooks:retry:x", json.dumps([good[0].to_dict()]))
    d.redeliver("h", "devicehooks:retry:x", 2, "s")
    assert calls == [1, 1, 2]
    assert redis.get("devicehooks:retry:x") is None


def test_backoff_delay_grows_with_the_attempt_by_the_handler_policy() -> None:
    router = Router()
    router.add(lambda e: None, name="h", backoff=1.0)
    handler = router.get("h")
    assert handler is not None
    assert 0.5 <= dispatch.backoff_delay(handler, 2) <= 1.0
    assert 2.0 <= dispatch.backoff_delay(handler, 4) <= 4.0
