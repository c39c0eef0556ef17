"""What real clients expect of the simulator: mbed Cloud Client TLV values, SDK URLs, 410 on pull."""

from __future__ import annotations

import base64
import threading

import pytest

from app.simulator import SimulatorServer
from tests.simulator.conftest import Api, Receiver, first_device
from tests.support import wait_until
from workers.decoding import decode_value, default_object_model

TLV = "application/vnd.oma.lwm2m+tlv"


@pytest.mark.parametrize(
    ("style", "value", "raw"),
    [
        ("mbed", 23.5, bytes.fromhex("E4 16 44") + b"23.5"),  # text float, as mbed Cloud Client writes it
        ("spec", 23.5, bytes.fromhex("E4 16 44 41 BC 00 00")),  # IEEE float32
        ("mbed", 42, bytes.fromhex("C8 09 08 00 00 00 00 00 00 00 2A")),  # integers in 8 bytes
        ("spec", 42, bytes.fromhex("C1 09 2A")),  # the shortest integer
    ],
)
def test_simulator_encodes_tlv_like_mbed_cloud_client_by_default_or_as_the_spec(
    make_sim, receiver: Receiver, style: str, value: object, raw: bytes
) -> None:
    sim = make_sim() if style == "mbed" else make_sim(tlv_style=style)
    Api(sim.url).register(receiver.url)
    path = "/3303/0/5700" if isinstance(value, float) else "/3/0/9"
    sim.sim.inject_notification(first_device(sim), path, value, ct=TLV)
    [item] = receiver.wait_items("notifications", 1)
    assert base64.b64decode(item["payload"]) == raw
    assert decode_value(item["payload"], TLV, path, default_object_model()) == ({path: value}, None)


def test_device_directory_answers_generated_client_urls(api: Api, sim: SimulatorServer) -> None:
    device = first_device(sim)
    sim.sim.deregister_device(device)
    listed = api.get("/v3/devices/", params={"filter": "state=registered"})
    assert listed.status_code == 200
    assert device not in {d["id"] for d in listed.json()["data"]}
    assert len(listed.json()["data"]) == 2
    neq = api.get("/v3/devices/", params={"filter": "state__neq=registered"}).json()["data"]
    assert [d["id"] for d in neq] == [device]
    one = api.get(f"/v3/devices/{device}/")
    assert (one.status_code, one.json()["id"], one.json()["state"]) == (200, device, "deregistered")
    assert api.get("/v3/devices/no-such-device/").status_code == 404
    assert api.get("/v3/devices", params={"filter": "colour=red"}).status_code == 400


def test_empty_responses_carry_no_content_type(api: Api, sim: SimulatorServer) -> None:
    answer = api.delete("/v2/subscriptions")
    assert answer.status_code == 204
    assert "Content-Type" not in answer.headers


def test_subscription_list_has_no_empty_last_path(api: Api, sim: SimulatorServer) -> None:
    device = first_device(sim)
    api.put(f"/v2/subscriptions/{device}/3/0/9")
    api.put(f"/v2/subscriptions/{device}/3/0/13")
    assert sorted(api.get(f"/v2/subscriptions/{device}").text.split("\n")) == ["/3/0/13", "/3/0/9"]


def test_deleted_pull_channel_answers_410_and_a_callback_can_be_registered(
    make_sim, receiver: Receiver
) -> None:
    sim = make_sim(pull_timeout=1000, pull_purge_time=1000)  # scaled: a 10 s poll, a 10 s purge
    api = Api(sim.url)
    waiting: dict[str, object] = {}

    def poll() -> None:
        answer = Api(sim.url).get("/v2/notification/pull", timeout=30)
        waiting.update(status=answer.status_code, text=answer.text)

    poller = threading.Thread(target=poll)
    poller.start()
    wait_until(lambda: sim.sim.channel.pull_open, 5, "the long poll to be open")
    assert api.delete("/v2/notification/pull").text == "REMOVED"
    poller.join(10)
    assert waiting == {"status": 410, "text": "CHANNEL_DELETED"}  # the waiting poll
    again = api.get("/v2/notification/pull")
    assert (again.status_code, again.text) == (410, "CHANNEL_DELETED")  # and a new one: no re-creation
    assert api.register(receiver.url).status_code == 204
    assert sim.sim.channel.channel_name() == "CALLBACK"
