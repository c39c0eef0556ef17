"""The status page through Flask's test client: login, session, what it shows, the replay button."""

from __future__ import annotations

import re

from flask import request
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from app import create_app, state
from app.config import Settings
from app.stores import REPLAY_FUNC
from tests.conftest import HEADERS, SAMPLES
from tests.unit.test_api import KEY, NOW
from workers.deadletters import DeadLetters
from workers.handlers.state import StateWriter
from workers.testing import events_from_body


def client_for(settings: Settings, redis: Redis, keys: tuple[str, ...] = (KEY,)) -> FlaskClient:
    return create_app(
        {"SETTINGS": settings.with_overrides(management_api_keys=keys), "REDIS": redis}
    ).test_client()


def csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def log_in(client: FlaskClient, key: str = KEY) -> int:
    token = csrf(client.get("/status/login").get_data(as_text=True))
    return client.post("/status/login", data={"key": key, "csrf": token}).status_code


def test_the_page_is_off_without_keys_and_asks_for_a_login_otherwise(
    settings: Settings, redis: Redis
) -> None:
    assert client_for(settings, redis, keys=()).get("/status").status_code == 404
    response = client_for(settings, redis).get("/status")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/status/login")


def test_a_wrong_key_is_refused_and_a_right_one_opens_a_session_cookie(
    settings: Settings, redis: Redis
) -> None:
    client = client_for(settings, redis)
    assert log_in(client, "not-the-key-0123456789") == 401
    assert client.get("/status").status_code == 302
    assert log_in(client) == 302
    cookie = client.get_cookie("devicehooks_session")
    assert cookie is not None
    assert cookie.http_only
    assert cookie.same_site == "Lax"
    assert KEY not in cookie.value
    assert client.get("/status").status_code == 200


def test_a_login_without_the_forms_token_is_refused(settings: Settings, redis: Redis) -> None:
    client = client_for(settings, redis)
    assert client.post("/status/login", data={"key": KEY}).status_code == 400


def test_removing_a_key_ends_its_sessions(settings: Settings, redis: Redis) -> None:
    client = client_for(settings, redis, keys=(KEY, "mk-second-0123456789ab"))
    assert log_in(client) == 302
    cookie = client.get_cookie("devicehooks_session")
    assert cookie is not None
    same_secret = settings.with_overrides(session_secret="fixed-secret-for-both-apps")
    before = client_for(same_secret, redis, keys=(KEY,))
    after = client_for(same_secret, redis, keys=("mk-second-0123456789ab",))
    assert log_in(before) == 302
    moved = before.get_cookie("devicehooks_session")
    assert moved is not None
    after.set_cookie("devicehooks_session", moved.value)
    assert after.get("/status").status_code == 302


def test_overview_shows_devices_values_and_dead_letters_without_javascript(
    settings: Settings, redis: Redis
) -> None:
    StateWriter(redis, state.Bounds()).write(
        events_from_body(SAMPLES / "state" / "device_lifecycle.json"), now=NOW
    )
    letter = DeadLetters(redis).add(
        "mypkg:on_event", [{"kind": "notifications"}], "RuntimeError: down", "tb", 5, "j"
    )
    client = client_for(settings, redis)
    log_in(client)
    html = client.get("/status").get_data(as_text=True)
    assert 'data-ep="lamp-1"' in html
    assert 'data-ep="sensor-1"' in html
    assert "/3303/0/5700 = <b>22.0</b>" in html
    assert f'data-letter="{letter}"' in html
    assert "RuntimeError: down" in html
    device = client.get("/status/devices/sensor-1").get_data(as_text=True)
    assert device.count('class="event"') == 3
    assert client.get("/status/devices/ghost").status_code == 404


def test_overview_lists_the_dead_letters_that_failed_last(settings: Settings, redis: Redis) -> None:
    from app.status import DEAD_SHOWN

    dead = DeadLetters(redis)
    letters = [
        dead.add("h", [{"kind": "notifications"}], f"E: {n}", "tb", 1, "j") for n in range(DEAD_SHOWN + 5)
    ]
    client = client_for(settings, redis)
    log_in(client)
    html = client.get("/status").get_data(as_text=True)
    shown = re.findall(r'data-letter="([^"]+)"', html)
    assert shown == letters[::-1][:DEAD_SHOWN]  # newest first, whatever their (random) ids


def test_the_replay_button_queues_the_replay_job(settings: Settings, redis: Redis) -> None:
    letter = DeadLetters(redis).add("h", [{"kind": "notifications"}], "E: x", "tb", 1, "j")
    client = client_for(settings, redis)
    log_in(client)
    token = csrf(client.get("/status").get_data(as_text=True))
    assert client.post(f"/status/dead-letters/{letter}/replay").status_code == 400
    response = client.post(f"/status/dead-letters/{letter}/replay", data={"csrf": token})
    assert response.status_code == 302
    queue = Queue(settings.queue_name, connection=redis, serializer=JSONSerializer)
    (job,) = queue.get_jobs()
    assert (job.func_name, job.args) == (REPLAY_FUNC, [letter])
    assert "queued" in client.get(response.headers["Location"]).get_data(as_text=True)


def test_sessions_are_opened_only_under_status_so_the_callback_pays_nothing(
    settings: Settings, redis: Redis
) -> None:
    app = create_app({"SETTINGS": settings.with_overrides(management_api_keys=(KEY,)), "REDIS": redis})
    interface = app.session_interface
    with app.test_request_context("/notify", method="PUT"):
        assert interface.is_null_session(interface.open_session(app, request))
    with app.test_request_context("/status/login"):
        assert not interface.is_null_session(interface.open_session(app, request))
    client = app.test_client()
    response = client.put("/notify", data=b'{"notifications": []}', headers=HEADERS)
    assert response.status_code == 204
    assert "Set-Cookie" not in response.headers
