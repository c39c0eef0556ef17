"""PUT/GET/DELETE /v2/notification/callback: validation, the registration check, replacement."""

from __future__ import annotations

from app.simulator import SimulatorServer
from tests.simulator.conftest import Api, Receiver


def test_registration_check_is_an_empty_put_with_the_headers(api: Api, receiver: Receiver) -> None:
    response = api.register(receiver.url, {"Authorization": "Bearer hook-secret"})
    assert response.status_code == 204
    [check] = receiver.puts
    assert check.body == b""
    assert check.headers["Authorization"] == "Bearer hook-secret"
    assert api.get("/v2/notification/callback").json() == {
        "url": receiver.url,
        "headers": {"Authorization": "Bearer hook-secret"},
    }


def test_a_receiver_answering_500_makes_registration_fail_with_400(api: Api, receiver: Receiver) -> None:
    receiver.script = [500]
    response = api.register(receiver.url)
    assert response.status_code == 400
    body = response.json()
    assert body["object"] == "error"
    assert body["code"] == 400
    assert "500" in body["message"]
    assert api.get("/v2/notification/callback").status_code == 404


def test_an_unreachable_url_fails_with_400(api: Api, sim: SimulatorServer) -> None:
    response = api.register("http://127.0.0.1:9/nothing-listens-here")
    assert response.status_code == 400
    assert "not accessible" in response.json()["message"]


def test_redirects_are_not_followed(api: Api, receiver: Receiver) -> None:
    receiver.script = [302]
    response = api.register(receiver.url)
    assert response.status_code == 400
    assert "redirect" in response.json()["message"]
    assert len(receiver.puts) == 1


def test_url_is_required_and_url_plus_headers_fit_in_400_characters(api: Api, receiver: Receiver) -> None:
    assert api.put("/v2/notification/callback", json={"headers": {}}).status_code == 400
    assert api.put("/v2/notification/callback", json={"url": "ftp://x/y"}).status_code == 400
    long_header = {"X-Secret": "s" * (400 - len(receiver.url) - len("X-Secret") + 1)}
    response = api.register(receiver.url, long_header)
    assert response.status_code == 400
    assert "400" in response.json()["message"]
    fitting = {"X-Secret": "s" * (400 - len(receiver.url) - len("X-Secret"))}
    assert api.register(receiver.url, fitting).status_code == 204
    assert receiver.puts  # only the fitting registration was checked
    assert len(receiver.puts) == 1


def test_a_body_that_is_not_json_is_415(api: Api) -> None:
    response = api.put("/v2/notification/callback", data="url=x", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415


def test_a_new_registration_replaces_the_old(api: Api, receiver: Receiver) -> None:
    assert api.register(receiver.url + "/old").status_code == 204
    assert api.register(receiver.url + "/new", {"X-Key": "2"}).status_code == 204
    assert api.get("/v2/notification/callback").json()["url"] == receiver.url + "/new"


def test_get_and_delete_without_a_callback_are_404_and_delete_removes_it(
    api: Api, receiver: Receiver
) -> None:
    assert api.get("/v2/notification/callback").status_code == 404
    assert api.delete("/v2/notification/callback").status_code == 404
    assert api.register(receiver.url).status_code == 204
    assert api.delete("/v2/notification/callback").status_code == 204
    assert api.get("/v2/notification/callback").status_code == 404
    assert api.get("/v2/notification/channel").status_code == 404
