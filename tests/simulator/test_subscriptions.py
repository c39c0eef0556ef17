"""Subscriptions and pre-subscriptions decide which resources send notifications."""

from __future__ import annotations

from app.simulator import SimulatorServer
from tests.simulator.conftest import Api, Receiver, first_device
from tests.support import wait_until
from workers.decoding import decode_value, default_object_model


def _notified(receiver: Receiver) -> set[tuple[str, str]]:
    """(ep, path) of every notification received."""
    return {(n["ep"], n["path"]) for n in receiver.items("notifications")}


def test_nothing_is_notified_without_subscriptions(sim: SimulatorServer, registered: Receiver) -> None:
    sim.sim.notify_tick()
    assert sim.sim.trigger_notifications(10) == 0
    assert sim.sim.stats()["generated"] == sim.sim.stats()["no_channel"]


def test_a_subscription_gates_notifications_to_that_resource(
    api: Api, sim: SimulatorServer, registered: Receiver
) -> None:
    device = first_device(sim)
    assert api.put(f"/v2/subscriptions/{device}/3303/0/5700").status_code == 200
    assert api.get(f"/v2/subscriptions/{device}/3303/0/5700").status_code == 200
    assert api.get(f"/v2/subscriptions/{device}/3304/0/5700").status_code == 404
    sim.sim.notify_tick()
    wait_until(lambda: _notified(registered), what="a notification")
    assert _notified(registered) == {(device, "/3303/0/5700")}
    [item] = registered.items("notifications")
    assert set(item) >= {"ep", "path", "ct", "payload", "max-age", "uid", "timestamp"}


def test_an_instance_subscription_notifies_tlv_of_the_instance(
    api: Api, sim: SimulatorServer, registered: Receiver
) -> None:
    device = first_device(sim)
    api.put(f"/v2/subscriptions/{device}/3303/0")
    sim.sim.notify_tick()
    [item] = registered.wait_items("notifications", 1)
    assert (item["path"], item["ct"]) == ("/3303/0", "application/vnd.oma.lwm2m+tlv")
    value, error = decode_value(item["payload"], item["ct"], item["path"], default_object_model())
    assert error is None
    assert set(value) == {"/3303/0/5700", "/3303/0/5701"}


def test_unsubscribing_stops_notifications(api: Api, sim: SimulatorServer, registered: Receiver) -> None:
    device = first_device(sim)
    api.put(f"/v2/subscriptions/{device}/3/0/9")
    assert api.get(f"/v2/subscriptions/{device}").text == "/3/0/9"  # no empty last line: SDKs split on \n
    assert api.delete(f"/v2/subscriptions/{device}/3/0/9").status_code == 204
    assert api.delete(f"/v2/subscriptions/{device}/3/0/9").status_code == 404
    assert api.get(f"/v2/subscriptions/{device}").status_code == 404
    api.put(f"/v2/subscriptions/{device}/3/0/13")
    assert api.delete(f"/v2/subscriptions/{device}").status_code == 204
    sim.sim.notify_tick()
    assert sim.sim.stats()["queued"] + sim.sim.stats()["sent"] == 0


def test_subscribing_to_unknown_things(api: Api, sim: SimulatorServer) -> None:
    device = first_device(sim)
    assert api.put("/v2/subscriptions/no-such-device/3/0/9").status_code == 404
    assert api.put(f"/v2/subscriptions/{device}/9999/0/1").status_code == 404


def test_a_non_observable_resource_answers_412_through_the_channel(
    api: Api, sim: SimulatorServer, registered: Receiver
) -> None:
    response = api.put(f"/v2/subscriptions/{first_device(sim)}/3/0/0")
    assert response.status_code == 202
    async_id = response.json()["async-response-id"]
    [answer] = registered.wait_items("async-responses", 1)
    assert answer == {"id": async_id, "status": 412, "error": "NOT_OBSERVABLE"}


def test_presubscriptions_apply_at_registration_by_type_name_and_path(
    api: Api, sim: SimulatorServer, registered: Receiver
) -> None:
    rules = [
        {"endpoint-type": "sim-light", "resource-path": ["/3311/*"]},
        {"endpoint-name": "sim-000*", "resource-path": ["/3/0/9"]},
    ]
    assert api.put("/v2/subscriptions", json=rules).status_code == 204
    assert api.get("/v2/subscriptions").json() == rules
    sim.sim.notify_tick()
    assert not sim.sim.stats()["generated"] - sim.sim.stats()["no_channel"]  # not before re-registration
    for device in sim.sim.directory():
        sim.sim.update_registration(device["id"])
    sensor, light = first_device(sim, "sim-sensor"), first_device(sim, "sim-light")
    assert sim.sim.endpoint_subscriptions(light) == ["/3/0/9", "/3311/0/5850", "/3311/0/5851"]
    assert sim.sim.endpoint_subscriptions(sensor) == ["/3/0/9"]
    sim.sim.notify_tick()
    wait_until(lambda: (light, "/3311/0/5851") in _notified(registered))
    assert (sensor, "/3303/0/5700") not in _notified(registered)


def test_a_full_registration_resets_manual_subscriptions(api: Api, sim: SimulatorServer) -> None:
    device = first_device(sim)
    api.put(f"/v2/subscriptions/{device}/3303/0/5700")
    sim.sim.reregister(device)
    assert sim.sim.endpoint_subscriptions(device) == []


def test_invalid_presubscriptions_are_400_and_delete_clears_them(api: Api) -> None:
    assert api.put("/v2/subscriptions", json={"endpoint-name": "x"}).status_code == 400
    assert api.put("/v2/subscriptions", json=[{"resource-path": []}]).status_code == 400
    assert api.put("/v2/subscriptions", json=[{"bogus": 1}]).status_code == 400
    api.put("/v2/subscriptions", json=[{"endpoint-type": "sim-sensor"}])
    assert api.delete("/v2/subscriptions").status_code == 204
    assert api.get("/v2/subscriptions").json() == []
