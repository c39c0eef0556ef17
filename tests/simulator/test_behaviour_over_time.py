"""Periodic behaviour: notifications at the configured interval, lifecycle events, queue-mode wake-ups."""

from __future__ import annotations

from collections.abc import Callable

from app.simulator import SimulatorConfig, SimulatorServer
from app.simulator.engine import Simulator
from tests.simulator.conftest import Api, Receiver, first_device
from tests.support import wait_until


def test_subscribed_resources_notify_every_interval_with_changing_values(
    make_sim: Callable[..., SimulatorServer], receiver: Receiver
) -> None:
    sim = make_sim(notification_interval=5)  # every 0.05 s of wall time
    api = Api(sim.url)
    api.register(receiver.url)
    device = first_device(sim)
    api.put(f"/v2/subscriptions/{device}/3303/0/5700")
    temps = receiver.wait_items("notifications", 4)
    assert {(n["ep"], n["path"]) for n in temps} == {(device, "/3303/0/5700")}
    assert len({n["uid"] for n in temps}) == len(temps)
    assert len({n["payload"] for n in temps}) > 1


def test_lifecycle_produces_reg_updates_and_de_registrations_then_re_registrations(
    make_sim: Callable[..., SimulatorServer], receiver: Receiver
) -> None:
    sim = make_sim(lifecycle=True, lifecycle_interval=1)  # an event every 0.01 s
    Api(sim.url).register(receiver.url)

    def _seen() -> bool:
        gone = receiver.items("de-registrations") + receiver.items("registrations-expired")
        back = {r["ep"] for r in receiver.items("registrations")}
        return bool(receiver.items("reg-updates")) and any(ep in back for ep in gone)

    wait_until(_seen, timeout=10, what="reg-updates, a de-registration and a re-registration")


def test_queue_mode_devices_wake_periodically_and_answer_then(
    make_sim: Callable[..., SimulatorServer], receiver: Receiver
) -> None:
    sim = make_sim(devices=2, queue_mode_fraction=0.5, wake_interval=20, awake_time=1)
    api = Api(sim.url)
    api.register(receiver.url)
    sleeper = sim.sim.directory()[-1]["id"]
    assert sim.sim.device(sleeper).queue_mode  # type: ignore[union-attr]
    wait_until(lambda: not sim.sim.device(sleeper).awake)  # type: ignore[union-attr]
    api.post(
        f"/v2/device-requests/{sleeper}", params={"async-id": "w-1"}, json={"method": "GET", "uri": "/3/0/9"}
    )
    wait_until(lambda: [r for r in receiver.items("async-responses") if r["id"] == "w-1"])
    assert any(u["ep"] == sleeper and u["q"] for u in receiver.items("reg-updates"))


def test_devices_are_deterministic_for_a_seed() -> None:
    one, two, other = (Simulator(SimulatorConfig(seed=s, devices=4)) for s in (7, 7, 8))
    ids = [d["id"] for d in one.directory()]
    assert ids == [d["id"] for d in two.directory()]
    assert ids != [d["id"] for d in other.directory()]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert [d["endpoint_name"] for d in one.directory()] == ["sim-0001", "sim-0002", "sim-0003", "sim-0004"]
