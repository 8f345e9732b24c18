"""`reconcile` and `correct`: find where the ledger and another system disagree, and fix it with compensating
adjustments, never by editing history."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from consumers.defaults import CORRECT_BATCH
from points_ledger import output
from points_ledger.context import TIME, Context, batch_size_option, format_option, open_ledger, pass_context
from points_ledger.errors import BAD_ROWS_SHOWN, CommandError, UsageProblemError, list_bad_rows, say
from points_ledger.files import check_target, force_option, text_output
from points_ledger.kafka_commands import crash_hook
from projections.defaults import CONTEXT_EVENTS

if TYPE_CHECKING:
    from consumers.corrections import Correction, CorrectionResult, MemberNow
    from ledger.application import LedgerApplication
    from ledger.store import Store
    from projections import reconcile

REPORT_CSV_COLUMNS = (
    "member_id", "kind", "ledger_balance", "other_balance", "difference", "ledger_tier", "other_tier", "last_events",
)  # fmt: skip


@contextmanager
def _balances_of(
    app: LedgerApplication, as_of: datetime | None
) -> Iterator[tuple[dict[str, reconcile.Side], Any, int]]:
    """A ledger's balances (as of a time, or its latest), in one read transaction kept open for the context."""
    from projections import queries, reconcile
    from projections.runner import Projections

    with Projections(app).reading() as (sql, position):
        sides = {
            row["member_id"]: reconcile.Side(int(row["balance"]), row["tier"]) for row in queries.balances(sql, as_of)
        }
        yield sides, sql, position


def _other_ledger(
    context: Context, url: str, password_file: Path | None, as_of: datetime | None
) -> tuple[dict[str, reconcile.Side], dict[str, Any]]:
    from dataclasses import replace

    from ledger.store import parse_store_url
    from ledger.store_urls import mask_url

    def store() -> Store:  # a shadow ledger keeps the same chain key
        return replace(parse_store_url(url, password_file=password_file), chain=context.settings.chain())

    with (
        open_ledger(store, context.program, lambda: mask_url(url), must_exist=True) as app,
        _balances_of(app, as_of) as (sides, _, position),
    ):
        return sides, {"store": app.store.describe(), "position": position}


def _balance_file(path: Path) -> tuple[dict[str, reconcile.Side], dict[str, Any]]:
    from consumers.legacy_csv import LegacyFileError, read_balances
    from projections import reconcile

    try:
        balances, bad = read_balances(path.read_bytes(), path.name)
    except LegacyFileError as error:
        raise CommandError(str(error)) from error
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from error
    if bad:
        more = list_bad_rows(path.name, bad)
        raise CommandError(f"{len(bad)} rows of {path.name} cannot be read{more}; nothing was compared")
    return {member: reconcile.Side(b.balance, b.tier) for member, b in balances.items()}, {"file": str(path)}


def _write_report(path: Path, report: dict[str, Any], force: bool) -> None:
    """The report as JSON, or as CSV for spreadsheets (by the file's suffix); 0600: it names members."""
    with text_output(path, force=force, private=True) as file:
        if path.suffix.lower() == ".csv":
            output.write_csv(file, REPORT_CSV_COLUMNS, report["items"])
        else:
            file.write(json.dumps(output.jsonable(report), indent=1) + "\n")


@click.command("reconcile")
@click.option(
    "--against",
    "against_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A balance file: member_id,balance[,tier] with a header (a legacy system, a POS, a CRM).",
)
@click.option(
    "--against-ledger",
    "against_store",
    metavar="STORE_URL",
    envvar="LEDGER_AGAINST_LEDGER",
    help="Another ledger, e.g. a shadow replayed with a corrected program or feed (env LEDGER_AGAINST_LEDGER). "
    "A password written into a URL given here is visible to other users of the machine (the process list): give "
    "it with --against-ledger-password-file, or the whole URL in LEDGER_AGAINST_LEDGER.",
)
@click.option(
    "--against-ledger-password-file",
    "against_password_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    envvar="LEDGER_AGAINST_LEDGER_PASSWORD_FILE",
    help="The other ledger's PostgreSQL password on the first line of FILE (env LEDGER_AGAINST_LEDGER_PASSWORD_FILE; "
    "POSTGRES_PASSWORD, PGPASSWORD and libpq's passfile work too). Used when its URL holds none; never shown.",
)
@click.option(
    "--as-of",
    "as_of",
    type=TIME,
    default=None,
    help="Compare the ledger's balances at this time (default: its latest). A shadow ledger is read "
    "at the same time; a file is taken as stating that time.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write every discrepancy: OUT.json (the input of `correct`) or OUT.csv (for spreadsheets: "
    "text that could start a formula is prefixed with '). Created 0600; an existing file only with --force.",
)
@click.option(
    "--context",
    "context_events",
    type=click.IntRange(0, 100),
    default=CONTEXT_EVENTS,
    show_default=True,
    help="The member's latest changes shown with each discrepancy.",
)
@force_option
@format_option
@pass_context
def reconcile_command(  # noqa: PLR0917 (one parameter per option, as click passes them)
    context: Context, against_file: Path | None, against_store: str | None, against_password_file: Path | None,
    as_of: datetime | None, report_path: Path, context_events: int, force: bool, output_format: str,
) -> None:  # fmt: skip
    """Compare every member's balance (and tier) with another system's, and write each discrepancy.

    A discrepancy is a member whose balance differs, whose tier differs (when the other side states one),
    or who is on one side only. `difference` is the ledger's balance minus the other's: `correct --from
    REPORT.json` appends the adjustments that remove it. Exit 0 whatever was found; with --format json the
    last line is {members_compared, discrepancies, balance, tier, balance_and_tier, missing_in_ledger,
    missing_in_other, net_difference, position, report}.
    """
    from projections import reconcile

    if (against_file is None) == (against_store is None):
        raise UsageProblemError(
            "give exactly one of --against FILE.csv and --against-ledger STORE_URL (env LEDGER_AGAINST_LEDGER)"
        )
    if against_password_file is not None and against_store is None:
        raise UsageProblemError(
            "--against-ledger-password-file (env LEDGER_AGAINST_LEDGER_PASSWORD_FILE) is for --against-ledger"
        )
    check_target(report_path, force)
    if against_file is not None:
        other, against = _balance_file(against_file)
    else:
        other, against = _other_ledger(context, str(against_store), against_password_file, as_of)
    with context.ledger(must_exist=True) as app, _balances_of(app, as_of) as (ledger, sql, position):
        found = reconcile.with_context(sql, reconcile.compare(ledger, other), context_events)
        compared = len(ledger.keys() | other.keys())
        ledger_side = {"store": context.describe_store(), "position": position}
    report = reconcile.report(as_of, ledger_side, against, compared, found)
    _write_report(report_path, report, force)
    summary = {**reconcile.summary(compared, found), "position": position, "report": str(report_path)}
    if output_format == "json":
        output.print_json(summary)
    else:
        output.print_record("reconcile", summary)


