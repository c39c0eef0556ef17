"""``devicehooks`` commands that talk to Device Management.

``get``/``put``/``post`` send a device request and wait (``--timeout``) for its async-response through
Redis: a worker (``devicehooks worker``) must be running to resolve it, and a channel must deliver it
(the registered callback, or ``devicehooks channel``). Errors print Device Management's message and
request id and exit non-zero; configuration errors name the variable.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app import config as config_module
from app import logs
from app.dm.asyncs import PENDING, AsyncResult, AsyncTracker
from app.dm.client import DMClient, client_from_settings
from app.errors import DevicehooksError
from app.redis_conn import unreachable_message

DEFAULT_TIMEOUT = 30.0

# Result -> its decoded value. The tracker stores payloads as received; decoding is the workers' (with
# LWM2M_OBJECTS), handed in by the top-level CLI so that app.dm never imports workers.
Decode = Callable[[AsyncResult], Any]
_decoders: list[Decode] = []


def _settings() -> config_module.Settings:
    """Settings from the environment, logging set up."""
    settings = config_module.from_env()
    logs.setup(settings.log_level)
    return settings


def _redis(settings: config_module.Settings) -> Redis:
    """The Redis of REDIS_URL, with a socket timeout long enough for blocking waits."""
    from app.redis_conn import connect

    url = config_module.require_redis(settings)
    return connect(url, tls_verify=settings.redis_tls_verify, socket_timeout=35)


def _redis_url() -> str | None:
    """REDIS_URL as configured, for a message."""
    try:
        return config_module.from_env().redis_url
    except config_module.ConfigError:
        return None


@contextmanager
def _errors() -> Iterator[None]:
    """Turn configuration, Device Management and Redis errors into a message and exit status 1."""
    try:
        yield
    except config_module.ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None
    except DevicehooksError as exc:
        raise click.ClickException(str(exc) if str(exc) else exc.message) from None
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise click.ClickException(unreachable_message(_redis_url(), exc)) from None
    except RedisError as exc:
        raise click.ClickException(f"Redis: {type(exc).__name__}: {exc}") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _client() -> DMClient:
    """A client from DM_API_URL and DM_API_KEY."""
    return client_from_settings(_settings())


def _echo_json(value: Any) -> None:
    """Print one JSON document."""
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def _finish(result: AsyncResult, timeout: float, value_only: bool) -> None:
    """Print the result, or fail with why the request did not succeed."""
    if result.state == PENDING:
        raise click.ClickException(
            f"no async-response for {result.id} within {timeout:g} s: is a worker running "
            "(`devicehooks worker`) and a channel delivering (callback or `devicehooks channel`)?"
        )
    if not result.ok:
        raise click.ClickException(
            f"the request {result.id} ended {result.state}: status={result.status} error={result.error}"
        )
    value = _decoders[0](result) if _decoders else result.payload_b64
    if value_only:
        _echo_json(value)
        return
    _echo_json({"id": result.id, "status": result.status, "ct": result.ct, "value": value})


def _device_request(
    ep: str, method: str, path: str, value: str | None, ct: str | None, timeout: float, value_only: bool
) -> None:
    """Send one device request, wait for its result through Redis and print it."""
    with _errors():
        settings = _settings()
        client = client_from_settings(settings)
        tracker = AsyncTracker(_redis(settings), queue_name=settings.queue_name, default_timeout=timeout)
        content_type = ct if value is not None else None
        result = tracker.call(client, ep, method, path, value, content_type, timeout=timeout)
    _finish(result, timeout, value_only)


_timeout_option = click.option(
    "--timeout", type=float, default=DEFAULT_TIMEOUT, show_default=True, help="Seconds to wait."
)
_ct_option = click.option("--ct", default="text/plain", show_default=True, help="Content type of VALUE.")


@click.command("get")
@click.argument("ep")
@click.argument("path")
@_timeout_option
def get_command(ep: str, path: str, timeout: float) -> None:
    """Read a resource and print its decoded value as JSON (a worker must be running)."""
    _device_request(ep, "GET", path, None, None, timeout, value_only=True)


@click.command("put")
@click.argument("ep")
@click.argument("path")
@click.argument("value")
@_ct_option
@_timeout_option
def put_command(ep: str, path: str, value: str, ct: str, timeout: float) -> None:
    """Write VALUE to a resource and print the device's answer (a worker must be running)."""
    _device_request(ep, "PUT", path, value, ct, timeout, value_only=False)


