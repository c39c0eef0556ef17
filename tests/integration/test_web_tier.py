"""The web tier under real traffic, against the Procfile's gunicorn: stale Redis connections in every
worker, slow clients, forwarding headers, client certificates, bad JSON only the worker finds."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import trustme
from redis import Redis

from app import create_app
from app.batches import connection_name
from app.config import Settings
from app.redis_server import RedisServer
from app.simulator import SimulatorConfig
from app.simulator.api import verify_callback
from app.simulator.channel import Channel
from app.simulator.errors import BadRequest as SimulatorBadRequest
from tests.conftest import HEADERS
from tests.integration.web import running_web, worker_pids
from tests.integration.workers import ROOT, worker_env
from tests.support import wait_until

pytestmark = pytest.mark.slow

PATH = "/notify"
BODY = b'{"notifications": [{"ep": "dev-1", "path": "/3303/0/5700", "payload": "MjMuNQ=="}]}'
DM_CN = "notifications.mbedcloud.com"


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of this test's own, to reconfigure, stop and restart."""
    server = RedisServer(directory=str(tmp_path_factory.mktemp("web-tier-redis"))).start()
    yield server
    server.stop()


def put(base: str, body: bytes = BODY, **kwargs: object) -> int:
    """PUT one batch over a new connection; its status."""
    return requests.put(base + PATH, data=body, headers=HEADERS, timeout=10, **kwargs).status_code  # type: ignore[arg-type]


def connected_workers(admin: Redis) -> set[int]:
    """Pids of the web workers that hold a request-path connection in Redis right now."""
    prefix = connection_name().rsplit(":", 1)[0] + ":"
    names = (str(c.get("name", "")) for c in admin.client_list())
    return {int(name[len(prefix) :]) for name in names if name.startswith(prefix)}


def put_until_every_worker_is_connected(base: str, admin: Redis, workers: set[int]) -> list[int]:
    """PUT over new connections until every worker has served one (it holds a connection); the statuses."""
    statuses: list[int] = []

    def every_worker_connected() -> bool:
        statuses.append(put(base))
        return workers <= connected_workers(admin)

    wait_until(every_worker_connected, timeout=30, interval=0, what="a PUT served by every web worker")
    return statuses


def two_workers(master: int) -> set[int]:
    """The master's two workers, once both are forked."""
    found: set[int] = wait_until(
        lambda: len(worker_pids(master)) == 2 and worker_pids(master), what="2 workers"
    )
    return found


