"""The /sim/ helpers and the /v3/devices directory list."""

from __future__ import annotations

import requests

from app.simulator import SimulatorServer
from tests.simulator.conftest import Api, Receiver, first_device
from tests.support import wait_until
from workers.decoding import decode_value, default_object_model


def test_sim_devices_can_be_added_and_driven(sim: SimulatorServer, registered: Receiver) -> None:
    added = requests.post(sim.url + "/sim/devices", json={"name": "lamp", "ept": "sim-light"}, timeout=5)
    assert added.status_code == 201
    ep = added.json()["id"]
    for action in ("reg-update", "sleep", "wake", "deregister", "register", "expire"):
        assert requests.post(f"{sim.url}/sim/devices/{ep}/{action}", timeout=5).status_code == 204
    assert requests.post(f"{sim.url}/sim/devices/{ep}/explode", timeout=5).status_code == 404
    assert requests.post(f"{sim.url}/sim/devices/nope/wake", timeout=5).status_code == 404
    listed = requests.get(sim.url + "/sim/devices", timeout=5).json()
    assert [d["endpoint_name"] for d in listed][-1] == "lamp"
    wait_until(lambda: registered.items("registrations-expired") == [ep])


def test_sim_notifications_trigger_and_inject(api: Api, sim: SimulatorServer, registered: Receiver) -> None:
    device = first_device(sim)
    api.put(f"/v2/subscriptions/{device}/3/0/9")
    triggered = requests.post(sim.url + "/sim/notifications", json={"count": 3}, timeout=5)
    assert triggered.json() == {"count": 3}
    injected = requests.post(
        sim.url + "/sim/notifications", json={"ep": device, "path": "3303/0/5700", "value": 30.5}, timeout=5
    )
    [uid] = injected.json()["uids"]
    registered.wait_items("notifications", 4)
    assert registered.items("notifications")[-1]["uid"] == uid
    assert requests.get(sim.url + "/sim/sent", timeout=5).json()["ids"][-1] == uid


def test_inject_tlv_and_raw_bytes(sim: SimulatorServer, registered: Receiver) -> None:
    device = first_device(sim)
    sim.sim.inject_notification(device, "/3303/0/5700", -7.25, ct="application/vnd.oma.lwm2m+tlv")
    sim.sim.inject_notification(device, "/5/0/0", b"\x00\xff", ct="application/octet-stream")
    [tlv, raw] = registered.wait_items("notifications", 2)
    value, error = decode_value(tlv["payload"], tlv["ct"], tlv["path"], default_object_model())
    assert (value, error) == ({"/3303/0/5700": -7.25}, None)
    assert raw["payload"] == "AP8="


def test_directory_pages_with_limit_after_order_and_total(api: Api, sim: SimulatorServer) -> None:
    for i in range(4):
        sim.sim.register_device(f"extra-{i}")
    first = api.get("/v3/devices", params={"limit": 3, "include": "total_count"}).json()
    assert (first["object"], first["limit"], first["has_more"], first["total_count"]) == ("list", 3, True, 7)
    rest = api.get("/v3/devices", params={"limit": 10, "after": first["data"][-1]["id"]}).json()
    assert len(rest["data"]) == 4
    assert rest["has_more"] is False
    every = [d["id"] for d in first["data"] + rest["data"]]
    desc = api.get("/v3/devices", params={"order": "DESC", "limit": 10}).json()
    assert [d["id"] for d in desc["data"]] == list(reversed(every))


def test_directory_filters(api: Api, sim: SimulatorServer) -> None:
    gone = first_device(sim)
    sim.sim.deregister_device(gone)
    registered = api.get("/v3/devices", params={"state__eq": "registered"}).json()["data"]
    assert gone not in {d["id"] for d in registered}
    assert len(registered) == 2
    assert [d["id"] for d in api.get("/v3/devices", params={"state__neq": "registered"}).json()["data"]] == [
        gone
    ]
    lights = api.get("/v3/devices", params={"endpoint_type__in": "sim-light,other"}).json()["data"]
    assert {d["endpoint_type"] for d in lights} == {"sim-light"}
    assert api.get("/v3/devices", params={"colour__eq": "red"}).status_code == 400
    assert api.get("/v3/devices", params={"limit": 1}).status_code == 400
    assert api.get("/v3/devices", params={"after": "nope"}).status_code == 400
