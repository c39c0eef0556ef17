"""The router: filters, composition, naming."""

from __future__ import annotations

import pytest

from workers.handlers import HandlerError, Router
from workers.testing import make_event, run


def noop(event: object) -> None:
    return None


def test_path_pattern_star_matches_one_segment() -> None:
    router = Router()
    router.add(noop, "notifications", path="/3303/*/5700")
    handler = router.handlers[0]
    assert handler.matches(make_event(ep="a", path="/3303/0/5700"))
    assert handler.matches(make_event(ep="a", path="3303/12/5700"))
    assert not handler.matches(make_event(ep="a", path="/3303/0/1/5700"))
    assert not handler.matches(make_event(ep="a", path="/3304/0/5700"))


def test_double_star_matches_across_segments() -> None:
    router = Router()
    router.add(noop, path="/3/**")
    assert router.handlers[0].matches(make_event(ep="a", path="/3/0/11/0"))


def test_kind_filter_one_or_several_or_all() -> None:
    router = Router()
    router.add(noop, "registrations", name="one")
    router.add(noop, ["registrations", "reg-updates"], name="two")
    router.add(noop, name="all")
    names = {h.name for h, _ in router.matching([make_event("reg-updates", ep="a")])}
    assert names == {"two", "all"}


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(HandlerError, match="unknown event kind"):
        Router().add(noop, "notification")


def test_ep_and_ept_patterns() -> None:
    router = Router()
    router.add(noop, ep="lamp-*", ept="Light", name="lamps")
    handler = router.handlers[0]
    assert handler.matches(make_event("registrations", ep="lamp-7", ept="Light"))
    assert not handler.matches(make_event("registrations", ep="lamp-7", ept="Sensor"))
    assert not handler.matches(make_event("registrations", ep="pump-7", ept="Light"))
    assert not handler.matches(make_event("notifications", ep="lamp-7", path="/1/0/1"))


def test_path_filter_matches_registration_resources() -> None:
    router = Router()
    router.add(noop, "registrations", path="/3303/*/5700")
    event = make_event("registrations", ep="a", resources=[{"path": "/3/0/0"}, {"path": "/3303/0/5700"}])
    assert router.handlers[0].matches(event)


def test_routers_compose_and_keep_registration_order() -> None:
    a, b = Router(), Router()
    a.add(noop, name="first")
    b.add(noop, name="second")
    assert [h.name for h in Router(a, b).handlers] == ["first", "second"]


def test_two_functions_with_one_name_are_refused() -> None:
    router = Router()
    router.add(noop, name="same")
    with pytest.raises(HandlerError, match="same"):
        router.add(lambda e: None, name="same")


def test_decorator_registers_and_returns_the_function() -> None:
    router = Router()

    @router.register("notifications", path="/3303/*/5700")
    def on_temperature(event: object) -> None:
        return None

    assert on_temperature.__name__ == "on_temperature"
    assert router.handlers[0].name.endswith(
        ":test_decorator_registers_and_returns_the_function.<locals>.on_temperature"
    )


def test_one_unsubscribed_path_does_not_drop_the_rest_of_the_batch() -> None:
    """mbed-cloud-sdk dropped a batch's remaining items after a path nobody subscribed to."""
    seen: list[str] = []
    router = Router()
    router.add(lambda e: seen.append(e.path), "notifications", path="/3303/*/5700", name="temp")
    events = [
        make_event(ep="a", path="/3303/0/5700", payload="1"),
        make_event(ep="a", path="/9999/0/1", payload="x"),
        make_event(ep="b", path="/3303/1/5700", payload="2"),
    ]
    result = run(router, events)
    assert seen == ["/3303/0/5700", "/3303/1/5700"]
    assert not result.errors


def test_handler_for_all_kinds_gets_a_kind_devicehooks_does_not_know_and_others_do_not() -> None:
    from workers.events import Event
    from workers.testing import run

    router = Router()
    seen: list[str] = []

    @router.register()
    def everything(event: Event) -> None:
        """All kinds, new ones included."""
        seen.append(f"all:{event.kind}")

    @router.register(["notifications", "registrations"])
    def some(event: Event) -> None:
        """Only the kinds it names."""
        seen.append(f"some:{event.kind}")

    run(router, [Event(kind="device-events", extra={"item": {}}), Event(kind="notifications")])
    assert seen == ["all:device-events", "all:notifications", "some:notifications"]
