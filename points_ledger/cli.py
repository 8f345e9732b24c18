"""The `points-ledger` command: global options, then one subcommand per job."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

import click

from consumers.deadletters import DeadLetterSink, JsonLinesDeadLetters, StderrDeadLetters
from consumers.jsonlines import DEFAULT_BATCH_SIZE, ingest_lines
from ledger.application import BATCH_SIZE_MAX, OutOfRangeError
from ledger.store import DEFAULT_STORE_URL
from points_ledger import config_commands, kafka_commands, output
from points_ledger.check import check
from points_ledger.context import TIME, Context, format_option, pass_context, setting_option
from points_ledger.errors import CommandError, reported_errors
from points_ledger.progress import ingest_progress
from projections import reports, statements
from projections.figures import figures_as_of
from projections.log import read_log
from schemas.export import export_json_schemas


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
    help="Event store: sqlite:///FILE, postgresql://USER@HOST:PORT/DB[?sslmode=…] or memory:// (env LEDGER_STORE).",
)
@setting_option(
    "store",
    "password_file",
    "--store-password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="PostgreSQL password on the first line of FILE (env LEDGER_STORE_PASSWORD_FILE; "
    "PGPASSWORD and libpq's passfile work too).",
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
    help="Append invalid lines here as JSON Lines (line, text, reason). Default: report them on stderr.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, BATCH_SIZE_MAX),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Messages per transaction.",
)
@format_option
@pass_context
def ingest(context: Context, file: str, dead_letter_path: Path | None, batch_size: int, output_format: str) -> None:
    """Apply a JSON Lines FILE of messages ('-' for stdin), in file order.

    Re-running the same file changes nothing: every line is then a duplicate
    (or invalid again). Prints {processed, recorded, duplicates, rejected, invalid}.
    """
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
    if path is None:
        yield StderrDeadLetters()
        return
    try:
        file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError as error:
        raise CommandError(f"cannot write dead letters to {path}: {error.strerror}") from error
    with file:
        yield JsonLinesDeadLetters(file)


@main.command()
@click.option("--as-of", "as_of", type=TIME, required=True, help="Sweep time, e.g. the end of a period.")
@format_option
@pass_context
def sweep(context: Context, as_of: datetime, output_format: str) -> None:
    """Expire lots and re-evaluate tiers of every member at AS-OF.

    Run it at a period end before reporting on that period: expiries are
    recorded when the ledger finds them, never backdated.
    """
    with context.ledger(must_exist=True) as app:
        try:
            members, changed = app.sweep(as_of)
        except OutOfRangeError as error:
            raise click.BadParameter(str(error), param_hint="--as-of") from error
    result = {"as_of": as_of, "members": members, "changed": changed}
    if output_format == "json":
        output.print_json(result)
    else:
        output.print_record("sweep", result)


# ---- member queries --------------------------------------------------------------------------


@main.command()
@click.argument("member_id")
@click.option("--as-of", "as_of", type=TIME, default=None, help="Balance as recorded up to this time.")
@format_option
@pass_context
def balance(context: Context, member_id: str, as_of: datetime | None, output_format: str) -> None:
    """A member's balance, tier and lots with points left (latest, or as of a time)."""
    with context.ledger(must_exist=True) as app:
        member = app.member(member_id) if as_of is None else statements.replay(app.member_events(member_id), as_of)
        if member is None:
            raise CommandError(f"no member {member_id!r}" + (f" as of {as_of.isoformat()}" if as_of else ""))
        result = statements.statement(member, as_of)
    if output_format == "json":
        output.print_json(result)
        return
    output.print_record(f"member {member_id}", {k: v for k, v in result.items() if k != "lots"})
    output.print_rows(
        "lots", ["points", "remaining", "expires_at"],
        ([lot["points"], lot["remaining"], lot["expires_at"]] for lot in result["lots"]),
    )  # fmt: skip


@main.command()
@click.option("--as-of", "as_of", type=TIME, default=None, help="Balances as recorded up to this time.")
@format_option
@pass_context
def balances(context: Context, as_of: datetime | None, output_format: str) -> None:
    """Every member's balance and tier: one JSON object per line with --format json."""
    with context.ledger(must_exist=True) as app:
        figures = figures_as_of(read_log(app), as_of)
    rows = ({"member_id": m.member_id, "balance": m.balance, "tier": m.tier} for m in figures.members.values())
    if output_format == "json":
        output.print_json_lines(rows)
    else:
        output.print_rows("balances", ["member_id", "balance", "tier"], (list(row.values()) for row in rows))


@main.command()
@click.argument("member_id")
@format_option
@pass_context
def history(context: Context, member_id: str, output_format: str) -> None:
    """Every recorded change of a member, with provenance and running balance."""
    with context.ledger(must_exist=True) as app:
        events = app.member_events(member_id)
    if not events:
        raise CommandError(f"no member {member_id!r}")
    rows = list(statements.history(events))
    if output_format == "json":
        output.print_json_lines(rows)
        return
    output.print_rows(
        f"history of {member_id}",
        ["#", "effective_at", "event", "change", "balance", "tier", "source", "details"],
        (
            [row["version"], row["effective_at"], row["event"], row["change"], row["balance"], row["tier"],
             _source_text(row["provenance"]), row["details"]]
            for row in rows
        ),
    )  # fmt: skip


def _source_text(provenance: dict[str, Any]) -> str:
    source = ",".join(f"{key}={value}" for key, value in provenance.get("source", {}).items())
    event_id = provenance.get("event_id")
    return f"{event_id} ({source})" if event_id else source


# ---- finance reports -------------------------------------------------------------------------


@main.group()
def report() -> None:
    """Finance reports, as recorded up to the times given (run `sweep` first at period ends)."""


@report.command()
@click.option("--as-of", "as_of", type=TIME, required=True, help="Liability at this time.")
@format_option
@pass_context
def liability(context: Context, as_of: datetime, output_format: str) -> None:
    """Points liability: outstanding and negative points, valued at the point value, by tier."""
    with context.ledger(must_exist=True) as app:
        result = reports.liability(read_log(app), as_of, app.program)
    if output_format == "json":
        output.print_json(result)
    else:
        output.print_record("points liability", result)


@report.command()
@click.option("--from", "start", type=TIME, required=True, help="Period start (exclusive).")
@click.option("--to", "end", type=TIME, required=True, help="Period end (inclusive).")
@format_option
@pass_context
def rollforward(context: Context, start: datetime, end: datetime, output_format: str) -> None:
    """Opening balance, the flows of points in (FROM, TO], and the closing balance."""
    if end < start:
        raise click.BadParameter("--to must not be before --from", param_hint="--to")
    with context.ledger(must_exist=True) as app:
        result = reports.rollforward(read_log(app), start, end)
    if output_format == "json":
        output.print_json(result)
    else:
        output.print_record("points roll-forward", result)


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
def schemas_export(directory: Path) -> None:
    """Write the JSON Schema of every message type into DIRECTORY."""
    with reported_errors(lambda: "-"):
        written = export_json_schemas(directory)
    for path in written:
        click.echo(str(path))


for command in [*kafka_commands.COMMANDS, *config_commands.COMMANDS, check]:
    main.add_command(command)


def run() -> None:
    """Console-script entry point."""
    main(prog_name="points-ledger")
