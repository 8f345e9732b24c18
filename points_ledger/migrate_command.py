"""`migrate FILE.csv`: carry a legacy loyalty system's balances over, one opening balance per member.

The file is read three times, a line at a time: its digest (which the event ids derive from), then every row
checked, then the rows applied (each reading checks the digest is still the same). Memory holds one batch of
rows, whatever the file's size.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from points_ledger import output
from points_ledger.context import TIME, Context, format_option, pass_context
from points_ledger.errors import CommandError, FirstShown, list_bad_rows, reported_errors, say
from points_ledger.progress import count_progress
from points_ledger.report_files import opened, require_rereadable

if TYPE_CHECKING:
    from consumers.legacy_csv import BadRow
    from ledger.application import LedgerApplication
    from schemas import Acceptance


@click.command("migrate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--at", "cut_over", type=TIME, default=None,
    help="The cut-over time the balances are carried over at (their occurred_at), e.g. 2024-01-01T00:00:00Z: "
    "when the legacy balances were taken. Default: now. Every expires_at in the file must be later.",
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
    an opening balance is rejected (duplicate_opening_balance). FILE must be a regular file (it is read
    twice; a pipe is refused), at most 2 GiB. Prints the counts of members migrated, skipped and rejected;
    with --format json first one line per row as it is applied.
    """
    from consumers.legacy_csv import CSV_MAX_BYTES, LegacyFileError

    at = cut_over or datetime.now(UTC)
    require_rereadable(file, "migrate reads the file twice (it checks every row, then applies)", CSV_MAX_BYTES)
    with reported_errors(context.describe_store):  # every row checked before the ledger is opened
        acceptance = context.program().acceptance()
        try:
            digest, rows, bad, expired = _checked(file, at, acceptance)
        except LegacyFileError as error:
            raise CommandError(str(error)) from error
    if bad.count and not skip_invalid:
        more = list_bad_rows(file.name, bad)
        raise CommandError(
            f"{bad.count} of {rows} rows are invalid{more}; nothing was applied (fix them, or "
            f"--skip-invalid to apply the rest){_cut_over_hint(expired, at, given=cut_over is not None)}"
        )
    counts: Counter[str] = Counter()
    problems: FirstShown[dict[str, Any]] = FirstShown()

    def counted(lines: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for line in lines:
            counts[line["outcome"]] += 1
            if line["outcome"] != "migrated":
                problems.add(line)
            yield line

    show_progress = sys.stdout.isatty() and sys.stderr.isatty()
    with (
        context.ledger(must_exist=False) as app,
        count_progress("migrate", rows - bad.count, enabled=show_progress) as progress,
    ):
        done = 0

        def on_batch(members: int) -> None:
            nonlocal done
            done += members
            progress(done, f"{done:,} members")

        lines = counted(_applied(app, file, at, acceptance, digest=digest, on_batch=on_batch))
        if output_format == "json":
            output.print_json_lines(lines)
        else:
            for _ in lines:
                pass
    summary = {"rows": rows, **{outcome: counts[outcome] for outcome in ("migrated", "skipped", "rejected")}}
    if output_format == "json":
        output.print_json(summary)
    else:
        output.print_record("migrate", summary)
        for entry in problems.shown:
            say(f"line {entry['line']} ({entry['member_id']}): {entry['reason']}")


def _cut_over_hint(expired: int, at: datetime, *, given: bool) -> str:
    """What to do when rows expire by the cut-over time: usually the cut-over is later than it should be."""
    if not expired:
        return ""
    if given:
        return f"; {expired} of them expire by the cut-over time --at {at.isoformat()}: give an earlier --at"
    return (
        f"; {expired} of them expire by the cut-over time, which is --at and defaults to now "
        f"({at.isoformat()}): give --at the time the legacy balances were taken, before their expiries, "
        "e.g. --at 2024-01-01T00:00:00Z"
    )


def _checked(file: Path, at: datetime, acceptance: Acceptance) -> tuple[str, int, FirstShown[BadRow], int]:
    """The file's digest, its number of rows, its invalid rows (the first ones kept to list) and how many of
    those expire by the cut-over time."""
    from consumers.legacy_csv import BadRow, FileLines, file_digest, read_rows

    with opened(file) as binary:
        digest = file_digest(binary, file.name)
        binary.seek(0)
        lines = FileLines(binary, file.name)
        bad: FirstShown[BadRow] = FirstShown()
        rows = expired = 0
        for row in read_rows(lines, at, acceptance, digest):
            rows += 1
            if isinstance(row, BadRow):
                bad.add(row)
                expired += row.expires_by_cut_over
    if lines.digest() != digest:
        raise CommandError(f"{file} changed while it was read; nothing was applied (migrate a file nobody writes)")
    return digest, rows, bad, expired


def _applied(
    app: LedgerApplication, file: Path, at: datetime, acceptance: Acceptance, *, digest: str,
    on_batch: Callable[[int], None],
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The file read again and applied: each row's outcome as its batch commits. Every row is parsed again as
    it is applied, so a file changed since it was checked applies nothing unchecked; it stops the command."""
    from consumers.legacy_csv import FileLines, migrate, read_rows

    with opened(file) as binary:
        lines = FileLines(binary, file.name)
        for row, outcome, reason in migrate(app, read_rows(lines, at, acceptance, digest), file.name, on_batch):
            found = {"member_id": row.member_id, "line": row.line, "outcome": outcome}
            yield found | ({"reason": reason} if reason else {})
    if lines.digest() != digest:
        raise CommandError(
            f"{file} changed while it was migrated: the rows above were applied from it, each checked; migrate a "
            "file nobody writes"
        )


COMMANDS = [migrate_command]
