"""The ``devicehooks`` command line."""

from __future__ import annotations

import sys
from typing import Any

import click
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app import config as config_module
from app import logs


def _setup_logging(level: str) -> None:
    """One log format for every command."""
    logs.setup(level)


class Commands(click.Group):
    """The command group: a Redis that cannot be reached is one line naming REDIS_URL, in every command.

    A stale REDIS_URL (the runner's port changes every run) printed a 50-line redis traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; turn a Redis connection failure into a ClickException."""
        try:
            return super().invoke(ctx)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise click.ClickException(redis_unreachable(exc)) from None


def redis_unreachable(exc: Exception) -> str:
    """The message for an unreachable Redis, with the REDIS_URL in effect."""
    from app.redis_conn import unreachable_message

    try:
        url = config_module.from_env().redis_url
    except config_module.ConfigError:
        url = None
    return unreachable_message(url, exc)


@click.group(cls=Commands)
def main() -> None:
    """devicehooks: the callback service for Izuma Device Management."""


@main.command()
@click.option("--port", type=int, default=None, help="Port of the web process (default: PORT, else 8000).")
@click.option("--reset", is_flag=True, help="Start from empty data: delete the embedded Redis's data first.")
@click.option(
    "-v", "--verbose", is_flag=True, help="Show every log line of every process (RQ's, access log)."
)
def run(port: int | None, reset: bool, verbose: bool) -> None:
    """Run Redis (embedded unless REDIS_URL is set), the simulator, web and worker for development."""
    from app import devrunner

    _setup_logging("WARNING")
    sys.exit(devrunner.main(port=port, verbose=verbose, reset=reset))


@main.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def simulate(args: tuple[str, ...]) -> None:
    """Run a Device Management simulator for development, demos and load tests (--help: options)."""
    from app.simulator.cli import simulate as command

    command.main(list(args), prog_name="devicehooks simulate")


@main.command()
@click.option("--burst", is_flag=True, help="Exit once the queue is empty.")
@click.option("--name", default=None, help="Worker name (default: generated).")
def worker(burst: bool, name: str | None) -> None:
    """Work the batch queue: parse, decode, resolve async requests, fan out to handlers."""
    try:
        settings = config_module.from_env()
        config_module.require_redis(settings)
    except config_module.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    _setup_logging(settings.log_level)
    from app.redis_conn import connect

    connect(settings.redis_url or "", tls_verify=settings.redis_tls_verify).ping()  # fail fast, one line
    from workers.decoding import ObjectModelError
    from workers.handlers.discovery import HandlerLoadError
    from workers.worker import run as run_worker

    try:
        run_worker(burst=burst, name=name)
    except (HandlerLoadError, ObjectModelError) as exc:
        raise click.ClickException(str(exc)) from None


def _add_commands() -> None:
    """Commands that live with their subsystems: workers (decode, handlers, failed, rejections), app.dm."""
    from app.decoded import decode_result
    from app.dm.cli import add_commands
    from app.thingsboard.cli import thingsboard
    from workers.cli import COMMANDS

    for command in COMMANDS:
        main.add_command(command)
    add_commands(main, decode_result)
    main.add_command(thingsboard)


_add_commands()