@click.command("post")
@click.argument("ep")
@click.argument("path")
@click.argument("value", required=False)
@_ct_option
@_timeout_option
def post_command(ep: str, path: str, value: str | None, ct: str, timeout: float) -> None:
    """Execute a resource, VALUE as its argument (a worker must be running)."""
    _device_request(ep, "POST", path, value, ct, timeout, value_only=False)


@click.command("subscribe")
@click.argument("ep")
@click.argument("path")
def subscribe_command(ep: str, path: str) -> None:
    """Subscribe to a resource's notifications."""
    with _errors():
        async_id = _client().subscribe(ep, path)
    _echo_json({"subscribed": True, "ep": ep, "path": path, "async_id": async_id})


@click.command("register")
def register_command() -> None:
    """Register CALLBACK_URL with CALLBACK_HEADERS now (the web process does it on startup too)."""
    from app.dm.registration import BUSY, registrar_from_settings

    with _errors():
        settings = _settings()
        registrar = registrar_from_settings(settings, _redis(settings))
        outcome = registrar.ensure(force=True)
    if outcome == BUSY:
        raise click.ClickException("another process is registering the callback right now; try again")
    _echo_json({"callback": registrar.url, "outcome": outcome})


@click.command("callback")
@click.argument("action", type=click.Choice(["show", "delete"]), default="show")
def callback_command(action: str) -> None:
    """Show (default) or delete the registered callback."""
    with _errors():
        client = _client()
        if action == "delete":
            _echo_json({"deleted": client.delete_callback()})
            return
        callback = client.get_callback()
        channel = client.get_channel()
    if callback is not None and isinstance(callback.get("headers"), dict):
        callback["headers"] = {name: "***" for name in callback["headers"]}
    _echo_json({"channel": channel, "callback": callback})


@click.command("presubscriptions")
@click.argument("action", type=click.Choice(["show", "set"]), default="show")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
def presubscriptions_command(action: str, file: Path | None) -> None:
    """Show (default) the pre-subscriptions, or `set FILE` (a JSON array of rules; [] removes them)."""
    from app.dm.registration import validate_presubscriptions

    with _errors():
        client = _client()
        if action == "show":
            _echo_json(client.get_presubscriptions())
            return
        if file is None:
            raise click.UsageError("set needs FILE")
        try:
            rules = validate_presubscriptions(json.loads(file.read_text(encoding="utf-8")), str(file))
        except (OSError, json.JSONDecodeError) as exc:
            raise click.ClickException(f"{file}: {exc}") from None
        client.put_presubscriptions(rules)
    _echo_json({"set": len(rules)})


def _on_signal(stop: threading.Event) -> Callable[[int, FrameType | None], None]:
    """A signal handler that asks the channel to stop."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    return handler


@click.command("channel")
@click.option("--mode", type=click.Choice(["websocket", "pull"]), help="Default: DEVICEHOOKS_CHANNEL.")
def channel_command(mode: str | None) -> None:
    """Receive notifications over the websocket (or long-poll) channel into the worker queue."""
    from app.batches import BatchQueue
    from app.dm.channels import runner_for

    with _errors():
        settings = _settings()
        mode = mode or settings.channel
        if mode not in ("websocket", "pull"):
            raise config_module.ConfigError(
                "DEVICEHOOKS_CHANNEL is 'callback': set it to websocket or pull (or pass --mode)"
            )
        redis = _redis(settings)
        batches = BatchQueue(redis, settings.queue_name)
        runner = runner_for(mode, client_from_settings(settings), redis, batches)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _on_signal(stop))
        click.echo(f"devicehooks channel: {mode}, queue {settings.queue_name}", err=True)
        runner.run(stop)
    sys.exit(0)


COMMANDS = (
    register_command,
    callback_command,
    get_command,
    put_command,
    post_command,
    subscribe_command,
    presubscriptions_command,
    channel_command,
)


def add_commands(group: click.Group, decode: Decode | None = None) -> None:
    """Add the Device Management commands to the ``devicehooks`` group; ``decode`` types results."""
    if decode is not None:
        _decoders[:] = [decode]
    for command in COMMANDS:
        group.add_command(command)
