"""Device requests and legacy resource calls: accepted now, answered through the channel later."""

from __future__ import annotations

import base64
from collections.abc import Callable

from app.simulator import SimulatorServer
from tests.simulator.conftest import Api, Receiver, first_device
from tests.support import wait_until


def _answer(receiver: Receiver, async_id: str) -> dict[str, object]:
    """Wait for the async-response with this id."""
    found = wait_until(
        lambda: [r for r in receiver.items("async-responses") if r["id"] == async_id],
        what=f"answer {async_id}",
    )
    assert len(found) == 1
    return dict(found[0])


def _request(api: Api, device: str, async_id: str, **body: str) -> int:
    """POST a device request; return the status."""
    return api.post(f"/v2/device-requests/{device}", params={"async-id": async_id}, json=body).status_code


def test_a_read_is_answered_with_the_clients_async_id(
    api: Api, sim: SimulatorServer, registered: Receiver
) -> None:
    device = first_device(sim)
    assert _request(api, device, "read-1", method="GET", uri="/3/0/0") == 202
    answer = _answer(registered, "read-1")
    assert answer["status"] == 200
    assert answer["ct"] == "text/plain"
    assert base64.b64decode(str(answer["payload"])) == b"devicehooks"


def test_a_write_changes_the_value_a_later_read_returns(
    api: Api, sim: SimulatorServer, registered: Receiver
) -> None:
    light = first_device(sim, "sim-light")
    payload = base64.b64encode(b"73").decode()
    body = {"method": "PUT", "uri": "/3311/0/5851", "content-type": "text/plain", "payload-b64": payload}
    assert _request(api, light, "write-1", **body) == 202
    assert _answer(registered, "write-1")["status"] == 200
    _request(api, light, "read-2", method="GET", uri="/3311/0/5851")
    assert base64.b64decode(str(_answer(registered, "read-2")["payload"])) == b"73"
    _request(api, light, "write-2", method="PUT", uri="/3/0/0", **{"payload-b64": payload})
    assert _answer(registered, "write-2")["status"] == 405


def test_an_instance_read_is_tlv(api: Api, sim: SimulatorServer, registered: Receiver) -> None:
    _request(api, first_device(sim), "tlv-1", method="GET", uri="/3/0")
    assert _answer(registered, "tlv-1")["ct"] == "application/vnd.oma.lwm2m+tlv"


def test_request_errors(api: Api, sim: SimulatorServer, registered: Receiver) -> None:
    device = first_device(sim)
    unknown = api.post(
        "/v2/device-requests/nope", params={"async-id": "a"}, json={"method": "GET", "uri": "/3"}
    )
    assert unknown.status_code == 404
    assert "DEVICE_NOT_FOUND" in unknown.json()["message"]
    assert _request(api, device, "bad id!", method="GET", uri="/3/0/0") == 400
    assert _request(api, device, "x" * 41, method="GET", uri="/3/0/0") == 400
    assert _request(api, device, "a1", method="FETCH", uri="/3/0/0") == 400
    missing = api.post(
        f"/v2/device-requests/{device}", params={"async-id": "a2"}, json={"method": "GET", "uri": "/42/0/1"}
    )
    assert "RESOURCE_NOT_FOUND" in missing.json()["message"]
    sim.sim.deregister_device(device)
    assert (
        "DEVICE_NOT_CONNECTED"
        in api.post(
            f"/v2/device-requests/{device}",
            params={"async-id": "a3"},
            json={"method": "GET", "uri": "/3/0/0"},
        ).json()["message"]
    )


def test_without_a_channel_requests_are_412(api: Api, sim: SimulatorServer) -> None:
    assert _request(api, first_device(sim), "a1", method="GET", uri="/3/0/0") == 412


def test_an_unresponsive_device_times_out_with_504(
    make_sim: Callable[..., SimulatorServer], receiver: Receiver
) -> None:
    sim = make_sim(devices=4, timeout_fraction=0.25, request_timeout=5)
    api = Api(sim.url)
    api.register(receiver.url)
    dead = sim.sim.directory()[-1]["id"]
    assert not sim.sim.device(dead).responsive  # type: ignore[union-attr]
    _request(api, dead, "t-1", method="GET", uri="/3/0/0")
    assert _answer(receiver, "t-1") == {"id": "t-1", "status": 504, "error": "TIMEOUT"}


def test_a_queue_mode_device_answers_when_it_wakes(
    api: Api, sim: SimulatorServer, registered: Receiver
) -> None:
    sleeper = sim.sim.register_device("sleepy", queue_mode=True).ep
    sim.sim.sleep_device(sleeper)
    _request(api, sleeper, "q-1", method="GET", uri="/3/0/0")
    assert [r.async_id for r in sim.sim.device(sleeper).pending] == ["q-1"]  # type: ignore[union-attr]
    sim.sim.wake_device(sleeper)
    assert _answer(registered, "q-1")["status"] == 200
    assert any(u["ep"] == sleeper for u in registered.items("reg-updates"))


def test_legacy_get_returns_a_server_chosen_id(api: Api, sim: SimulatorServer, registered: Receiver) -> None:
    response = api.get(f"/v2/endpoints/{first_device(sim)}/3303/0/5700")
    assert response.status_code == 202
    async_id = response.json()["async-response-id"]
    assert _answer(registered, async_id)["status"] == 200


def test_early_async_delivers_the_answer_before_the_202(
    make_sim: Callable[..., SimulatorServer], receiver: Receiver
) -> None:
    sim = make_sim(early_async=True)
    api = Api(sim.url)
    api.register(receiver.url)
    response = api.get(f"/v2/endpoints/{first_device(sim)}/3/0/0")
    async_id = response.json()["async-response-id"]
    assert [r["id"] for r in receiver.items("async-responses")] == [async_id]  # already there


def test_legacy_cache_only_no_resp_and_errors(api: Api, sim: SimulatorServer, registered: Receiver) -> None:
    device = first_device(sim)
    cached = api.get(f"/v2/endpoints/{device}/3/0/0", params={"cacheOnly": "true"})
    assert (cached.status_code, cached.text) == (200, "devicehooks")
    light = first_device(sim, "sim-light")
    assert (
        api.put(f"/v2/endpoints/{light}/3311/0/5851", data="12", params={"noResp": "true"}).status_code == 204
    )
    assert sim.sim.device(light).values["/3311/0/5851"] == 12  # type: ignore[union-attr]
    assert api.get("/v2/endpoints/nope/3/0/0").status_code == 410
    assert api.get(f"/v2/endpoints/{device}/42/0/0").status_code == 404


def test_endpoint_resources_list(api: Api, sim: SimulatorServer) -> None:
    resources = api.get(f"/v2/endpoints/{first_device(sim)}").json()
    assert {"uri": "/3303/0/5700", "rt": "temperature", "obs": True, "type": "text/plain"} in resources
    assert api.get("/v2/endpoints/nope").status_code == 404
