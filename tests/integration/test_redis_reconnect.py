"""The request path's Redis connections survive Redis closing them, and one PUT is never two jobs."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
from redis import Redis
from redis.exceptions import RedisError

from app.batches import BatchQueue, connection_name
from app.redis_server import RedisServer
from tests.support import wait_until


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of this test's own, to reconfigure, stop and restart."""
    server = RedisServer(directory=str(tmp_path_factory.mktemp("reconnect-redis"))).start()
    yield server
    server.stop()


def web_connections(admin: Redis) -> list[dict[str, object]]:
    """The request path's connections that Redis currently holds (named by role and pid)."""
    return [c for c in admin.client_list() if c.get("name") == connection_name()]


def jobs(admin: Redis) -> int:
    """How many jobs wait on the test queue."""
    return int(admin.llen("rq:queue:test"))


def client_for(url: str) -> Redis:
    return Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)


def test_connection_closed_by_the_redis_idle_timeout_is_replaced_and_the_put_queued(
    own_redis: RedisServer,
) -> None:
    admin = client_for(own_redis.url)
    batches = BatchQueue(client_for(own_redis.url), "test")
    batches.enqueue(b"{}", "before")
    assert len(web_connections(admin)) == 1
    admin.config_set("timeout", 1)  # what `redis-server --timeout 1` and managed Redis do
    wait_until(lambda: not web_connections(admin), timeout=10, what="Redis closing the idle connection")
    batches.enqueue(b"{}", "after")
    assert jobs(admin) == 2


def test_connection_killed_by_redis_is_replaced(own_redis: RedisServer) -> None:
    admin = client_for(own_redis.url)
    batches = BatchQueue(client_for(own_redis.url), "test")
    batches.enqueue(b"{}", "before")
    assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
    batches.enqueue(b"{}", "after")
    assert jobs(admin) == 2


def test_enqueue_after_a_redis_restart_reconnects_and_reloads_the_script(own_redis: RedisServer) -> None:
    batches = BatchQueue(client_for(own_redis.url), "test")
    batches.enqueue(b"{}", "before")
    own_redis.stop()
    own_redis.start()  # same port; this server keeps nothing, and its script cache is empty
    batches.enqueue(b"{}", "after")
    assert jobs(client_for(own_redis.url)) == 1


def test_redis_down_is_an_error_after_one_attempt_on_a_new_connection(own_redis: RedisServer) -> None:
    batches = BatchQueue(client_for(own_redis.url), "test")
    batches.enqueue(b"{}", "before")
    own_redis.stop()
    with pytest.raises(RedisError):
        batches.enqueue(b"{}", "down")


class ReplyDroppingProxy:
    """A TCP proxy to Redis that, when armed, forwards one command and closes instead of replying.

    The command reaches Redis and runs; the client sees the connection closed before any reply: the
    one case where a retry could make a second job.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.armed = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if replies and data and self.armed.is_set():
                self.armed.clear()
                data = b""  # drop the reply: close both sides instead
            if not data:
                for sock in (src, dst):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                return
            dst.sendall(data)

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            sock.close()


def test_reply_lost_after_redis_ran_the_enqueue_makes_no_second_job(own_redis: RedisServer) -> None:
    proxy = ReplyDroppingProxy(own_redis.port)
    try:
        admin = client_for(own_redis.url)
        batches = BatchQueue(client_for(f"redis://127.0.0.1:{proxy.port}/0"), "test")
        batches.enqueue(b"{}", "warm")  # loads the script; the connection is now a reused one
        proxy.armed.set()
        batches.enqueue(b'{"n": 1}', "lost-reply")
        assert not proxy.armed.is_set()  # the reply was dropped, and the enqueue still succeeded
        assert jobs(admin) == 2
        assert len(admin.keys("devicehooks:body:*")) == 2
    finally:
        proxy.close()
