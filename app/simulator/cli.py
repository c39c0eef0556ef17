"""`devicehooks simulate`: run the Device Management simulator, optionally as a load generator."""

from __future__ import annotations

import json
import logging
import signal
import threading
from types import FrameType
from typing import Any

import click

DEFAULT_PORT = 8100


def _headers(values: tuple[str, ...]) -> dict[str, str]:
    """Parse repeated `--callback-header 'Name: value'` options."""
    headers: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected 'Name: value', got {value!r}", param_hint="--callback-header")
        headers[name.strip()] = text.strip()
    return headers


@click.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, help="Port (0 = a free one).")
@click.option("--api-key", "api_keys", multiple=True, help="Accepted API key (repeatable). [ak_simulator]")
@click.option("--devices", default=5, show_default=True, help="Simulated endpoints.")
@click.option("--batch-size", default=10_000, show_default=True, help="Max items per delivered batch.")
@click.option("--time-scale", default=1.0, show_default=True, help="Multiplies every simulated delay.")
@click.option(
    "--notification-interval",
    default=None,
    type=float,
    help="Seconds between notifications (default 5; 0 in load mode).",
)
@click.option(
    "--async-delay", default=0.2, show_default=True, help="Seconds before a device answers a request."
)
@click.option("--seed", default=0, show_default=True, help="Seed of device ids and values.")
@click.option("--no-lifecycle", is_flag=True, help="No reg-updates, de-registrations or expiries over time.")
@click.option(
    "--early-async", is_flag=True, help="Legacy GET /v2/endpoints/..: async-response before the 202."
)
@click.option(
    "--timeout-fraction", default=0.0, show_default=True, help="Share of devices that never answer."
)
@click.option("--queue-mode-fraction", default=0.0, show_default=True, help="Share of queue-mode devices.")
@click.option(
    "--callback-url", default=None, help="Register this callback at start (as PUT /v2/notification/callback)."
)
@click.option("--callback-header", multiple=True, help="Header of that callback, 'Name: value' (repeatable).")
@click.option(
    "--load", "load", default=None, help="Load mode: RATE notifications/s, or max (as fast as acked)."
)
@click.option("--count", default=100_000, show_default=True, help="Load mode: notifications to send in all.")
@click.option(
    "--progress-interval", default=1.0, show_default=True, help="Load mode: seconds between status lines."
)
@click.option("--log-level", default="INFO", show_default=True, help="Log level (INFO shows every API call).")
@click.option(
    "--tlv-style",
    type=click.Choice(["mbed", "spec"]),
    default="mbed",
    show_default=True,
    help="TLV values as mbed Cloud Client writes them (text floats, 8-byte integers) or spec binary.",
)
@click.option("--client-cert", type=click.Path(exists=True), help="Client certificate for HTTPS callbacks.")
@click.option("--client-key", type=click.Path(exists=True), help="Key of --client-cert.")
@click.option("--callback-ca", type=click.Path(exists=True), help="CA bundle verifying the callback URL.")
def simulate(
    host: str,
    port: int,
    api_keys: tuple[str, ...],
    devices: int,
    batch_size: int,
    time_scale: float,
    notification_interval: float | None,
    async_delay: float,
    seed: int,
    no_lifecycle: bool,
    early_async: bool,
    timeout_fraction: float,
    queue_mode_fraction: float,
    callback_url: str | None,
    callback_header: tuple[str, ...],
    load: str | None,
    count: int,
    progress_interval: float,
    log_level: str,
    tlv_style: str,
    client_cert: str | None,
    client_key: str | None,
    callback_ca: str | None,
) -> None:
    """Run a Device Management simulator (Connect v2 API subset) until Ctrl-C, or a load run to its end."""
    from app import logs
    from app.simulator import SimulatorConfig, SimulatorServer
    from app.simulator.load import LoadRun, parse_rate

    logs.setup(log_level.upper())
    if load is not None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per request
    try:
        rate = parse_rate(load) if load is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--load") from None
    interval = notification_interval if notification_interval is not None else (0.0 if load else 5.0)
    config = SimulatorConfig(
        api_keys=api_keys or SimulatorConfig.api_keys,
        devices=devices,
        batch_size=batch_size,
        time_scale=time_scale,
        notification_interval=interval,
        async_delay=async_delay,
        seed=seed,
        lifecycle=not no_lifecycle and load is None,
        early_async=early_async,
        timeout_fraction=timeout_fraction,
        queue_mode_fraction=queue_mode_fraction,
        record_ids=load is None,
        tlv_style=tlv_style,
        client_cert=(client_cert, client_key or client_cert) if client_cert else None,
        callback_ca=callback_ca,
    )
    server = SimulatorServer(config, host, port).start()
    stop = threading.Event()
    previous = _on_signals(stop)
    try:
        click.echo(f"Device Management simulator: DM_API_URL={server.url} DM_API_KEY={config.api_keys[0]}")
        click.echo(f"  {devices} devices; stats at {server.url}/stats; Ctrl-C stops it")
        if callback_url:
            _register(server.url, config.api_keys[0], callback_url, _headers(callback_header))
        if load is not None:
            LoadRun(server.sim, count, rate, click.echo, progress_interval).run(stop)
        else:
            stop.wait()
    finally:
        server.stop()
        _restore_signals(previous)
        click.echo(json.dumps(server.sim.stats()))


def _register(base: str, key: str, url: str, headers: dict[str, str]) -> None:
    """Register the callback through the simulator's own API (so the registration check runs)."""
    import requests

    response = requests.put(
        f"{base}/v2/notification/callback",
        json={"url": url, "headers": headers},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    if response.status_code != 204:
        raise click.ClickException(f"registering {url} failed: {response.status_code} {response.text}")
    click.echo(f"  callback registered: {url}")


def _on_signals(stop: threading.Event) -> dict[int, Any]:
    """Ctrl-C and SIGTERM end the run (main thread only); return the handlers replaced."""

    def _handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(previous: dict[int, Any]) -> None:
    """Put the replaced signal handlers back."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)