@click.command("correct")
@click.option(
    "--from",
    "report_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="A report written by `reconcile --report FILE.json`.",
)
@click.option("--reason", required=True, help="Why, for the audit trail (1-256 characters).")
@click.option("--operator", required=True, help="Who, for the audit trail (1-256 characters).")
@click.option("--dry-run", is_flag=True, help="Print the adjustments it would append and change nothing.")
@batch_size_option(
    CORRECT_BATCH, "Corrections per transaction (each member's correction is one message: whole or absent)."
)
@format_option
@pass_context
def correct_command(  # noqa: PLR0917 (one parameter per option, as click passes them)
    context: Context, report_path: Path, reason: str, operator: str, dry_run: bool, batch_size: int,
    output_format: str,
) -> None:  # fmt: skip
    """Append one compensating adjustment per balance discrepancy of a reconcile report.

    Each is an `adjustment` of -difference points with the reason and operator given, effective at the
    member's ledger time (so no lot expires and no tier is reviewed before it) and recorded now; history is
    never edited. A member whose balance changed since the report is left alone (reconcile again). Ids
    derive from the report's content and the member: running the same report twice corrects once, and a
    re-run after a crash completes what is missing. Tier-only differences and members only the other side
    lacks are listed as not corrected. A correction the rules refuse (points to remove beyond the balance)
    is listed as rejected.
    """
    from consumers.corrections import CorrectionResult, ReportError, corrections

    result = CorrectionResult()
    try:
        content = report_path.read_bytes()
    except OSError as error:
        raise CommandError(f"cannot read {report_path}: {error.strerror}") from error
    with context.ledger(must_exist=True) as app:
        try:
            found = corrections(
                content, report_path.name, result, reason=reason, operator=operator, now=datetime.now(UTC),
                member_state=lambda member_id: _state_of(app, member_id),
            )  # fmt: skip
        except ReportError as error:
            raise CommandError(str(error)) from error
        if not dry_run:
            _apply(app, found, report_path.name, result, batch_size)
    if dry_run:
        planned = [{"member_id": c.member_id, "points": c.message.points, "event_id": c.message.event_id,
                    "reason": reason, "operator": operator} for c in found]  # fmt: skip
        summary = {"dry_run": True, "corrections": len(planned), "not_corrected": result.not_corrected}
        if output_format == "json":
            output.print_json_lines([*planned, summary])
        else:
            output.print_rows("would append", ["member_id", "points", "event_id"],
                              ([p["member_id"], p["points"], p["event_id"]] for p in planned))  # fmt: skip
            output.print_record(
                "correct --dry-run", {"corrections": len(planned), "not_corrected": len(result.not_corrected)}
            )
        return
    summary = result.as_dict()
    if output_format == "json":
        output.print_json(summary)
    else:
        counts = {
            "corrections": len(result.corrected),
            "already_corrected": len(result.already_corrected),
            "rejected": len(result.rejected),
            "not_corrected": len(result.not_corrected),
        }
        output.print_record("correct", counts)
    for entry in [*result.rejected, *result.not_corrected][:BAD_ROWS_SHOWN]:
        say(f"{entry['member_id']}: {entry['reason']}")


def _state_of(app: LedgerApplication, member_id: str) -> MemberNow | None:
    from consumers.corrections import MemberNow

    member = app.member(member_id)
    return None if member is None else MemberNow(member.balance, member.last_effective_at, _AppliedIds(app, member_id))


class _AppliedIds:
    """The event ids the ledger recorded for one member, asked one by one of its claim index."""

    def __init__(self, app: LedgerApplication, member_id: str) -> None:
        self.app, self.member_id = app, member_id

    def __contains__(self, event_id: object) -> bool:
        return isinstance(event_id, str) and self.app.applied(self.member_id, event_id)


def _apply(app: LedgerApplication, found: list[Correction], name: str, result: CorrectionResult, size: int) -> None:
    from consumers.corrections import apply_corrections

    committed = crash_hook()
    apply_corrections(app, found, name, result, batch_size=size, on_batch=lambda _: committed())


COMMANDS = [reconcile_command, correct_command]
