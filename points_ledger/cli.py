"""The `points-ledger` command: global options, then one subcommand per job."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import click

from consumers.defaults import DEFAULT_BATCH_SIZE
from ledger.limits import DEFAULT_STORE_URL, OutOfRangeError
from points_ledger import (
    api_key_commands,
    audit_commands,
    config_commands,
    dev_commands,
    kafka_commands,
    migrate_command,
    output,
    projection_commands,
    publish_command,
    query_commands,
    repair_commands,
    serve_command,
    topic_commands,
)
from points_ledger.check import check
from points_ledger.context import TIME, Context, batch_size_option, format_option, pass_context, setting_option
from points_ledger.errors import CommandError, reported_errors, say
from points_ledger.files import check_target, force_option, private_appending, text_output
from points_ledger.progress import ingest_progress

if TYPE_CHECKING:
    from consumers.deadletters import DeadLetterSink


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@setting_option(
    "",
    "config_file",
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Config file (TOML) with the store, Kafka, consume and metrics settings (env LEDGER_CONFIG). "
    "Default: ./points-ledger.toml if it exists. Flags > environment > file > defaults; see `config show`.",
)
@setting_option(
    "store",
    "url",
    "--store",
    metavar="URL",
    show_default=DEFAULT_STORE_URL,
    help="Event store: sqlite:///FILE, postgresql://USER@HOST:PORT/DB[?sslmode=…] or memory:// (env LEDGER_STORE). "
    "A password written into a URL given here is visible to other users of the machine (the process list): give "
    "it with --store-password-file or PGPASSWORD, or the whole URL in LEDGER_STORE.",
)
@setting_option(
    "store",
    "password_file",
    "--store-password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="PostgreSQL password on the first line of FILE (env LEDGER_STORE_PASSWORD_FILE; "
    "PGPASSWORD and libpq's passfile work too). Used when the URL holds none; never shown.",
)
@setting_option(
    "store",
    "chain_key_file",
    "--chain-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="The key of the keyed hash chains (tamper evidence) on the first line of FILE, at least 32 bytes; "
    "keep it outside the database (env LEDGER_CHAIN_KEY_FILE, or the key itself in LEDGER_CHAIN_KEY).",
)
@setting_option(
    "",
    "program",
    "--program",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Program config (TOML); the default program if not given (env LEDGER_PROGRAM).",
)
@click.version_option(package_name="points-ledger")
@click.pass_context
def main(ctx: click.Context) -> None:
    """points-ledger: the event-sourced system of record for loyalty points.

    Every change is an immutable event; balances, tiers and finance reports are
    folded from the event log. Exit status: 0 success, 1 failure, 2 bad usage
    (including a bad store URL, config or program file), 3 store unavailable.
    """
    ctx.obj = Context()


# ---- ingest and sweep ------------------------------------------------------------------------


@main.command()
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=str))
@click.option(
    "--dead-letter",
    "dead_letter_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Append invalid lines here as JSON Lines (line, text, reason); a new file is created 0600, never "
    "through a symbolic link. Default: report them on stderr.",
)
@batch_size_option(DEFAULT_BATCH_SIZE, "Messages per transaction.")
@format_option
@pass_context
def ingest(context: Context, file: str, dead_letter_path: Path | None, batch_size: int, output_format: str) -> None:
    """Apply a JSON Lines FILE of messages ('-' for stdin), in file order.

    Re-running the same file changes nothing: every line is then a duplicate
    (or invalid again). Prints {processed, recorded, duplicates, rejected, invalid}.
    """
    from consumers.jsonlines import ingest_lines

    show_progress = sys.stdout.isatty() and sys.stderr.isatty()
    with (
        _open_input(file) as (stream, size),
        _dead_letters(dead_letter_path) as sink,
        context.ledger(must_exist=False) as app,
        ingest_progress(size, enabled=show_progress) as on_batch,
    ):
        tally = ingest_lines(
            app, stream, "<stdin>" if file == "-" else file, sink, batch_size=batch_size,
            on_batch=lambda t: on_batch(t, stream.tell() if size else None),
        )  # fmt: skip
    output.print_tally(tally, output_format)


@contextmanager
def _open_input(file: str) -> Iterator[tuple[BinaryIO, int | None]]:
    if file == "-":
        yield sys.stdin.buffer, None
        return
    try:
        stream = open(file, "rb")  # noqa: SIM115 (closed below)
    except OSError as error:
        raise CommandError(f"cannot read {file}: {error.strerror}") from error
    with stream:
        yield stream, Path(file).stat().st_size


@contextmanager
def _dead_letters(path: Path | None) -> Iterator[DeadLetterSink]:
    from consumers.deadletters import JsonLinesDeadLetters, StderrDeadLetters

    if path is None:
        yield StderrDeadLetters(say)
        return
    with private_appending(path) as file:
        yield JsonLinesDeadLetters(file)


@main.command()
@click.option("--as-of", "as_of", type=TIME, required=True, help="Sweep time, e.g. the end of a period.")
@click.option(
    "--all-members",
    is_flag=True,
    help="Visit every member listed in the event log instead of only those the views say have something due "
    "(the same result; slower as the ledger grows, and independent of the views).",
)
@format_option
@pass_context
def sweep(context: Context, as_of: datetime, all_members: bool, output_format: str) -> None:
    """Expire lots and re-evaluate tiers at AS-OF, and make AS-OF the ledger's time.

    Run it at a period end before reporting on that period: expiries are
    recorded when the ledger finds them, never backdated, and afterwards
    nothing is recorded effective before AS-OF, for any member (a late message
    counts at AS-OF). Only the members with something due are visited: an
    open lot expiring by AS-OF, or a tier above the base one to review.
    Prints {as_of, members (visited), changed}.
    """
    from projections.sweep import sweep_due

    with context.ledger(must_exist=True) as app:
        try:
            members, changed = app.sweep(as_of) if all_members else sweep_due(app, as_of)
        except OutOfRangeError as error:
            raise click.BadParameter(str(error), param_hint="--as-of") from error
    result = {"as_of": as_of, "members": members, "changed": changed}
    if output_format == "json":
        output.print_json(result)
    else:
        output.print_record("sweep", result)


# ---- program and schemas ---------------------------------------------------------------------


@main.group()
def program() -> None:
    """The loyalty program config (rules' numbers)."""


@program.command("show")
@format_option
@pass_context
def program_show(context: Context, output_format: str) -> None:
    """Print the program config in force (the default program unless --program is given)."""
    with reported_errors(context.describe_store):
        config = context.program()
    data = config.model_dump(mode="json")
    if output_format == "json":
        output.print_json(data)
        return
    output.print_record("program", {k: v for k, v in data.items() if k != "tiers"})
    output.print_rows(
        "tiers", ["name", "threshold", "multiplier"],
        ([tier["name"], tier["threshold"], tier["multiplier"]] for tier in data["tiers"]),
    )  # fmt: skip


@main.group()
def schemas() -> None:
    """The wire contract."""


@schemas.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@force_option
def schemas_export(directory: Path, force: bool) -> None:
    """Write the JSON Schema of every inbound message type, and of every outbound balance event (with its
    version in the file name), and the HTTP API's OpenAPI document (openapi.json, as `serve` answers it at
    /openapi.json), into DIRECTORY (created if missing). Refuses to replace an existing schema file without
    --force, and then writes none."""
    from points_ledger.api.app import openapi_document
    from schemas.export import json_schemas

    documents = {**json_schemas(), "openapi.json": openapi_document()}
    targets = {directory / name: text for name, text in documents.items()}
    for path in targets:
        check_target(path, force)
    with reported_errors(lambda: "-"):
        directory.mkdir(parents=True, exist_ok=True)
    for path, text in targets.items():
        with text_output(path, force=force) as file:
            file.write(text)
        click.echo(str(path))


for command in [
    *query_commands.COMMANDS,
    *projection_commands.COMMANDS,
    *audit_commands.COMMANDS,
    *kafka_commands.COMMANDS,
    *topic_commands.COMMANDS,
    *dev_commands.COMMANDS,
    *publish_command.COMMANDS,
    *migrate_command.COMMANDS,
    *repair_commands.COMMANDS,
    *config_commands.COMMANDS,
    *api_key_commands.COMMANDS,
    *serve_command.COMMANDS,
    check,
]:
    main.add_command(command)


def run() -> None:
    """Console-script entry point."""
    main(prog_name="points-ledger")
