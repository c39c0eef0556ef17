"""The management API through Flask's test client, on the suite's real Redis."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from app import create_app, state
from app.config import Settings
from app.stores import REPLAY_FUNC
from tests.conftest import SAMPLES
from workers.batch import Rejection
from workers.deadletters import DeadLetters
from workers.events import Event
from workers.handlers.state import StateWriter
from workers.rejections import Rejections
from workers.testing import events_from_body, make_event

KEY = "mk-test-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
NOW = 1_764_520_100.0


class FakeDMClient:
    """Records device requests instead of sending them."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def device_request(self, ep: str, method: str, path: str, async_id: str, **options: Any) -> None:
        self.sent.append({"ep": ep, "method": method, "path": path, "async_id": async_id, **options})


@pytest.fixture
def dm() -> FakeDMClient:
    return FakeDMClient()


def make_client(settings: Settings, redis: Redis, dm: FakeDMClient | None = None) -> FlaskClient:
    app = create_app({"SETTINGS": settings, "REDIS": redis, "DM_CLIENT": dm})
    return app.test_client()


@pytest.fixture
def client(settings: Settings, redis: Redis, dm: FakeDMClient) -> FlaskClient:
    keys = (KEY, "mk-other-0123456789abc")
    return make_client(settings.with_overrides(management_api_keys=keys), redis, dm)


def seed_devices(redis: Redis, count: int) -> None:
    """``count`` devices dev-00.., every third a Sensor, the rest Lights; dev-01 deregistered."""
    events = [
        Event(kind="registrations", ep=f"dev-{i:02d}", ept="Sensor" if i % 3 == 0 else "Light", resources=[])
        for i in range(count)
    ]
    writer = StateWriter(redis, state.Bounds())
    writer.write(events, now=NOW)
    writer.write([Event(kind="de-registrations", ep="dev-01")], now=NOW + 60)


def get(client: FlaskClient, url: str, **kwargs: Any) -> Any:
    response = client.get(url, headers=AUTH, **kwargs)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def assert_error(response: Any, code: int, type_: str) -> dict[str, Any]:
    body: dict[str, Any] = response.get_json()
    assert response.status_code == code
    assert body["object"] == "error"
    assert (body["code"], body["type"]) == (code, type_)
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_without_management_keys_every_route_answers_404(settings: Settings, redis: Redis) -> None:
    client = make_client(settings, redis)
    for url in ("/api/v1/devices", "/api/v1/openapi.json", "/api/v1/dead-letters"):
        assert_error(client.get(url, headers=AUTH), 404, "not_found")