def test_every_worker_acks_after_redis_closed_its_idle_connection(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    admin = Redis.from_url(own_redis.url)
    with running_web(own_redis.url, tmp_path / "web.log") as (base, master):
        workers = two_workers(master.pid)
        first = put_until_every_worker_is_connected(base, admin, workers)
        admin.config_set("timeout", 1)  # as `redis-server --timeout 1`, or managed Redis's idle timeout
        wait_until(lambda: not connected_workers(admin), timeout=15, what="Redis closing idle connections")
        after = put_until_every_worker_is_connected(base, admin, workers)
        assert requests.get(base + "/readyz", timeout=5).status_code == 200
    assert set(first) == {204}
    assert set(after) == {204}  # no false 503: each worker's first PUT after the idle period is queued
    assert admin.llen("rq:queue:test") == len(first) + len(after)  # and never twice


def test_every_worker_acks_after_a_redis_restart(own_redis: RedisServer, tmp_path: Path) -> None:
    with running_web(own_redis.url, tmp_path / "web.log") as (base, master):
        workers = two_workers(master.pid)
        first = put_until_every_worker_is_connected(base, Redis.from_url(own_redis.url), workers)
        own_redis.stop()
        own_redis.start()  # same port; nothing kept, no connection, no script
        admin = Redis.from_url(own_redis.url)
        after = put_until_every_worker_is_connected(base, admin, workers)
    assert set(first) == {204}
    assert set(after) == {204}
    assert admin.llen("rq:queue:test") == len(after)


def put_with_id(base: str, request_id: str) -> int:
    """PUT one batch with this X-Request-ID over a new connection; its status."""
    headers = {**HEADERS, "X-Request-ID": request_id}
    return requests.put(base + PATH, data=BODY, headers=headers, timeout=10).status_code


def queued_request_ids(admin: Redis) -> list[str]:
    """The request id of every job on the test queue (duplicates kept)."""
    ids = [job_id.decode() for job_id in admin.lrange("rq:queue:test", 0, -1)]
    metas = [admin.hget(f"rq:job:{job_id}", "meta") for job_id in ids]
    return [json.loads(meta)["request_id"] for meta in metas if meta is not None]


def test_concurrent_puts_while_redis_drops_connections_are_each_one_job_at_most_and_every_ack_one(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    """16 clients at once on the two workers' threads, whose PUTs share script calls (app.groupcommit),
    while Redis kills every client connection after each 25 acks: a reused connection's lost reply is
    retried once on a new one, which must make no second job for any PUT of the group."""
    admin = Redis.from_url(own_redis.url)
    statuses: dict[str, int] = {}
    acked = threading.Semaphore(0)
    done = threading.Event()

    def client(n: int) -> None:
        for k in range(40):
            rid = f"c{n}-{k}"
            statuses[rid] = put_with_id(base, rid)
            if statuses[rid] == 204:
                acked.release()

    def killer() -> int:
        kills = 0
        while not done.is_set():
            if all(acked.acquire(timeout=1) for _ in range(25)):
                admin.client_kill_filter(_type="normal", skipme=True)
                kills += 1
        return kills

    with running_web(own_redis.url, tmp_path / "web.log") as (base, _master):
        kills: list[int] = []
        kill_thread = threading.Thread(target=lambda: kills.append(killer()))
        kill_thread.start()
        clients = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(120)
        done.set()
        kill_thread.join(30)
    queued = queued_request_ids(admin)
    acks = {rid for rid, status in statuses.items() if status == 204}
    assert len(statuses) == 640
    assert set(statuses.values()) <= {204, 503}
    assert kills[0] >= 5  # the fault really happened, several times
    assert len(queued) == len(set(queued))  # no PUT became two jobs
    assert acks <= set(queued)  # every acknowledged PUT is queued
    assert len(acks) >= 600  # a killed connection is replaced, not answered 503


class SlowClients:
    """Connections that send a request's headers one byte at a time and never finish them."""

    def __init__(self, port: int, count: int) -> None:
        self.sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
        self.header = b"PUT /notify HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100_000
        self.offsets = [0] * count
        self.errors: list[OSError] = []
        self.stopped = threading.Event()
        for index in range(count):
            self._send_byte(index)  # each connection has data, so the server starts reading it
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _send_byte(self, index: int) -> None:
        offset = self.offsets[index]
        try:
            self.sockets[index].send(self.header[offset : offset + 1])
        except OSError as exc:
            self.errors.append(exc)
        self.offsets[index] = offset + 1

    def _trickle(self) -> None:
        index = 0
        while not self.stopped.wait(0.02):  # the client's pace, not a synchronisation
            self._send_byte(index % len(self.sockets))
            index += 1

    def still_open(self) -> int:
        """How many of the connections the server has not closed (nothing to read, no EOF)."""
        open_count = 0
        for sock in self.sockets:
            try:
                data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                open_count += 1
                continue
            except OSError:
                continue
            open_count += 0 if data is not None else 1
        return open_count

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        for sock in self.sockets:
            sock.close()


@contextmanager
def slow_clients(base: str, count: int) -> Iterator[SlowClients]:
    clients = SlowClients(int(base.rsplit(":", 1)[1]), count)
    try:
        yield clients
    finally:
        clients.close()


def test_twenty_slow_clients_do_not_stop_the_acks_or_healthz(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    with running_web(redis_url, tmp_path / "web.log") as (base, _), slow_clients(base, 20) as slow:
        statuses = [put(base) for _ in range(20)]
        health = [requests.get(base + "/healthz", timeout=10).status_code for _ in range(20)]
        assert not slow.errors
        assert slow.still_open() == 20  # all 20 held open, mid-headers, the whole time
    assert statuses == [204] * 20
    assert health == [200] * 20
    assert redis.llen("rq:queue:test") == 20


@pytest.mark.parametrize("proxies", ["", "127.0.0.1"], ids=["no-proxy-trusted", "client-is-a-trusted-proxy"])
def test_no_request_header_moves_the_callback_route(
    redis_url: str, redis: Redis, tmp_path: Path, proxies: str
) -> None:
    extra = {"FORWARDED_ALLOW_IPS": proxies} if proxies else {}
    with running_web(redis_url, tmp_path / "web.log", **extra) as (base, _):
        moved = requests.put(
            base + "/x" + PATH, data=BODY, headers={**HEADERS, "SCRIPT_NAME": "/x"}, timeout=10
        )
        rewritten = requests.put(
            base + "/elsewhere",
            data=BODY,
            headers={**HEADERS, "PATH_INFO": PATH, "SCRIPT_NAME": ""},
            timeout=10,
        )
        assert put(base) == 204  # the route itself still answers
    assert moved.status_code == 404
    assert moved.json()["object"] == "error"
    assert rewritten.status_code == 404
    assert redis.llen("rq:queue:test") == 1


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1, client certificates (right CN, wrong CN, other CA)."""
    directory = tmp_path_factory.mktemp("pki")
    ca, other_ca = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    files = {
        "ca": ca.cert_pem,
        "server_cert": server.cert_chain_pems[0],
        "server_key": server.private_key_pem,
        "dm": ca.issue_cert(DM_CN, common_name=DM_CN).private_key_and_cert_chain_pem,
        "wrong_cn": ca.issue_cert("evil.example", common_name="evil.example").private_key_and_cert_chain_pem,
        "other_ca": other_ca.issue_cert(DM_CN, common_name=DM_CN).private_key_and_cert_chain_pem,
    }
    paths: dict[str, str] = {}
    for name, blob in files.items():
        path = directory / f"{name}.pem"
        blob.write_to_path(str(path))
        paths[name] = str(path)
    return paths


def test_gunicorn_tls_accepts_only_the_right_client_certificate(
    redis_url: str, redis: Redis, tmp_path: Path, pki: dict[str, str]
) -> None:
    extra = {
        "WEB_TLS_CERT": pki["server_cert"],
        "WEB_TLS_KEY": pki["server_key"],
        "CALLBACK_CLIENT_CERT": "require",
        "CALLBACK_CLIENT_CA": pki["ca"],
    }
    tls = {"verify": pki["ca"]}
    with running_web(redis_url, tmp_path / "web.log", scheme="https", health_kwargs=tls, **extra) as (
        base,
        _,
    ):
        right = put(base, cert=pki["dm"], **tls)
        registration_check = put(base, b"", cert=pki["dm"], **tls)
        wrong = requests.put(base + PATH, data=BODY, headers=HEADERS, cert=pki["wrong_cn"], timeout=10, **tls)
        missing = requests.put(base + PATH, data=BODY, headers=HEADERS, timeout=10, **tls)
        with pytest.raises(requests.exceptions.SSLError):
            put(base, cert=pki["other_ca"], **tls)  # not signed by CALLBACK_CLIENT_CA: the handshake fails
        # The simulator presents a certificate when told to, as Device Management does.
        verify_callback(base + PATH, HEADERS, 10, cert=(pki["dm"], pki["dm"]), verify=pki["ca"])
        with pytest.raises(SimulatorBadRequest, match="401"):
            verify_callback(base + PATH, HEADERS, 10, verify=pki["ca"])
        channel = Channel(SimulatorConfig(client_cert=(pki["dm"], pki["dm"]), callback_ca=pki["ca"]))
        channel.set_callback(base + PATH, HEADERS)
        channel.start()
        try:
            seq = channel.publish("notifications", {"ep": "dev-1", "path": "/3/0/0", "payload": "YQ=="}, "k")
            assert channel.wait_settled(seq, timeout=20)
        finally:
            channel.stop()
    assert (right, registration_check) == (204, 204)
    for refused in (wrong, missing):
        assert refused.status_code == 401
        assert refused.json()["type"] == "invalid_auth"
    stats = channel.stats()
    assert (stats["acknowledged"], stats["failures"]) == (1, 0)
    assert redis.llen("rq:queue:test") == 2  # the right PUT and the simulator's batch, nothing else


def big_body_with(tail: str) -> bytes:
    """A body over the request path's full-parse limit, valid UTF-8 and braced, bad only inside."""
    items = [{"ep": f"dev-{i}", "path": "/3303/0/5700", "payload": "MjMuNQ=="} for i in range(4_000)]
    return ('{"notifications": ' + json.dumps(items) + ', "extra": ' + tail + "}").encode()


def test_large_bad_body_found_by_the_worker_is_quarantined_with_its_reason_once(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    settings = Settings(redis_url=redis_url, callback_headers=dict(HEADERS), queue_name="test")
    client = create_app({"SETTINGS": settings, "REDIS": redis}).test_client()
    bodies = {
        "depth limit exceeded": big_body_with("[" * 5000 + "]" * 5000),
        "trailing comma is not allowed": big_body_with("[1,]"),
    }
    for body in bodies.values():
        assert len(body) > 256 * 1024
        assert client.put(PATH, data=body, headers=HEADERS).status_code == 204  # only structurally checked
    env = worker_env(redis_url, "tests.fixtures.handlers:only_healthy")
    result = subprocess.run(
        [sys.executable, "-m", "app", "worker", "--burst"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    records = [json.loads(r) for r in redis.lrange("devicehooks:rejections", 0, -1)]
    reasons = sorted(r["reason"] for r in records)
    assert len(reasons) == 2
    for expected in bodies:
        assert sum(expected in reason for reason in reasons) == 1
    assert redis.zcard("rq:failed:test") == 0  # no retry loop: nothing failed,
    assert redis.zcard("rq:scheduled:test") == 0  # nothing waits to run again
    assert redis.llen("rq:queue:test") == 0
