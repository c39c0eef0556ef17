"""Bearer API keys, the error model and X-Request-ID on every response."""

from __future__ import annotations

import requests

from app.simulator import SimulatorServer
from tests.simulator.conftest import Api

ERROR_KEYS = {"object", "code", "type", "message", "fields", "request_id"}


def test_a_missing_key_is_401_in_the_error_model(sim: SimulatorServer) -> None:
    response = requests.get(sim.url + "/v2/notification/callback", timeout=5)
    assert response.status_code == 401
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert (body["object"], body["code"], body["type"]) == ("error", 401, "invalid_auth")
    assert body["fields"] == []
    assert body["request_id"] == response.headers["X-Request-ID"]


def test_a_wrong_key_is_401(sim: SimulatorServer) -> None:
    response = Api(sim.url, "ak_wrong").get("/v2/subscriptions")
    assert response.status_code == 401
    assert response.json()["type"] == "invalid_auth"


def test_every_configured_key_is_accepted(make_sim) -> None:  # type: ignore[no-untyped-def]
    server = make_sim(api_keys=("ak_one", "ak_two"))
    assert Api(server.url, "ak_two").get("/v2/subscriptions").status_code == 200


def test_request_id_is_propagated_or_generated(api: Api) -> None:
    sent = api.get("/v2/subscriptions", headers={"X-Request-ID": "trace-123"})
    assert sent.headers["X-Request-ID"] == "trace-123"
    generated = api.get("/v2/subscriptions").headers["X-Request-ID"]
    assert len(generated) == 32


def test_unknown_routes_and_methods_use_the_error_model(api: Api) -> None:
    missing = api.get("/v2/no-such-thing")
    assert missing.status_code == 404
    assert set(missing.json()) == ERROR_KEYS
    wrong_method = api.post("/v2/notification/callback")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == 405


def test_stats_need_no_key(sim: SimulatorServer) -> None:
    stats = requests.get(sim.url + "/stats", timeout=5).json()
    for key in ("sent", "acknowledged", "retried", "dropped", "in_flight", "queued", "batches"):
        assert stats[key] == 0
    assert stats["callback_removed"] is False
