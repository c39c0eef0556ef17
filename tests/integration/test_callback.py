"""The callback route against a real Redis: verify, check, enqueue exactly once, answer."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from redis import Redis

from app import create_app
from app.config import Settings
from app.redis_server import RedisServer
from tests.conftest import HEADERS, sample

PATH = "/notify"


def make_client(settings: Settings, redis: Redis) -> FlaskClient:
    """A test client of the real app on the given Redis."""
    return create_app({"SETTINGS": settings, "REDIS": redis}).test_client()


@pytest.fixture
def client(settings: Settings, redis: Redis) -> FlaskClient:
    return make_client(settings, redis)


def queued(redis: Redis, queue: str = "test") -> int:
    """How many jobs wait on the queue."""
    return int(redis.llen(f"rq:queue:{queue}"))


def test_valid_batch_is_queued_as_one_job_and_acknowledged(client: FlaskClient, redis: Redis) -> None:
    body = sample("batches/notifications.json")
    response = client.put(PATH, data=body, headers=HEADERS)
    assert response.status_code == 204
    assert queued(redis) == 1
    (key,) = redis.keys("devicehooks:body:*")
    assert redis.get(key) == body


def test_empty_body_is_the_registration_check_and_queues_nothing(client: FlaskClient, redis: Redis) -> None:
    response = client.put(PATH, data=b"", headers=HEADERS)
    assert response.status_code == 204
    assert queued(redis) == 0


def test_previous_secret_is_accepted_while_rotating(settings: Settings, redis: Redis) -> None:
    rotating = settings.with_overrides(
        callback_headers={"Authorization": "Bearer new"},
        callback_headers_previous={"Authorization": "Bearer old"},
    )
    client = make_client(rotating, redis)
    assert client.put(PATH, data=b"{}", headers={"Authorization": "Bearer old"}).status_code == 204
    assert client.put(PATH, data=b"{}", headers={"authorization": "Bearer new"}).status_code == 204
    assert client.put(PATH, data=b"{}", headers={"Authorization": "Bearer older"}).status_code == 401
    assert queued(redis) == 2


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X-Other": "x"}])
def test_missing_or_wrong_header_is_401_in_the_error_model_and_queues_nothing(
    client: FlaskClient, redis: Redis, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    response = client.put(PATH, data=sample("batches/notifications.json"), headers=headers)
    assert response.status_code == 401
    error = response.get_json()
    assert error["object"] == "error"
    assert error["code"] == 401
    assert error["type"] == "invalid_auth"
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert queued(redis) == 0
    assert "test-secret" not in response.get_data(as_text=True)
    assert "test-secret" not in caplog.text


def test_unauthenticated_empty_body_is_rejected_too(client: FlaskClient, redis: Redis) -> None:
    assert client.put(PATH, data=b"").status_code == 401


@pytest.mark.parametrize(
    "body", [b"[1, 2]", b'"text"', b"not json", b"{unterminated", b"\xff\xfe{}", b"{} trailing}"]
)
def test_body_that_is_not_a_json_object_is_400(client: FlaskClient, redis: Redis, body: bytes) -> None:
    response = client.put(PATH, data=body, headers=HEADERS)
    assert response.status_code == 400
    assert response.get_json()["type"] == "validation_error"
    assert queued(redis) == 0


def test_body_over_the_limit_is_413(settings: Settings, redis: Redis) -> None:
    client = make_client(settings.with_overrides(max_body_bytes=100), redis)
    body = json.dumps({"notifications": [{"ep": "x" * 200}]}).encode()
    response = client.put(PATH, data=body, headers=HEADERS)
    assert response.status_code == 413
    assert response.get_json()["code"] == 413
    assert queued(redis) == 0


def test_large_batch_gets_the_structural_check_and_is_queued(client: FlaskClient, redis: Redis) -> None:
    items = [{"ep": f"dev-{i}", "path": "/3303/0/5700", "payload": "MjMuNQ=="} for i in range(10_000)]
    response = client.put(PATH, data=json.dumps({"notifications": items}), headers=HEADERS)
    assert response.status_code == 204
    assert queued(redis) == 1


def test_caller_request_id_is_propagated(client: FlaskClient, redis: Redis) -> None:
    response = client.put(PATH, data=b"{}", headers={**HEADERS, "X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    (job_key,) = redis.keys("rq:job:*")
    assert b"abc-123" in redis.hget(job_key, "meta")


def test_request_id_is_generated_when_absent_or_malformed(client: FlaskClient) -> None:
    plain = client.put(PATH, data=b"{}", headers=HEADERS)
    weird = client.put(PATH, data=b"{}", headers={**HEADERS, "X-Request-ID": "bad id\u00e9"})
    assert len(plain.headers["X-Request-ID"]) == 32
    assert weird.headers["X-Request-ID"] != "bad id\u00e9"


def test_unknown_route_and_wrong_method_use_the_error_model(client: FlaskClient) -> None:
    missing = client.get("/nope")
    wrong = client.post(PATH, data=b"{}", headers=HEADERS)
    assert missing.status_code == 404
    assert missing.get_json()["object"] == "error"
    assert wrong.status_code == 405
    assert wrong.get_json()["code"] == 405
    assert wrong.headers["Allow"] == "PUT"
    assert wrong.headers["X-Request-ID"] == wrong.get_json()["request_id"]


def test_an_unexpected_failure_is_a_logged_500_in_the_error_model_and_the_next_put_works(
    client: FlaskClient, redis: Redis, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.batches import BatchQueue

    def broken(self: BatchQueue, body: bytes, request_id: str, source: str = "callback") -> str:
        raise KeyError("a bug")

    with monkeypatch.context() as patch:
        patch.setattr(BatchQueue, "enqueue", broken)
        response = client.put(PATH, data=b"{}", headers={**HEADERS, "X-Request-ID": "bug-1"})
    assert response.status_code == 500
    assert response.get_json() == {
        "object": "error", "code": 500, "type": "internal_server_error",
        "message": "internal error; see the service log", "fields": [], "request_id": "bug-1",
    }  # fmt: skip
    assert response.headers["X-Request-ID"] == "bug-1"
    assert "unhandled error request_id=bug-1" in caplog.text
    assert "KeyError" in caplog.text
    assert client.put(PATH, data=b"{}", headers=HEADERS).status_code == 204
    assert queued(redis) == 1


def test_accepted_batch_is_logged_with_request_and_job_id_at_debug_only(
    client: FlaskClient, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="app.callback")
    client.put(PATH, data=b"{}", headers={**HEADERS, "X-Request-ID": "quiet"})
    assert "request_id=quiet" not in caplog.text  # the worker's INFO line ties the two (test_async_delivery)
    caplog.set_level("DEBUG", logger="app.callback")
    client.put(PATH, data=b"{}", headers={**HEADERS, "X-Request-ID": "log-me"})
    job_ids = {key.decode().split(":")[-1] for key in redis.keys("rq:job:*")}
    assert any(f"request_id=log-me job={job_id}" in caplog.text for job_id in job_ids)


def test_healthz_answers_while_readyz_checks_redis(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").get_json() == {"status": "ready"}


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of this test's own, to stop and restart."""
    server = RedisServer(directory=str(tmp_path_factory.mktemp("own-redis"))).start()
    yield server
    server.stop()


