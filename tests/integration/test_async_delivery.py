"""Async results in the worker, in process on a real Redis: one poison async-response is contained to its
item, results are decoded once with the configured object model, and a named handler is called once per
settled request (claim before the call, release on failure, dead letter when a run died in the call)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis
from redis.exceptions import ExecAbortError, ResponseError
from rq.job import Job
from rq.serializers import JSONSerializer

from app.batches import BatchQueue, body_key
from app.config import Settings
from app.dm.asyncs import AsyncResult, AsyncTracker, Response, delivery_job_id
from tests.conftest import SAMPLES
from tests.fixtures import async_handlers
from workers import jobs, runtime
from workers.asyncs import INTERRUPTED, event_from_result, resolve
from workers.batch import Rejection
from workers.deadletters import DeadLetters
from workers.events import Event
from workers.rejections import Rejections

MODEL_FILE = str(SAMPLES / "objects" / "vendor-sensor.json")


def b64(text: str) -> str:
    """A payload as Device Management sends it."""
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def rt(redis: Redis, settings: Settings) -> Iterator[runtime.Runtime]:
    """The worker's runtime on the test Redis, with the vendor object model and the fixture handlers."""
    previous = runtime._current
    built = runtime.build(
        settings.with_overrides(object_model_files=(MODEL_FILE,)), redis, async_handlers.router
    )
    runtime.install(built)
    yield built
    built.lanes.shutdown()
    runtime._current = previous


def calls(redis: Redis, handler: str) -> list[dict[str, Any]]:
    """What a fixture handler recorded."""
    return [json.loads(raw) for raw in redis.lrange(async_handlers.PREFIX + handler, 0, -1)]


def run_batch(redis: Redis, body: dict[str, Any], job_id: str = "b1") -> dict[str, Any]:
    """Store a body and run the batch job on it, as the worker does."""
    redis.set(body_key(job_id), json.dumps(body))
    return jobs.process_batch(body_key(job_id))


def run_delivery(redis: Redis, async_id: str) -> dict[str, Any]:
    """Run the delivery job the tracker queued for ``async_id``."""
    assert redis.lrem("rq:queue:test", 1, delivery_job_id(async_id)) == 1, "no delivery job queued"
    return jobs.deliver_async_result(async_id)


