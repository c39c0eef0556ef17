"""Channel types: metadata, conflicts, the websocket channel and long polling."""

from __future__ import annotations

import json
import threading

import pytest
import websocket

from app.simulator import SimulatorServer
from tests.simulator.conftest import API_KEY, Api, Receiver, first_device
from tests.support import wait_until


def _ws_url(sim: SimulatorServer) -> str:
    """The websocket-connect URL."""
    return sim.url.replace("http://", "ws://") + "/v2/notification/websocket-connect"


def test_channel_metadata_names_the_mechanism(api: Api, receiver: Receiver) -> None:
    assert api.get("/v2/notification/channel").status_code == 404
    api.register(receiver.url)
    assert api.get("/v2/notification/channel").json() == {"delivery_mechanism": "CALLBACK"}
    api.delete("/v2/notification/callback")
    assert api.put("/v2/notification/websocket").status_code == 201
    assert api.get("/v2/notification/channel").json() == {"delivery_mechanism": "WEB_SOCKET"}


def test_a_websocket_channel_blocks_the_callback_until_deleted(api: Api, receiver: Receiver) -> None:
    api.put("/v2/notification/websocket")
    refused = api.register(receiver.url)
    assert refused.status_code == 400
    assert "CHANNEL_EXISTS" in refused.json()["message"]
    assert receiver.puts == []  # not even checked
    assert api.delete("/v2/notification/websocket").status_code == 204
    assert api.register(receiver.url).status_code == 204


def test_a_callback_blocks_websocket_and_pull(api: Api, registered: Receiver) -> None:
    assert api.put("/v2/notification/websocket").status_code == 400
    assert api.get("/v2/notification/pull").status_code == 400


def test_websocket_channel_status_and_lifecycle(api: Api) -> None:
    assert api.get("/v2/notification/websocket").status_code == 404
    assert api.put("/v2/notification/websocket").json() == {"queueSize": 0, "status": "disconnected"}
    assert api.put("/v2/notification/websocket").status_code == 200
    assert api.delete("/v2/notification/websocket").status_code == 204
    assert api.delete("/v2/notification/websocket").status_code == 404


def test_websocket_delivers_batches_and_authenticates_with_the_subprotocol(
    api: Api, sim: SimulatorServer
) -> None:
    api.put("/v2/notification/websocket")
    device = first_device(sim)
    uid = sim.sim.inject_notification(device, "/3303/0/5700", 21.5)
    ws = websocket.create_connection(_ws_url(sim), subprotocols=["wss", f"pelion_{API_KEY}"], timeout=5)
    try:
        batch = json.loads(ws.recv())
        assert [n["uid"] for n in batch["notifications"]] == [uid]
        assert api.get("/v2/notification/websocket").json()["status"] == "connected"
        later = sim.sim.inject_notification(device, "/3303/0/5700", 22.0)
        assert json.loads(ws.recv())["notifications"][0]["uid"] == later
    finally:
        ws.close()
    wait_until(lambda: api.get("/v2/notification/websocket").json()["status"] == "disconnected")


def test_websocket_with_the_authorization_header(api: Api, sim: SimulatorServer) -> None:
    api.put("/v2/notification/websocket")
    ws = websocket.create_connection(_ws_url(sim), header=[f"Authorization: Bearer {API_KEY}"], timeout=5)
    try:
        uid = sim.sim.inject_notification(first_device(sim), "/3/0/9", 90)
        assert json.loads(ws.recv())["notifications"][0]["uid"] == uid
    finally:
        ws.close()


def test_a_newer_websocket_closes_the_older_with_1001(api: Api, sim: SimulatorServer) -> None:
    api.put("/v2/notification/websocket")
    auth = [f"Authorization: Bearer {API_KEY}"]
    old = websocket.create_connection(_ws_url(sim), header=auth, timeout=5)
    wait_until(lambda: sim.sim.channel.ws is not None, what="the first socket to be bound")
    new = websocket.create_connection(_ws_url(sim), header=auth, timeout=5)
    try:
        opcode, frame = old.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame[:2], "big") == 1001
        uid = sim.sim.inject_notification(first_device(sim), "/3/0/9", 5)
        assert json.loads(new.recv())["notifications"][0]["uid"] == uid
    finally:
        old.close()
        new.close()


def test_websocket_with_a_bad_key_is_closed_with_1008(api: Api, sim: SimulatorServer) -> None:
    api.put("/v2/notification/websocket")
    ws = websocket.create_connection(_ws_url(sim), subprotocols=["wss", "pelion_ak_wrong"], timeout=5)
    try:
        opcode, frame = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame[:2], "big") == 1008
    finally:
        ws.close()


def test_websocket_without_a_channel_is_closed_with_1011(sim: SimulatorServer) -> None:
    ws = websocket.create_connection(_ws_url(sim), header=[f"Authorization: Bearer {API_KEY}"], timeout=5)
    try:
        opcode, frame = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame[:2], "big") == 1011
    finally:
        ws.close()


def test_websocket_connect_without_upgrade_is_426(api: Api) -> None:
    assert api.get("/v2/notification/websocket-connect").status_code == 426


def test_long_poll_returns_a_batch_then_204_and_marks_the_channel(api: Api, sim: SimulatorServer) -> None:
    assert api.get("/v2/notification/pull").status_code == 204  # creates the channel, waits pull_timeout
    assert api.get("/v2/notification/channel").json() == {"delivery_mechanism": "LONG_POLLING"}
    uid = sim.sim.inject_notification(first_device(sim), "/3303/0/5700", 20.0)
    polled = api.get("/v2/notification/pull")
    assert polled.status_code == 200
    assert [n["uid"] for n in polled.json()["notifications"]] == [uid]
    assert api.delete("/v2/notification/pull").text == "REMOVED"
    assert api.delete("/v2/notification/pull").text == "ALREADY_DELETED"


def test_a_second_concurrent_long_poll_is_409(make_sim) -> None:  # type: ignore[no-untyped-def]
    sim = make_sim(pull_timeout=1000)  # 10 s of wall time at time_scale 0.01
    api = Api(sim.url)
    first: dict[str, int] = {}
    thread = threading.Thread(target=lambda: first.update(code=api.get("/v2/notification/pull").status_code))
    thread.start()
    try:
        wait_until(lambda: sim.sim.channel.pull_open, what="the first poll to be open")
        assert Api(sim.url).get("/v2/notification/pull").status_code == 409
    finally:
        uid = sim.sim.inject_notification(first_device(sim), "/3/0/9", 1)
        thread.join(10)
    assert first["code"] == 200
    assert sim.sim.sent_event_ids() == [uid]


@pytest.mark.parametrize("path", ["/v2/notification/websocket", "/v2/notification/pull"])
def test_deleting_a_channel_drops_its_queued_events(api: Api, sim: SimulatorServer, path: str) -> None:
    api.call("PUT" if path.endswith("websocket") else "GET", path)
    sim.sim.inject_notification(first_device(sim), "/3/0/9", 1)
    assert sim.sim.stats()["queued"] == 1
    api.delete(path)
    stats = sim.sim.stats()
    assert stats["queued"] == 0
    assert stats["dropped"] == 1
