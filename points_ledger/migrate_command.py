"""`migrate FILE.csv`: carry a legacy loyalty system's balances over, one opening balance per member."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from points_ledger import output
from points_ledger.context import TIME, Context, format_option, pass_context
from points_ledger.errors import BAD_ROWS_SHOWN, CommandError, list_bad_rows, reported_errors, say
from points_ledger.progress import count_progress


@click.command("migrate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--at", "cut_over", type=TIME, default=None,
    help="The cut-over time the balances are carried over at (their occurred_at). Default: now. Expiries in "
    "the file must be later.",
)  # fmt: skip
@click.option(
    "--skip-invalid", is_flag=True,
    help="Apply the valid rows and list the invalid ones as skipped. Default: apply nothing if any row is invalid.",
)  # fmt: skip
@format_option
@pass_context
def migrate_command(
    context: Context, file: Path, cut_over: datetime | None, skip_invalid: bool, output_format: str
) -> None:
    """Carry balances over from a legacy loyalty system's export FILE.csv.

    The file has a header and the columns member_id,balance and optionally tier,expires_at,enrolled_at (an
    empty cell is absent; times ISO 8601 with an offset). Every row is validated first: invalid rows are
    listed with their line numbers on stderr and nothing is applied (exit 1), unless --skip-invalid. Each
    member then gets one opening_balance (and an enrollment at enrolled_at when given), with event ids
    derived from the file's content: running the same file again changes nothing. A member who already has
    an opening balance is rejected (duplicate_opening_balance). Prints the members migrated, skipped and
    rejected.
    """
    from consumers.legacy_csv import CSV_MAX_BYTES, LegacyFileError, MigrationResult, migrate, read_rows

    at = cut_over or datetime.now(UTC)
    size = file.stat().st_size
    if size > CSV_MAX_BYTES:
        raise CommandError(f"{file} is {size} bytes; at most {CSV_MAX_BYTES} are read (split the export)")
    try:
        content = file.read_bytes()
    except OSError as error:
        raise CommandError(f"cannot read {file}: {error.strerror}") from error
    show_progress = sys.stdout.isatty() and sys.stderr.isatty()
    with reported_errors(context.describe_store):  # every row checked before the ledger is opened
        try:
            rows, bad = read_rows(content, file.name, at, context.program().acceptance())
        except LegacyFileError as error:
            raise CommandError(str(error)) from error
    result = MigrationResult(rows=len(rows) + len(bad))
    if bad and not skip_invalid:
        more = list_bad_rows(file.name, bad)
        raise CommandError(
            f"{len(bad)} of {result.rows} rows are invalid{more}; nothing was applied (fix them, or "
            "--skip-invalid to apply the rest)"
        )
    result.skipped.extend({"member_id": row.member_id, "line": row.line, "reason": row.reason} for row in bad)
    with (
        context.ledger(must_exist=False) as app,
        count_progress("migrate", len(rows), enabled=show_progress) as progress,
    ):
        done = 0

        def on_batch(members: int) -> None:
            nonlocal done
            done += members
            progress(done, f"{done:,} members")

        migrate(app, rows, file.name, result, on_batch)
    if output_format == "json":
        output.print_json(result.as_dict())
    else:
        summary = result.as_dict()
        output.print_record("migrate", {key: summary[key] for key in ("rows", "migrated", "skipped", "rejected")})
        for entry in [*result.skipped, *result.rejected][:BAD_ROWS_SHOWN]:
            say(f"line {entry['line']} ({entry['member_id']}): {entry['reason']}")


COMMANDS = [migrate_command]
