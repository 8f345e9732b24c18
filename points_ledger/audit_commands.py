"""`digest` and `verify`: tamper evidence for finance, and proof that the log holds together and the views agree
with it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from points_ledger import output
from points_ledger.context import Context, format_option, pass_context
from points_ledger.errors import CommandError, warn
from points_ledger.progress import count_progress
from points_ledger.projection_commands import workers_option

if TYPE_CHECKING:
    from projections.digest import Digest

#: Longest digest file read (one small JSON object).
DIGEST_FILE_BYTES_MAX = 4096


@click.command()
@format_option
@pass_context
def digest(context: Context, output_format: str) -> None:
    """One hash that commits to the log itself up to its position: keep it at each period close.

    Read from the stored events, never from the views (one pass over the log). Prints {"position",
    "digest", "members", "events", "chain"}: SHA-256, or HMAC-SHA-256 with the chain key when one is
    configured (`chain` says which). `verify --digest FILE` (FILE being this command's --format json output)
    later proves the log up to that position has not changed since.
    """
    from projections import answers

    with context.ledger(must_exist=True) as app:
        result = answers.digest(app).as_dict()
    if output_format == "json":
        output.print_json(result)
    else:
        output.print_record("digest", result)


@click.command()
@click.option(
    "--digest",
    "digest_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A saved `digest --format json`: also prove the log up to its position is unchanged since.",
)
@workers_option("replay the log")
@format_option
@pass_context
def verify(context: Context, digest_file: Path | None, workers: int | None, output_format: str) -> None:
    """Check the log against itself and every view against the log; exit 1 on any discrepancy.

    Members are replayed from the log with the domain's own code, one at a time: their audit hash chains
    (recomputed from the stored bytes, keyed with the chain key when one is configured), event ids (each
    message recorded once), snapshots (each equal to the replay at its version), balances, tiers, lots,
    lot movements and audit rows, compared with the views row by row. Each upstream's tracking position
    must be the last one the ledger recorded. The views are first caught up to the log head. Costs one
    pass over the whole log, like a rebuild (and one more with --digest).
    """
    from projections import answers
    from projections.runner import Projections, RebuildWorkersError
    from projections.verify import VerifyWorkerError

    saved = _read_digest(digest_file) if digest_file is not None else None
    show_progress = sys.stderr.isatty()
    with context.ledger(must_exist=True) as app:
        projections = Projections(app)
        head = projections.db.head()
        with count_progress("verify", head or None, enabled=show_progress) as progress:
            try:
                result = answers.verify(
                    projections, saved, lambda done: progress(done, f"{done:,}/{head:,} events"), workers
                )
            except RebuildWorkersError as error:
                raise click.BadParameter(str(error), param_hint="--workers") from error
            except VerifyWorkerError as error:
                raise CommandError(f"{error}; verify stopped without a verdict") from error
    summary, rows = result.summary(), result.rows()
    if output_format == "json":
        output.print_json_lines([*rows, summary])
    else:
        if rows:
            columns = answers.DISCREPANCY_COLUMNS
            output.print_rows("discrepancies", columns, ([row[column] for column in columns] for row in rows))
        output.print_record("verify", summary)
    if result.found > len(rows):
        warn(f"{result.found - len(rows)} more discrepancies not shown")
    if result.found:
        raise CommandError(
            f"{result.found} discrepancies between the log, itself and the views"
            + ("; the log differs from the saved digest" if result.digest == "differs" else "")
        )


def _read_digest(path: Path) -> Digest:
    from projections.digest import DigestFileError, parse_digest

    try:
        with path.open("rb") as file:
            data = file.read(DIGEST_FILE_BYTES_MAX + 1)
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from error
    try:
        if len(data) > DIGEST_FILE_BYTES_MAX:
            raise DigestFileError(f"over {DIGEST_FILE_BYTES_MAX} bytes")
        return parse_digest(json.loads(data))
    except (DigestFileError, ValueError) as error:
        raise click.BadParameter(f"{path} is not a saved digest: {error}", param_hint="--digest") from error


COMMANDS = [digest, verify]