def test_redis_down_gives_503_with_retry_after_and_recovery_after(
    settings: Settings, own_redis: RedisServer
) -> None:
    redis = Redis.from_url(own_redis.url, socket_timeout=1, socket_connect_timeout=0.5)
    client = make_client(settings.with_overrides(redis_url=own_redis.url), redis)
    assert client.put(PATH, data=b"{}", headers=HEADERS).status_code == 204

    own_redis.stop()
    down = client.put(PATH, data=b"{}", headers=HEADERS)
    assert down.status_code == 503
    assert down.headers["Retry-After"] == "1"
    assert down.get_json()["type"] == "service_unavailable"
    assert client.get("/readyz").status_code == 503

    own_redis.start()  # same port, same directory
    assert client.put(PATH, data=b"{}", headers=HEADERS).status_code == 204
    assert client.get("/readyz").status_code == 200
    assert redis.llen("rq:queue:test") == 1  # this server keeps nothing on disk: only the new job


NESTING_BOMB = b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"


@pytest.mark.parametrize(
    "body",
    [
        NESTING_BOMB,
        sample("strict_json/nan.json"),
        sample("strict_json/minus_infinity.json"),
        sample("strict_json/lone_surrogate.json"),
    ],
    ids=["nesting-bomb", "nan", "minus-infinity", "lone-surrogate"],
)
def test_json_that_python_would_take_or_choke_on_is_400_and_queues_nothing(
    client: FlaskClient, redis: Redis, body: bytes
) -> None:
    response = client.put(PATH, data=body, headers=HEADERS)
    assert response.status_code == 400
    error = response.get_json()
    assert error["type"] == "validation_error"
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert queued(redis) == 0


DM_CN = "notifications.mbedcloud.com"
PROXY = "10.0.0.5"


def cert_client(settings: Settings, redis: Redis) -> FlaskClient:
    """A client of the app requiring the client certificate's subject from a proxy header."""
    required = settings.with_overrides(
        client_cert=True, client_cert_header="X-Client-DN", forwarded_allow_ips=("10.0.0.0/24",)
    )
    return make_client(required, redis)


@pytest.mark.parametrize(
    ("remote", "dn"),
    [
        (PROXY, "CN=evil.example,O=Mallory"),  # wrong CN from the proxy
        (PROXY, None),  # the proxy forwarded no certificate
        ("192.0.2.9", f"CN={DM_CN}"),  # right subject, but from a peer that is not the proxy
    ],
    ids=["wrong-cn", "no-certificate", "header-from-untrusted-peer"],
)
def test_required_client_certificate_missing_or_wrong_is_401_and_queues_nothing(
    settings: Settings, redis: Redis, remote: str, dn: str | None
) -> None:
    client = cert_client(settings, redis)
    headers = {**HEADERS, **({"X-Client-DN": dn} if dn else {})}
    for body in (sample("batches/notifications.json"), b""):
        response = client.put(PATH, data=body, headers=headers, environ_base={"REMOTE_ADDR": remote})
        assert response.status_code == 401
        error = response.get_json()
        assert (error["object"], error["code"], error["type"]) == ("error", 401, "invalid_auth")
    assert queued(redis) == 0


def test_required_client_certificate_with_the_right_cn_from_the_proxy_is_accepted(
    settings: Settings, redis: Redis
) -> None:
    client = cert_client(settings, redis)
    headers = {**HEADERS, "X-Client-DN": f"CN={DM_CN},O=GlobalSign nv-sa,C=BE"}
    body = sample("batches/notifications.json")
    response = client.put(PATH, data=body, headers=headers, environ_base={"REMOTE_ADDR": PROXY})
    assert response.status_code == 204
    assert queued(redis) == 1
    # The certificate does not replace the shared secret: both are required.
    no_secret = client.put(
        PATH, data=body, headers={"X-Client-DN": f"CN={DM_CN}"}, environ_base={"REMOTE_ADDR": PROXY}
    )
    assert no_secret.status_code == 401
    assert client.get("/healthz").status_code == 200  # health checks present no certificate
