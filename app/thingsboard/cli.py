"""``devicehooks thingsboard [--check]``: run the bridge, or check what it can reach and exit."""

from __future__ import annotations

import sys

import click
from redis.exceptions import RedisError

from app import config as config_module
from app import logs
from app.dm.client import DMClient, client_from_settings
from app.redis_conn import connect


def _settings() -> config_module.Settings:
    """Settings with THINGSBOARD_HOST and REDIS_URL set, or a ClickException naming the variable."""
    try:
        settings = config_module.from_env()
        config_module.require_redis(settings)
    except config_module.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not settings.thingsboard_host:
        raise click.ClickException("THINGSBOARD_HOST is not set: set it to the ThingsBoard host to bridge to")
    return settings


def check(settings: config_module.Settings) -> bool:
    """Print whether Redis, ThingsBoard and the Device Management key are usable; True when all are."""
    from app.thingsboard import stream
    from app.thingsboard.gateway import ConnectionLost, Gateway

    ok = True
    try:
        redis = connect(settings.redis_url or "", tls_verify=settings.redis_tls_verify)
        redis.ping()
        counts = stream.status(redis)
        click.echo(
            f"redis: ok (backlog {counts['backlog']} events, dropped {counts['dropped']}, "
            f"invalid {counts['invalid']}, live devices {counts['live_devices']})"
        )
    except RedisError as exc:
        click.echo(f"redis: UNREACHABLE ({type(exc).__name__}: {exc})")
        ok = False
    gateway = Gateway(settings, lambda topic, payload: None)
    try:
        gateway.connect(timeout=10)
        click.echo(
            f"thingsboard: ok ({gateway.where}{' TLS' if settings.thingsboard_tls else ''}, token accepted)"
        )
    except ConnectionLost as exc:
        click.echo(f"thingsboard: FAILED ({exc})")
        ok = False
    finally:
        gateway.close()
    if settings.dm_api_key:
        click.echo(f"device management: key set ({settings.dm_api_url}); RPCs become device requests")
    else:
        click.echo("device management: DM_API_KEY not set; RPCs get an error reply")
    return ok


@click.command()
@click.option("--check", "check_only", is_flag=True, help="Connect, report what is reachable, and exit.")
def thingsboard(check_only: bool) -> None:
    """Bridge events to ThingsBoard over one gateway MQTT connection (THINGSBOARD_HOST, …)."""
    settings = _settings()
    logs.setup(settings.log_level)
    if check_only:
        sys.exit(0 if check(settings) else 1)
    from app.decoded import decode_result
    from app.thingsboard.bridge import Bridge

    client: DMClient | None = client_from_settings(settings) if settings.dm_api_key else None
    redis = connect(settings.redis_url or "", tls_verify=settings.redis_tls_verify, socket_timeout=10)
    sys.exit(Bridge(settings, redis, client, decode_result).run())
