"""The bridge process against a real broker and the fake ThingsBoard (events written to its stream)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from redis.exceptions import ResponseError

from app.redis_server import free_port
from app.thingsboard import stream
from app.thingsboard.mapping import Options, fragments_of
from tests.support import stop, wait_until
from tests.thingsboard.broker import Mosquitto, make_certificates
from tests.thingsboard.conftest import ROOT, bridge_env, running_bridge, start_bridge
from tests.thingsboard.fake import FakeThingsBoard
from tests.thingsboard.test_mapping import RECEIVED, events

pytestmark = pytest.mark.slow


def registration(ep: str, ept: str = "Sensor") -> list[dict[str, Any]]:
    """The fragments of one registration."""
    event = {"kind": "registrations", "ep": ep, "ept": ept, "resources": [{"path": "/3303/0/5700"}]}
    return fragments_of(event, Options(), RECEIVED)


def reading(ep: str, value: float, ts: int) -> list[dict[str, Any]]:
    """The fragments of one temperature notification."""
    event = {"kind": "notifications", "ep": ep, "path": "/3303/0/5700", "values": {"/3303/0/5700": value}}
    return fragments_of({**event, "timestamp": ts}, Options(), RECEIVED)


def backlog(redis: Redis) -> int:
    """Events not yet acknowledged by ThingsBoard."""
    return stream.status(redis)["backlog"]


def test_events_reach_thingsboard_in_valid_messages_and_are_acked_after_puback(
    redis: Redis, redis_url: str, mosquitto: Mosquitto, fake_tb: FakeThingsBoard, tmp_path: Path
) -> None:
    mapped = [fragments_of(e, Options(), RECEIVED) for e in events() if not e["decode_error"]]
    stream.append(redis, mapped, cap=1000)
    with running_bridge(bridge_env(redis_url, mosquitto.port), tmp_path / "bridge.log"):
        wait_until(lambda: backlog(redis) == 0, timeout=20, what="the stream to drain")
    seen = fake_tb.seen
    assert seen.violations == []
    assert seen.devices == {"dev-a": "Sensor", "dev-b": "Light"}
    assert seen.implicit == []
    assert fake_tb.values("dev-a", "3303/0/5700") == [21.5, 22.25]
    assert fake_tb.values("dev-b", "3311/0/5850") == [True]
    assert seen.attributes["dev-a"]["resources"] == ["/3303/0/5700", "/3311/0/5850"]
    assert seen.disconnects == ["dev-c", "dev-d"]
    assert seen.messages["v1/gateway/telemetry"] == 1  # one batch, one telemetry message
    assert stream.live_devices(redis) == [("dev-a", "Sensor"), ("dev-b", "Light")]


def test_broker_restart_mid_run_loses_nothing_and_connect_is_sent_again(
    redis: Redis, redis_url: str, mosquitto: Mosquitto, fake_tb: FakeThingsBoard, tmp_path: Path
) -> None:
    with running_bridge(bridge_env(redis_url, mosquitto.port), tmp_path / "bridge.log"):
        stream.append(
            redis, [registration("dev-1"), *(reading("dev-1", i, 1000 + i) for i in range(100))], 10_000
        )
        wait_until(lambda: len(fake_tb.values("dev-1", "3303/0/5700")) == 100, timeout=20, what="first 100")
        mosquitto.stop()
        stream.append(redis, [reading("dev-1", 100 + i, 2000 + i) for i in range(300)], 10_000)
        assert backlog(redis) >= 300  # waiting in Redis while the broker is down
        mosquitto.start()
        wait_until(lambda: backlog(redis) == 0, timeout=60, what="the backlog to drain after the restart")
        wait_until(lambda: len(fake_tb.values("dev-1", "3303/0/5700")) >= 400, timeout=20, what="all 400")
    values = fake_tb.values("dev-1", "3303/0/5700")
    assert sorted(set(values)) == list(range(400))  # nothing lost (at least once)
    assert values[-300:] == list(range(100, 400))  # and in order
    assert [name for name, _ in fake_tb.seen.connects].count("dev-1") >= 2  # re-sent after the reconnect
    assert fake_tb.seen.implicit == []
    assert fake_tb.seen.violations == []


def test_a_restarted_bridge_resumes_where_it_stopped(
    redis: Redis, redis_url: str, mosquitto: Mosquitto, fake_tb: FakeThingsBoard, tmp_path: Path
) -> None:
    env = bridge_env(redis_url, mosquitto.port)
    log = tmp_path / "bridge.log"
    stream.append(redis, [registration("dev-1"), reading("dev-1", 1.0, 1000)], 100)
    with running_bridge(env, log):
        wait_until(
            lambda: fake_tb.values("dev-1", "3303/0/5700") == [1.0], timeout=20, what="the first value"
        )
    stream.append(redis, [reading("dev-1", 2.0 + i, 2000 + i) for i in range(50)], 100)  # while it is down
    proc = start_bridge(env, log)
    try:
        wait_until(lambda: backlog(redis) == 0, timeout=20, what="the restarted bridge to drain")
    finally:
        assert stop(proc) == 0
    assert fake_tb.values("dev-1", "3303/0/5700") == [1.0, *(2.0 + i for i in range(50))]


def test_entries_read_but_never_pubacked_go_out_after_a_kill_and_restart(
    redis: Redis, redis_url: str, mosquitto: Mosquitto, fake_tb: FakeThingsBoard, tmp_path: Path
) -> None:
    env = bridge_env(redis_url, mosquitto.port)
    log = tmp_path / "bridge.log"
    proc = start_bridge(env, log)
    try:
        stream.append(redis, [registration("dev-1")], 100)
        wait_until(lambda: stream.live_devices(redis), timeout=20, what="dev-1 connected")
        assert mosquitto.process is not None
        mosquitto.process.send_signal(signal.SIGSTOP)  # the broker stops answering: no PUBACK
        stream.append(redis, [reading("dev-1", float(i), 1000 + i) for i in range(20)], 100)
        wait_until(lambda: pending(redis) == 20, timeout=20, what="the bridge to read and publish")
        proc.kill()  # SIGKILL between publish and PUBACK
        proc.wait()
    finally:
        mosquitto.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        stop(proc)
    with running_bridge(env, log):
        wait_until(lambda: backlog(redis) == 0, timeout=30, what="the restarted bridge to deliver")
        wait_until(lambda: len(fake_tb.values("dev-1", "3303/0/5700")) >= 20, timeout=20, what="all 20")
    assert sorted(set(fake_tb.values("dev-1", "3303/0/5700"))) == [float(i) for i in range(20)]
    assert fake_tb.seen.violations == []


def pending(redis: Redis) -> int:
    """Entries the bridge read but has not acknowledged."""
    try:
        return int(redis.xpending(stream.STREAM, stream.GROUP)["pending"])
    except ResponseError:  # the group does not exist yet
        return 0


def test_an_unreadable_entry_is_counted_and_skipped_and_the_rest_delivered(
    redis: Redis, redis_url: str, mosquitto: Mosquitto, fake_tb: FakeThingsBoard, tmp_path: Path
) -> None:
    stream.append(redis, [registration("dev-1")], 100)
    redis.xadd(stream.STREAM, {"f": "{not json"})
    redis.xadd(
        stream.STREAM, {"f": '[{"op": "telemetry", "device": "dev-1", "entry": {"ts": 1, "values": {}}}]'}
    )
    stream.append(redis, [reading("dev-1", 5.0, 5000)], 100)
    with running_bridge(bridge_env(redis_url, mosquitto.port), tmp_path / "bridge.log"):
        wait_until(lambda: backlog(redis) == 0, timeout=20, what="the stream to drain")
        wait_until(
            lambda: fake_tb.values("dev-1", "3303/0/5700") == [5.0], timeout=20, what="the good reading"
        )
    assert stream.status(redis)["invalid"] == 2
    assert fake_tb.seen.violations == []


def test_rpcs_that_cannot_be_sent_get_an_error_reply_never_silence(
    redis: Redis, redis_url: str, mosquitto: Mosquitto, fake_tb: FakeThingsBoard, tmp_path: Path
) -> None:
    stream.append(redis, [registration("dev-1")], 100)
    env = bridge_env(redis_url, mosquitto.port, DM_API_KEY="")
    with running_bridge(env, tmp_path / "bridge.log"):
        wait_until(lambda: stream.live_devices(redis), timeout=20, what="dev-1 to be connected")
        unknown = fake_tb.rpc("nobody", "read", {"path": "3/0/0"})
        assert unknown["status"] == 404
        assert "never registered" in unknown["error"]
        method = fake_tb.rpc("dev-1", "reboot", {})
        assert method["status"] == 400
        assert "unknown method" in method["error"]
        no_key = fake_tb.rpc("dev-1", "read", {"path": "3303/0/5700"})
        assert no_key["status"] == 503
        assert "DM_API_KEY" in no_key["error"]
    assert fake_tb.seen.violations == []


def test_check_reports_what_it_reaches_and_fails_when_thingsboard_is_unreachable(
    redis_url: str, mosquitto: Mosquitto
) -> None:
    command = [sys.executable, "-m", "app", "thingsboard", "--check"]
    good = subprocess.run(
        command,
        env=bridge_env(redis_url, mosquitto.port),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert good.returncode == 0, good.stdout + good.stderr
    assert "redis: ok" in good.stdout
    assert "thingsboard: ok" in good.stdout
    assert "gateway-token" not in good.stdout + good.stderr  # the token is never printed
    bad = subprocess.run(
        command, env=bridge_env(redis_url, free_port()), cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 1
    assert "thingsboard: FAILED" in bad.stdout


def test_check_over_tls_verifies_the_server_certificate(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "ours").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "broker").mkdir()
    ca, cert, key = make_certificates(tmp_path / "ours")
    other_ca, _, _ = make_certificates(tmp_path / "other")
    broker = Mosquitto(tmp_path / "broker", tls=(cert, key)).start()
    command = [sys.executable, "-m", "app", "thingsboard", "--check"]
    try:
        for ca_file, code, text in (
            (ca, 0, "thingsboard: ok (127.0.0.1"),
            (other_ca, 1, "thingsboard: FAILED"),
        ):
            env = bridge_env(redis_url, broker.port, THINGSBOARD_TLS="1", THINGSBOARD_CA_FILE=str(ca_file))
            result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert result.returncode == code, result.stdout + result.stderr
            assert text in result.stdout
    finally:
        broker.stop()


def test_check_fails_when_thingsboard_refuses_the_token(redis_url: str, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path, anonymous=False).start()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "app", "thingsboard", "--check"], env=bridge_env(redis_url, broker.port),
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        broker.stop()
    assert result.returncode == 1
    assert "refused the gateway connection: Not authorized" in result.stdout