def test_a_missing_or_wrong_key_is_refused_with_401_and_never_logged(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert_error(client.get("/api/v1/devices"), 401, "invalid_auth")
    assert_error(
        client.get("/api/v1/devices", headers={"Authorization": "Bearer wrong-key-0123456789"}),
        401,
        "invalid_auth",
    )
    assert_error(client.get("/api/v1/devices", headers={"Authorization": KEY}), 401, "invalid_auth")
    assert (
        client.get("/api/v1/devices", headers={"Authorization": "Bearer mk-other-0123456789abc"}).status_code
        == 200
    )
    assert client.get("/api/v1/devices", headers=AUTH).status_code == 200
    assert KEY not in caplog.text


def test_every_response_carries_the_callers_request_id(client: FlaskClient) -> None:
    response = client.get("/api/v1/devices", headers={**AUTH, "X-Request-ID": "my-trace-1"})
    assert response.headers["X-Request-ID"] == "my-trace-1"
    error = client.get("/api/v1/devices/nope", headers={**AUTH, "X-Request-ID": "my-trace-2"})
    assert assert_error(error, 404, "not_found")["request_id"] == "my-trace-2"


def test_devices_page_by_id_with_after_and_has_more(client: FlaskClient, redis: Redis) -> None:
    seed_devices(redis, 7)
    first = get(client, "/api/v1/devices?limit=3")
    assert [d["id"] for d in first["data"]] == ["dev-00", "dev-01", "dev-02"]
    assert (first["object"], first["limit"], first["after"], first["order"], first["has_more"]) == (
        "list",
        3,
        None,
        "ASC",
        True,
    )
    assert "total_count" not in first
    rest = get(client, "/api/v1/devices?limit=3&after=dev-05")
    assert ([d["id"] for d in rest["data"]], rest["has_more"]) == (["dev-06"], False)
    down = get(client, "/api/v1/devices?limit=2&order=DESC&after=dev-03&include=total_count")
    assert [d["id"] for d in down["data"]] == ["dev-02", "dev-01"]
    assert (down["has_more"], down["total_count"]) == (True, 7)


def test_device_filters_follow_the_eq_neq_in_nin_lte_gte_convention(
    client: FlaskClient, redis: Redis
) -> None:
    seed_devices(redis, 7)

    def ids(params: str) -> list[str]:
        return [d["id"] for d in get(client, f"/api/v1/devices?{params}")["data"]]

    assert ids("ept__eq=Sensor") == ["dev-00", "dev-03", "dev-06"]
    assert ids("status__neq=registered") == ["dev-01"]
    assert ids("ept__in=Sensor,Nothing&status__eq=registered") == ["dev-00", "dev-03", "dev-06"]
    assert ids("ept__nin=Light,Sensor") == []
    later = state.iso(NOW + 30)
    assert ids(f"last_seen__gte={later}") == ["dev-01"]
    assert ids("last_seen__lte=20251130T000000Z") == []
    assert len(ids("last_seen__gte=20251130T000000Z")) == 7
    counted = get(client, "/api/v1/devices?ept__eq=Light&include=total_count&limit=2")
    assert (len(counted["data"]), counted["total_count"], counted["has_more"]) == (2, 4, True)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ("limit=1", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("order=UP", "order"),
        ("include=everything", "include"),
        ("colour__eq=red", "colour__eq"),
        ("ept__like=L", "ept__like"),
        ("last_seen__gte=yesterday", "last_seen__gte"),
        ("ept__in=", "ept__in"),
    ],
)
def test_a_bad_parameter_is_a_validation_error_naming_it(client: FlaskClient, params: str, name: str) -> None:
    body = assert_error(client.get(f"/api/v1/devices?{params}", headers=AUTH), 400, "validation_error")
    assert [f["name"] for f in body["fields"]] == [name]


def test_one_device_and_its_last_known_values(client: FlaskClient, redis: Redis) -> None:
    StateWriter(redis, state.Bounds()).write(
        events_from_body(SAMPLES / "state" / "device_lifecycle.json"), now=NOW
    )
    device = get(client, "/api/v1/devices/sensor-1")
    assert (device["object"], device["id"], device["ep"], device["ept"], device["status"]) == (
        "device", "sensor-1", "sensor-1", "Sensor", "registered",
    )  # fmt: skip
    values = get(client, "/api/v1/devices/sensor-1/resources")
    assert [(r["path"], r["value"], r["ct"]) for r in values["data"]] == [
        ("/3303/0/5700", 22.0, "text/plain")
    ]
    assert_error(client.get("/api/v1/devices/ghost/resources", headers=AUTH), 404, "not_found")


def test_history_filters_on_kind_path_and_timestamp(client: FlaskClient, redis: Redis) -> None:
    StateWriter(redis, state.Bounds()).write(
        events_from_body(SAMPLES / "state" / "device_lifecycle.json"), now=NOW
    )

    def values(params: str) -> list[Any]:
        return [e["value"] for e in get(client, f"/api/v1/devices/sensor-1/events?{params}")["data"]]

    assert values("kind__eq=notifications") == [21.5, 22.0]
    assert values("kind__eq=notifications&order=DESC") == [22.0, 21.5]
    assert values(f"timestamp__gte={state.iso(1764520030)}&path__eq=/3303/0/5700") == [22.0]
    page = get(client, "/api/v1/devices/sensor-1/events?limit=2&include=total_count")
    assert (len(page["data"]), page["has_more"], page["total_count"]) == (2, True, 3)
    after = get(client, f"/api/v1/devices/sensor-1/events?after={page['data'][1]['id']}")
    assert [e["value"] for e in after["data"]] == [22.0]
    bad = assert_error(
        client.get("/api/v1/devices/sensor-1/events?after=x", headers=AUTH), 400, "validation_error"
    )
    assert [f["name"] for f in bad["fields"]] == ["after"]