def test_the_worker_logs_the_batch_with_its_request_id_and_job_id(
    redis: Redis, rt: runtime.Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    batches = BatchQueue(redis, "test")
    job_id = batches.enqueue(b'{"notifications": []}', "rid-logged")
    caplog.set_level("INFO", logger="workers.jobs")
    Job.fetch(job_id, connection=redis, serializer=JSONSerializer).perform()
    assert f"batch {job_id} request_id=rid-logged events=" in caplog.text


def test_an_id_redis_cannot_encode_is_contained_to_its_item(redis: Redis, rt: runtime.Runtime) -> None:
    good = rt.tracker.create("ep1", "GET", "/26241/0/1", handler="named")
    events = [
        Event(kind="notifications", ep="ep1", path="/3303/0/5700", uid="n1"),
        Event(kind="async-responses", id="\ud800", status=200),  # a lone surrogate: valid JSON
        Event(kind="async-responses", id=good, status=200, payload_b64=b64("23.5"), ct="text/plain"),
    ]
    kept, rejected = resolve(rt.tracker, events, rt.model)
    assert [e.uid or e.id for e in kept] == ["n1", good]
    assert kept[1].value == 23.5
    (rejection,) = rejected
    assert (rejection.kind, rejection.index) == ("async-responses", 0)
    assert "UnicodeEncodeError" in rejection.reason
    assert json.loads(json.dumps(rejection.to_dict()))["item"]["id"] == "\ud800"  # storable as JSON


@pytest.mark.parametrize(
    "weather",
    [
        ResponseError("LOADING Redis is loading the dataset in memory"),
        ResponseError("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'"),
        ResponseError("TRYAGAIN Multiple keys request during rehashing of slot"),
        ExecAbortError("EXECABORT Transaction discarded because of previous errors."),
    ],
)
def test_redis_weather_while_settling_is_the_batchs_error_not_the_items_rejection(
    rt: runtime.Runtime, monkeypatch: pytest.MonkeyPatch, weather: Exception
) -> None:
    def failing_over(response: Response) -> None:
        raise weather

    monkeypatch.setattr(rt.tracker, "resolve", failing_over)
    events = [Event(kind="async-responses", id="a1", status=200)]
    with pytest.raises(type(weather)):  # the job retries whole once Redis is back; no item is rejected
        resolve(rt.tracker, events, rt.model)


def test_a_rejection_while_settling_names_the_items_index_in_the_body(rt: runtime.Runtime) -> None:
    good = rt.tracker.create("ep1", "GET", "/26241/0/1", handler="named")
    parsed = [Rejection("async-responses", 0, "status: Not a valid integer.", {"id": "x", "status": "?"})]
    events = [  # body items 1 and 2: item 0 was rejected by the parser
        Event(kind="async-responses", id="\ud800", status=200),
        Event(kind="async-responses", id=good, status=200, payload_b64=b64("23.5"), ct="text/plain"),
    ]
    kept, rejected = resolve(rt.tracker, events, rt.model, parsed)
    assert [e.id for e in kept] == [good]
    assert [(r.kind, r.index) for r in rejected] == [("async-responses", 1)]


def test_an_async_results_value_is_shaped_by_its_resource_path_without_the_query(
    rt: runtime.Runtime,
) -> None:
    result = AsyncResult(
        id="a1", ep="ep1", path="/26241/0/1?pmin=10", method="GET", status=200,
        payload_b64=b64("23.5"), ct="text/plain", error=None, timed_out=False, resolved_at=1.0,
    )  # fmt: skip
    event = event_from_result(result, rt.model)
    assert (event.path, event.value, event.values) == ("/26241/0/1?pmin=10", 23.5, {"/26241/0/1": 23.5})


def test_a_poison_async_response_is_contained_and_the_rest_of_the_batch_delivered_once(
    redis: Redis, rt: runtime.Runtime
) -> None:
    good = rt.tracker.create("ep1", "GET", "/26241/0/1", handler="named")
    broken = rt.tracker.create("ep1", "GET", "/3/0/0", handler="named")
    redis.set(f"devicehooks:async:rec:{broken}", "not JSON")  # a record the settle script cannot read
    body = {
        "notifications": [{"ep": "ep1", "path": "/3303/0/5700", "payload": b64("21.5"), "uid": "n1"}],
        "async-responses": [
            {"id": broken, "status": 200, "payload": b64("1")},
            {"id": good, "status": 200, "payload": b64("23.5"), "ct": "text/plain"},
        ],
    }
    outcome = run_batch(redis, body)
    assert outcome["rejected"] == 1
    seen = [(c["kind"], c["uid"] or c["id"]) for c in calls(redis, "seen")]
    assert seen == [("notifications", "n1"), ("async-responses", good)]
    (rejection,) = Rejections(redis).list()
    assert (rejection["kind"], rejection["index"]) == ("async-responses", 0)
    assert "not resolved" in rejection["reason"]
    run_delivery(redis, good)
    assert [c["id"] for c in calls(redis, "named")] == [good]


def test_async_results_are_decoded_once_with_the_configured_object_model(
    redis: Redis, rt: runtime.Runtime
) -> None:
    async_id = rt.tracker.create("ep1", "GET", "/26241/0/1", handler="named")
    run_batch(
        redis,
        {
            "notifications": [{"ep": "ep1", "path": "/26241/0/1", "payload": b64("23.5"), "uid": "n1"}],
            "async-responses": [{"id": async_id, "status": 200, "payload": b64("23.5"), "ct": "text/plain"}],
        },
    )
    run_delivery(redis, async_id)
    notification, response = calls(redis, "seen")
    (named,) = calls(redis, "named")
    assert notification["value"] == response["value"] == named["value"] == 23.5
    assert (named["ep"], named["path"]) == ("ep1", "/26241/0/1")


def test_a_named_handler_is_called_once_however_often_its_delivery_runs(
    redis: Redis, rt: runtime.Runtime
) -> None:
    async_id = rt.tracker.create("ep1", "GET", "/3/0/0", handler="named")
    run_batch(redis, {"async-responses": [{"id": async_id, "status": 200, "payload": b64("acme")}]})
    assert run_delivery(redis, async_id)["delivered"] is True
    assert jobs.deliver_async_result(async_id)["already"] is True  # the job ran again (after a crash)
    assert [c["id"] for c in calls(redis, "named")] == [async_id]


def test_a_run_that_died_inside_the_call_is_not_called_again_but_dead_lettered(
    redis: Redis, rt: runtime.Runtime
) -> None:
    async_id = rt.tracker.create("ep1", "GET", "/3/0/0", handler="named")
    run_batch(redis, {"async-responses": [{"id": async_id, "status": 200, "payload": b64("acme")}]})
    assert rt.tracker.claim_call(async_id, "killed-run:1") is None  # a run claimed it, then died
    assert run_delivery(redis, async_id)["interrupted"] is True
    assert calls(redis, "named") == []
    (row,) = DeadLetters(redis).list()
    letter = DeadLetters(redis).get(row["id"])
    assert letter is not None
    assert (letter["handler"], letter["error"]) == ("named", INTERRUPTED)
    assert [event["id"] for event in letter["events"]] == [async_id]
    assert jobs.deliver_async_result(async_id)["already"] is True  # settled for good
    assert len(DeadLetters(redis).list()) == 1


def test_a_failure_before_the_call_is_durable_releases_the_claim(
    redis: Redis, rt: runtime.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    async_id = rt.tracker.create("ep1", "GET", "/3/0/0", handler="named")
    run_batch(redis, {"async-responses": [{"id": async_id, "status": 200, "payload": b64("acme")}]})

    def broken(*args: object) -> int:
        raise ConnectionError("Redis went away while the failure was being stored")

    monkeypatch.setattr(rt.dispatcher, "deliver_to", broken)
    with pytest.raises(ConnectionError):
        run_delivery(redis, async_id)
    monkeypatch.undo()
    assert jobs.deliver_async_result(async_id)["delivered"] is True  # the job's Retry
    assert [c["id"] for c in calls(redis, "named")] == [async_id]


def test_a_timed_out_request_reaches_its_handler_once_with_504(redis: Redis, rt: runtime.Runtime) -> None:
    async_id = rt.tracker.create("ep1", "GET", "/3/0/0", handler="named", timeout=0)
    assert [r.id for r in rt.tracker.expire_overdue()] == [async_id]
    run_delivery(redis, async_id)
    (named,) = calls(redis, "named")
    assert (named["id"], named["status"], named["error"], named["value"]) == (async_id, 504, "TIMEOUT", None)


def test_the_web_side_tracker_queues_deliveries_the_worker_runs(redis: Redis, rt: runtime.Runtime) -> None:
    web_tracker = AsyncTracker(redis, queue_name="test")  # e.g. the CLI or a web request tracking a 202
    early = Response("legacy-1", status=200, payload_b64=b64("23.5"), ct="text/plain")
    assert rt.tracker.resolve(early) is None  # the answer came before anyone knew the id: kept
    web_tracker.track("legacy-1", "ep1", "GET", "/26241/0/1", handler="named")
    run_delivery(redis, "legacy-1")
    (named,) = calls(redis, "named")
    assert (named["id"], named["value"]) == ("legacy-1", 23.5)
