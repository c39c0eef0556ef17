"""Worker-side commands of the ``devicehooks`` CLI: decode, handlers, failed, rejections, status."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from app import config as config_module


def _settings() -> config_module.Settings:
    """Settings, or a ClickException naming the bad variable."""
    try:
        return config_module.from_env()
    except config_module.ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _redis() -> Any:
    """A Redis client from REDIS_URL."""
    from app.redis_conn import connect

    settings = _settings()
    try:
        url = config_module.require_redis(settings)
    except config_module.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return connect(url, tls_verify=settings.redis_tls_verify)


@click.command()
@click.argument("source", default="-", type=click.Path(allow_dash=True, dir_okay=False))
def decode(source: str) -> None:
    """Decode a captured callback body (FILE, or - for stdin): one JSON object per event per line."""
    from workers.batch import BatchError, parse_batch
    from workers.decoding import ObjectModelError, model_for

    try:
        body = sys.stdin.buffer.read() if source == "-" else open(source, "rb").read()  # noqa: SIM115
    except OSError as exc:
        raise click.ClickException(f"cannot read {source}: {exc.strerror}") from None
    try:
        settings = _settings()
        parsed = parse_batch(body, model_for(settings))
    except (BatchError, ObjectModelError) as exc:
        raise click.ClickException(f"{source}: {exc}") from None
    out = sys.stdout
    for event in parsed.events:
        out.write(json.dumps(event.to_dict(), ensure_ascii=False, default=str) + "\n")
    for rejection in parsed.rejections:
        where = rejection.kind if rejection.index is None else f"{rejection.kind}[{rejection.index}]"
        click.echo(f"rejected {where}: {rejection.reason}", err=True)
    if parsed.rejections:
        sys.exit(2)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def handlers(as_json: bool) -> None:
    """List the handlers loaded from HANDLERS and installed entry points, with their filters."""
    from workers.handlers.discovery import HandlerLoadError, load_router

    try:
        settings = _settings()
        router = load_router(settings.handlers, settings=settings)
    except HandlerLoadError as exc:
        raise click.ClickException(str(exc)) from None
    rows = [handler.describe() for handler in router.handlers]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(
            "no handlers loaded (set HANDLERS or install a package with a devicehooks.handlers entry point; "
            "devicehooks run adds the built-in workers.handlers.log)"
        )
    for row in rows:
        filters = " ".join(f"{k}={row[k]}" for k in ("ep", "path", "ept") if row[k])
        mode = "batch" if row["batch"] else "per-event"
        click.echo(
            f"{row['name']}  kinds={','.join(row['kinds'])} {filters}  {mode} "
            f"attempts={row['attempts']} timeout={row['timeout']}s"
        )


@click.group()
def failed() -> None:
    """Dead letters: events a handler still failed after its last attempt."""


@failed.command("list")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
def failed_list(limit: int, as_json: bool) -> None:
    """The newest dead letters, as a table."""
    from workers.deadletters import DeadLetters
    from workers.present import dead_letter_table

    rows = DeadLetters(_redis()).list(limit)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, default=str))
        return
    click.echo(dead_letter_table(rows))


@failed.command("show")
@click.argument("letter_id")
@click.option("--json", "as_json", is_flag=True, help="The raw record: every event in full.")
def failed_show(letter_id: str, as_json: bool) -> None:
    """One dead letter: its events summarized, the error and the traceback."""
    from workers.deadletters import DeadLetters
    from workers.present import dead_letter

    letter = DeadLetters(_redis()).get(letter_id)
    if letter is None:
        raise click.ClickException(f"no dead letter {letter_id} (devicehooks failed list shows the ids)")
    click.echo(json.dumps(letter, indent=2, default=str) if as_json else dead_letter(letter))


@failed.command("replay")
@click.argument("letter_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@click.option("--handler", "handler_name", default=None, help="Replay every dead letter of this handler.")
def failed_replay(letter_ids: tuple[str, ...], replay_all: bool, handler_name: str | None) -> None:
    """Re-deliver exactly what failed, to that handler only (a worker must be running).

    The dead letter is removed once its events are queued again; if the handler still fails, they
    come back after its attempts as a new dead letter with a new id.
    """
    from app.batches import make_queue
    from workers.deadletters import DeadLetters
    from workers.dispatch import replay

    if bool(letter_ids) + replay_all + (handler_name is not None) != 1:
        raise click.ClickException("name dead letters to replay, or pass --all, or --handler NAME")
    redis = _redis()
    if not letter_ids:
        dead = DeadLetters(redis)
        rows = dead.list(max(dead.count(), 1))
        letter_ids = tuple(row["id"] for row in rows if handler_name in (None, row["handler"]))
        if not letter_ids:
            click.echo("no dead letters" + (f" of {handler_name}" if handler_name else ""))
            return
    queue = make_queue(redis, _settings().queue_name)
    for letter_id in letter_ids:
        try:
            job_id = replay(redis, queue, letter_id)
        except KeyError:
            raise click.ClickException(f"no dead letter {letter_id}") from None
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{letter_id}: queued for redelivery as job {job_id}")
    click.echo("if the handler fails again, its events come back as a new dead letter (a new id)")


@failed.command("purge")
@click.argument("letter_ids", nargs=-1)
@click.option("--all", "purge_all", is_flag=True, help="Delete every dead letter.")
def failed_purge(letter_ids: tuple[str, ...], purge_all: bool) -> None:
    """Delete dead letters (named ones, or --all)."""
    from workers.deadletters import DeadLetters

    dead = DeadLetters(_redis())
    if purge_all:
        click.echo(f"deleted {dead.purge()} dead letter(s)")
        return
    if not letter_ids:
        raise click.ClickException("name dead letters to delete, or pass --all")
    for letter_id in letter_ids:
        click.echo(f"{letter_id}: {'deleted' if dead.remove(letter_id) else 'not found'}")


@click.group()
def rejections() -> None:
    """Items (and whole bodies) that could not be turned into events."""


@rejections.command("list")
@click.option("--limit", default=50, show_default=True)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per line (with the item) instead of a table."
)
def rejections_list(limit: int, as_json: bool) -> None:
    """The newest rejections, as a table."""
    from workers.present import rejection_table
    from workers.rejections import Rejections

    records = Rejections(_redis()).list(limit)
    if as_json:
        for record in records:
            click.echo(json.dumps(record, default=str))
        return
    click.echo(rejection_table(records))


@rejections.command("body")
@click.argument("key")
def rejections_body(key: str) -> None:
    """Print a quarantined body (its key is in the rejection record)."""
    from workers.rejections import Rejections

    body = Rejections(_redis()).body(key)
    if body is None:
        raise click.ClickException(f"no quarantined body at {key}")
    sys.stdout.buffer.write(body)


@rejections.command("purge")
def rejections_purge() -> None:
    """Delete every rejection record and quarantined body."""
    from workers.rejections import Rejections

    click.echo(f"deleted {Rejections(_redis()).purge()} rejection record(s)")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(as_json: bool) -> None:
    """Redis memory headroom and the size of every store (queue, registries, dead letters, rejections)."""
    from workers.status import gather, render

    report = gather(_redis(), _settings().queue_name)
    click.echo(json.dumps(report) if as_json else "\n".join(render(report)))


COMMANDS = [decode, handlers, failed, rejections, status]