def test_a_device_request_goes_through_the_tracker_and_is_listed_until_resolved(
    client: FlaskClient, redis: Redis, dm: FakeDMClient, settings: Settings
) -> None:
    response = client.post(
        "/api/v1/devices/lamp-1/requests",
        headers=AUTH,
        json={"method": "put", "path": "3311/0/5850", "value": True},
    )
    assert response.status_code == 202
    created = response.get_json()
    (sent,) = dm.sent
    assert (sent["ep"], sent["method"], sent["path"], sent["async_id"], sent["payload"]) == (
        "lamp-1", "PUT", "/3311/0/5850", created["id"], "true",
    )  # fmt: skip
    assert (created["object"], created["state"]) == ("async-request", "pending")
    listed = get(client, "/api/v1/async-requests?state__eq=pending")
    assert [r["id"] for r in listed["data"]] == [created["id"]]
    from app.dm.asyncs import AsyncTracker, Response

    AsyncTracker(redis, queue_name=settings.queue_name).resolve(
        Response(id=created["id"], status=200, payload_b64="MQ==", ct="text/plain")
    )
    settled = get(client, f"/api/v1/async-requests/{created['id']}")
    assert (settled["state"], settled["status"], settled["value"], settled["error"]) == (
        "resolved",
        200,
        "1",
        None,
    )
    assert get(client, "/api/v1/async-requests?state__eq=pending")["data"] == []


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ({"path": "/3/0/1"}, "method"),
        ({"method": "PATCH", "path": "/3/0/1"}, "method"),
        ({"method": "GET"}, "path"),
        ({"method": "PUT", "path": "/1", "value": [1]}, "value"),
    ],
)
def test_a_bad_device_request_names_the_field(
    client: FlaskClient, dm: FakeDMClient, body: dict[str, Any], name: str
) -> None:
    error = assert_error(
        client.post("/api/v1/devices/d/requests", headers=AUTH, json=body), 400, "validation_error"
    )
    assert [f["name"] for f in error["fields"]] == [name]
    assert dm.sent == []


def test_dead_letters_list_get_replay_and_delete(
    client: FlaskClient, redis: Redis, settings: Settings
) -> None:
    dead = DeadLetters(redis)
    events = [make_event(ep="d", path="/3303/0/5700", payload="1").to_dict()]
    first = dead.add("mine", events, "RuntimeError: down", "Traceback ...", 5, "job-1")
    second = dead.add("theirs", events * 2, "ValueError: bad", "Traceback ...", 3, "job-2")
    listed = get(client, "/api/v1/dead-letters?handler__eq=theirs")
    assert [(d["id"], d["count"], d["attempts"]) for d in listed["data"]] == [(second, 2, 3)]
    assert "events" not in listed["data"][0]
    letter = get(client, f"/api/v1/dead-letters/{first}")
    assert (letter["object"], letter["handler"], letter["events"]) == ("dead-letter", "mine", events)
    replay = client.post(f"/api/v1/dead-letters/{first}/replay", headers=AUTH)
    assert replay.status_code == 202
    job_id = replay.get_json()["job"]
    queue = Queue(settings.queue_name, connection=redis, serializer=JSONSerializer)
    job = queue.fetch_job(job_id)
    assert job is not None
    assert (job.func_name, job.args) == (REPLAY_FUNC, [first])
    assert client.delete(f"/api/v1/dead-letters/{second}", headers=AUTH).status_code == 204
    assert_error(client.delete(f"/api/v1/dead-letters/{second}", headers=AUTH), 404, "not_found")
    assert_error(client.post("/api/v1/dead-letters/nope/replay", headers=AUTH), 404, "not_found")


def test_rejections_are_listed_oldest_first_with_stable_ids(client: FlaskClient, redis: Redis) -> None:
    store = Rejections(redis)
    store.record([Rejection("notifications", 0, "ep: missing", {"path": "/1"})], "job-1", "rid-1")
    store.record([Rejection("future-kind", None, "unknown kind", [])], "job-2", "rid-2")
    listed = get(client, "/api/v1/rejections?include=total_count")
    assert [(r["kind"], r["job"]) for r in listed["data"]] == [
        ("notifications", "job-1"),
        ("future-kind", "job-2"),
    ]
    assert listed["total_count"] == 2
    again = get(client, f"/api/v1/rejections?after={listed['data'][0]['id']}")
    assert [r["job"] for r in again["data"]] == ["job-2"]
    assert [r["job"] for r in get(client, "/api/v1/rejections?kind__eq=future-kind")["data"]] == ["job-2"]
