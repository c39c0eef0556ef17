"""The ``devicehooks`` command line."""

from __future__ import annotations

import sys

import click

from app import config as config_module
from app import logs


def _setup_logging(level: str) -> None:
    """One log format for every command."""
    logs.setup(level)


@click.group()
def main() -> None:
    """devicehooks: the callback service for Izuma Device Management."""


@main.command()
def run() -> None:
    """Run Redis (embedded unless REDIS_URL is set), the web and the worker processes for development."""
    from app import devrunner

    _setup_logging("INFO")
    sys.exit(devrunner.main())


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
