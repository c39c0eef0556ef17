"""/metrics: the web's counters, the workers' counters kept in Redis, and what is read per scrape."""

from __future__ import annotations

import json

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from app import counters, create_app
from app.batches import make_queue
from app.config import Settings
from app.redis_server import free_port
from tests.conftest import HEADERS
from tests.unit.test_api import AUTH, KEY
from workers.deadletters import DeadLetters
from workers.dispatch import Dispatcher
from workers.handlers.delivery import Failure, Lanes
from workers.handlers.router import Router
from workers.testing import make_event


def client_for(settings: Settings, redis: Redis, keys: tuple[str, ...] = (KEY,)) -> FlaskClient:
    return create_app(
        {"SETTINGS": settings.with_overrides(management_api_keys=keys), "REDIS": redis}
    ).test_client()


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_need_a_key_and_are_off_without_keys(settings: Settings, redis: Redis) -> None:
    assert client_for(settings, redis).get("/metrics").status_code == 401
    assert (
        client_for(settings, redis).get("/metrics", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    assert client_for(settings, redis, keys=()).get("/metrics", headers=AUTH).status_code == 404


def test_callback_puts_are_counted_by_status_with_their_ack_latency(settings: Settings, redis: Redis) -> None:
    client = client_for(settings, redis)
    before = scrape(client)
    body = json.dumps({"notifications": [{"ep": "d", "path": "/1/0/1", "payload": "MQ=="}]})
    assert client.put("/notify", data=body, headers=HEADERS).status_code == 204
    assert client.put("/notify", data=body, headers=HEADERS).status_code == 204
    assert client.put("/notify", data=body).status_code == 401
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("devicehooks_callback_puts_total", status="204") == 2
    assert delta("devicehooks_callback_puts_total", status="401") == 1
    assert delta("devicehooks_ack_seconds_count") == 3
    assert delta("devicehooks_callback_puts_total", status="200") == 0
    client.get("/healthz")
    assert (
        scrape(client)[("devicehooks_ack_seconds_count", ())] == after[("devicehooks_ack_seconds_count", ())]
    )


def test_worker_counters_reach_the_scrape_through_redis(settings: Settings, redis: Redis) -> None:
    router = Router()
    router.add(lambda event: None, "notifications", name="ok")

    def broken(event: object) -> None:
        raise RuntimeError("down")

    router.add(broken, "notifications", name="broken", attempts=1)
    dispatcher = Dispatcher(router, Lanes(), redis, make_queue(redis, settings.queue_name))
    events = [make_event(ep="d", path="/3303/0/5700", payload="1"), make_event("registrations", ep="d")]
    dispatcher.dispatch(events, source="job-1")
    dispatcher.dispatch(events[:1], source="job-2")
    samples = scrape(client_for(settings, redis))
    assert samples[("devicehooks_batches_total", ())] == 2
    assert samples[("devicehooks_events_total", (("kind", "notifications"),))] == 2
    assert samples[("devicehooks_events_total", (("kind", "registrations"),))] == 1
    assert samples[("devicehooks_handler_delivered_total", (("handler", "ok"),))] == 2
    assert samples[("devicehooks_handler_failed_total", (("handler", "broken"),))] == 2
    assert samples[("devicehooks_handler_dead_letters_total", (("handler", "broken"),))] == 2
    assert (
        samples[("devicehooks_store_size", (("store", "dead_letters"),))] == DeadLetters(redis).count() == 2
    )
    assert samples[("devicehooks_queue_depth", ())] == 0
    assert samples[("devicehooks_workers", ())] == 0
    assert samples[("devicehooks_async_requests", (("state", "pending"),))] == 0


def test_batches_and_events_are_counted_per_minute_for_the_status_page(redis: Redis) -> None:
    now = 1_764_520_000.0 - 1_764_520_000.0 % 60 + 5
    counters.count_batch(redis, ["notifications", "notifications", "registrations"], {}, {}, now=now)
    counters.count_batch(redis, ["notifications"], {}, {}, now=now + 10)
    assert counters.minute_counts(redis, now + 20)["current"] == {"batches": 2, "events": 4}
    assert counters.minute_counts(redis, now + 60) == {
        "previous": {"batches": 2, "events": 4},
        "current": {"batches": 0, "events": 0},
    }
    assert 0 < redis.ttl(counters.minute_key(now)) <= counters.MINUTE_TTL


def test_counting_is_best_effort_when_redis_is_away() -> None:
    gone = Redis(port=free_port(), socket_connect_timeout=0.5)
    handler = Router().add(lambda event: None, "notifications", name="h")
    failure = Failure(handler, [make_event(ep="d", path="/1/0/1", payload="1")], "E: x")
    counters.count_dispatch(gone, failure.events, [(handler, failure.events)], [failure])
    counters.count_settled(gone, [failure], attempt=1)
