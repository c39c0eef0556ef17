"""Repo-wide fixtures: a private redis-server on a free port for the whole run, flushed per test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from app.config import Settings
from app.redis_server import RedisServer

SAMPLES = Path(__file__).parent / "samples"
SECRET = "Bearer test-secret-0123456789"
HEADERS = {"Authorization": SECRET}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private redis-server for the test session, stopped by pid at the end."""
    server = RedisServer(directory=str(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """URL of the private Redis."""
    return redis_server.url


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    """A client on the private Redis, emptied before each test."""
    client = Redis.from_url(redis_url, socket_timeout=None)  # tests block in BLPOP for longer than 5 s
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def settings(redis_url: str) -> Settings:
    """Settings for a service with one callback secret on the private Redis."""
    return Settings(redis_url=redis_url, callback_headers=dict(HEADERS), queue_name="test")


def sample(name: str) -> bytes:
    """The bytes of a sample body under tests/samples/."""
    return (SAMPLES / name).read_bytes()


def sample_json(name: str) -> dict[str, object]:
    """A sample body parsed."""
    loaded: dict[str, object] = json.loads(sample(name))
    return loaded
