"""Delivery like Device Management: batches, one in flight, retries with backoff, removal, queue limit."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Callable

from app.simulator import SimulatorServer
from tests.simulator.conftest import Api, Receiver, first_device
from tests.support import wait_until


def _start(make_sim: Callable[..., SimulatorServer], receiver: Receiver, **config: object) -> SimulatorServer:
    """A simulator with `receiver` registered."""
    sim = make_sim(**config)
    assert Api(sim.url).register(receiver.url, {"X-Hook": "secret"}).status_code == 204
    return sim


def _uids(receiver: Receiver) -> Counter[str]:
    """How often each notification uid was acknowledged."""
    return Counter(n["uid"] for n in receiver.items("notifications"))


def test_batches_hold_at_most_batch_size_items_and_one_is_in_flight(
    make_sim: Callable[..., SimulatorServer], receiver: Receiver
) -> None:
    receiver.hold = threading.Event()
    sim = _start(make_sim, receiver, batch_size=7)
    device = first_device(sim)
    first = sim.sim.inject_notification(device, "/3/0/9", 0)
    wait_until(lambda: receiver.active == 1, what="the first PUT to be held")
    uids = [first] + [sim.sim.inject_notification(device, "/3/0/9", i) for i in range(1, 30)]
    assert sim.sim.stats()["in_flight"] == 1
    assert sim.sim.stats()["queued"] == 29
    receiver.hold.set()
    wait_until(lambda: sim.sim.stats()["acknowledged"] == 30, what="all 30 acknowledged")
    sizes = [sum(len(items) for items in put.batch().values()) for put in receiver.data_puts()]
    assert sizes == [1, 7, 7, 7, 7, 1]
    assert receiver.max_active == 1
    assert list(_uids(receiver)) == uids  # order kept
    assert all(put.headers["X-Hook"] == "secret" for put in receiver.puts)
    assert all(put.headers["Content-Type"] == "application/json" for put in receiver.data_puts())


def test_a_503_is_retried_with_the_same_batch_and_backoff_until_acknowledged(
    make_sim: Callable[..., SimulatorServer], receiver: Receiver
) -> None:
    sim = _start(make_sim, receiver)
    receiver.script = [503, 503, 503, 503]
    device = first_device(sim)
    uids = [sim.sim.inject_notification(device, "/3/0/9", i) for i in range(5)]
    wait_until(lambda: sim.sim.stats()["acknowledged"] == 5, what="the batch acknowledged")
    puts = receiver.data_puts()
    assert [p.status for p in puts] == [503, 503, 503, 503, 204]
    assert len({p.body for p in puts}) == 1  # the same batch each time
    gaps = [b.at - a.at for a, b in itertools.pairwise(puts)]
    for gap, backoff in zip(gaps, (1, 2, 4, 8), strict=True):
        assert gap >= backoff * 0.01 * 0.9  # 1 s, 2 s, 4 s, 8 s at time_scale 0.01
    assert _uids(receiver) == Counter(uids)  # nothing lost, nothing doubled
    stats = sim.sim.stats()
    assert (stats["retried"], stats["failures"], stats["sent"], stats["batches"]) == (4, 4, 5, 1)
    assert sim.sim.sent_event_ids() == uids


def test_a_put_that_times_out_is_retried(
    make_sim: Callable[..., SimulatorServer], receiver: Receiver
) -> None:
    sim = _start(make_sim, receiver, http_timeout=0.3)
    receiver.stall = 1
    uid = sim.sim.inject_notification(first_device(sim), "/3/0/9", 1)
    wait_until(lambda: sim.sim.stats()["acknowledged"] == 1, what="the retry to be acknowledged")
    stats = sim.sim.stats()
    assert (stats["failures"], stats["retried"], stats["sent"]) == (1, 1, 1)
    assert [n["uid"] for n in receiver.items("notifications")] == [uid]


def test_backoff_is_capped(make_sim: Callable[..., SimulatorServer], receiver: Receiver) -> None:
    sim = _start(make_sim, receiver, max_backoff=2)
    receiver.script = [500] * 5
    sim.sim.inject_notification(first_device(sim), "/3/0/9", 1)
    wait_until(lambda: sim.sim.stats()["acknowledged"] == 1)
    puts = receiver.data_puts()
    gaps = [b.at - a.at for a, b in itertools.pairwise(puts)]
    assert max(gaps) < 0.5  # 4 s and 8 s would be 0.04/0.08 s; the cap of 2 s keeps it at 0.02 s


def test_the_callback_is_removed_after_failing_for_the_failure_window(
    make_sim: Callable[..., SimulatorServer], receiver: Receiver
) -> None:
    sim = _start(make_sim, receiver, failure_window=10)  # 0.1 s of wall time
    receiver.default = 500
    device = first_device(sim)
    for i in range(3):
        sim.sim.inject_notification(device, "/3/0/9", i)
    wait_until(lambda: sim.sim.stats()["callback_removed"], what="the callback to be removed")
    stats = sim.sim.stats()
    assert (stats["dropped"], stats["queued"], stats["in_flight"], stats["channel"]) == (3, 0, 0, None)
    assert Api(sim.url).get("/v2/notification/callback").status_code == 404
    sim.sim.inject_notification(device, "/3/0/9", 9)
    assert sim.sim.stats()["no_channel"] >= 1


def test_re_registering_after_removal_delivers_again(
    make_sim: Callable[..., SimulatorServer], receiver: Receiver
) -> None:
    sim = _start(make_sim, receiver, failure_window=5)
    receiver.default = 503
    sim.sim.inject_notification(first_device(sim), "/3/0/9", 1)
    wait_until(lambda: sim.sim.stats()["callback_removed"])
    receiver.default = 204
    assert Api(sim.url).register(receiver.url).status_code == 204
    assert sim.sim.stats()["callback_removed"] is False
    uid = sim.sim.inject_notification(first_device(sim), "/3/0/9", 2)
    wait_until(lambda: uid in _uids(receiver))


def test_the_queue_limit_drops_the_oldest_events(
    make_sim: Callable[..., SimulatorServer], receiver: Receiver
) -> None:
    receiver.hold = threading.Event()
    sim = _start(make_sim, receiver, queue_limit_bytes=2000)
    device = first_device(sim)
    held = sim.sim.inject_notification(device, "/3/0/9", 0)
    wait_until(lambda: receiver.active == 1)
    later = [sim.sim.inject_notification(device, "/3/0/9", i) for i in range(1, 40)]
    stats = sim.sim.stats()
    assert stats["dropped"] > 0
    assert stats["queued_bytes"] <= 2000
    receiver.hold.set()
    wait_until(lambda: sim.sim.stats()["queued"] == 0 and sim.sim.stats()["in_flight"] == 0)
    received = list(_uids(receiver))
    kept = later[stats["dropped"] :]
    assert received == [held, *kept]  # the oldest queued ones went, the in-flight batch survived


def test_stats_count_what_happened(make_sim: Callable[..., SimulatorServer], receiver: Receiver) -> None:
    sim = _start(make_sim, receiver, batch_size=2)
    for i in range(5):
        sim.sim.inject_notification(first_device(sim), "/3/0/9", i)
    wait_until(lambda: sim.sim.stats()["acknowledged"] == 5)
    stats = sim.sim.stats()
    assert stats["sent"] == 5
    assert stats["dropped"] == 0
    assert stats["retried"] == 0
    assert 3 <= stats["batches"] <= 5
    assert stats["in_flight"] == stats["queued"] == 0


def test_registrations_and_de_registrations_are_delivered_and_countable(
    make_sim: Callable[..., SimulatorServer], receiver: Receiver
) -> None:
    sim = _start(make_sim, receiver)
    device = sim.sim.register_device("extra").ep
    sim.sim.update_registration(device)
    sim.sim.deregister_device(device)
    sim.sim.reregister(device)
    sim.sim.expire_device(device)
    wait_until(lambda: sim.sim.stats()["acknowledged"] == 5)
    [registration, again] = receiver.items("registrations")
    assert registration["ep"] == device
    assert registration["original-ep"] == "extra"
    assert registration["q"] is False
    assert registration["uid"] != again["uid"]
    assert {"path": "/3303/0/5700", "rt": "temperature", "ct": "text/plain", "obs": True, "if": ""} in (
        registration["resources"]
    )
    assert receiver.items("de-registrations") == [device]
    assert receiver.items("registrations-expired") == [device]
    keys = sim.sim.sent_event_ids()
    assert f"de-registrations:{device}:1" in keys
    assert len(set(keys)) == 5
