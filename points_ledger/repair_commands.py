"""`reconcile` and `correct`: find where the ledger and another system disagree, and fix it with compensating
adjustments, never by editing history."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from consumers.defaults import CORRECT_BATCH
from points_ledger import output
from points_ledger.context import TIME, Context, batch_size_option, format_option, open_ledger, pass_context
from points_ledger.errors import CommandError, FirstShown, UsageProblemError, list_bad_rows, reported_errors, say
from points_ledger.files import check_target, force_option
from points_ledger.lifecycle import crash_hook
from points_ledger.report_files import opened, report_writer, require_rereadable
from projections.defaults import CONTEXT_EVENTS, REPORT_ITEMS

if TYPE_CHECKING:
    from consumers.legacy_csv import BadRow
    from consumers.member_table import MemberTable
    from ledger.application import LedgerApplication
    from ledger.storage.store import Store
    from projections.report_check import ReportHeader
    from projections.runner import Projections

#: The largest report `correct` reads, in bytes (it is read in pieces: this bounds time, not memory).
REPORT_MAX_BYTES = 4 * 1024**3


def _reported(sides: Iterable[Any], describe: str) -> Iterator[Any]:
    """`sides`, with a failure while reading them reported as the failure of the store they come from."""
    with reported_errors(lambda: describe):
        yield from sides


@contextmanager
def _other_ledger(
    context: Context, url: str, password_file: Path | None, as_of: datetime | None
) -> Iterator[tuple[Iterable[Any], dict[str, Any]]]:
    """Another ledger's balances, streamed from its views in one read transaction kept open for the context."""
    from dataclasses import replace

    from ledger.storage.identity import ledger_id
    from ledger.storage.store import parse_store_url
    from ledger.storage.store_urls import mask_url
    from projections import reconcile
    from projections.runner import Projections

    def store() -> Store:  # a shadow ledger keeps the same chain key
        return replace(parse_store_url(url, password_file=password_file), chain=context.settings.chain())

    describe = mask_url(url)
    with ExitStack() as stack:
        app = stack.enter_context(open_ledger(store, context.program, lambda: describe, must_exist=True))
        with reported_errors(lambda: describe):
            sql, position = stack.enter_context(Projections(app).reading())
            against = {"store": app.store.describe(), "id": ledger_id(app), "position": position}
        yield _reported(reconcile.ledger_sides(sql, as_of), describe), against


def _balance_file(path: Path, members: MemberTable) -> tuple[Iterable[Any], dict[str, Any]]:
    """A balance file's balances by member id (sorted on disk: `members`); a file with unreadable rows is refused."""
    from consumers.legacy_csv import FileLines, LegacyFileError, read_balances
    from projections import reconcile

    bad: FirstShown[BadRow] = FirstShown()
    try:
        with opened(path) as binary:
            for row in read_balances(FileLines(binary, path.name), members):
                bad.add(row)
    except LegacyFileError as error:
        raise CommandError(str(error)) from error
    if bad.count:
        more = list_bad_rows(path.name, bad)
        raise CommandError(f"{bad.count} rows of {path.name} cannot be read{more}; nothing was compared")
    sides = ((member_id, reconcile.Side(balance, tier)) for member_id, balance, tier in members.in_order())
    return sides, {"file": str(path)}


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
    "text that could start a formula is prefixed with '). Written as found into a temporary file put in place "
    "at the end; created 0600; an existing file only with --force.",
)
@click.option(
    "--context",
    "context_events",
    type=click.IntRange(0, 100),
    default=CONTEXT_EVENTS,
    show_default=True,
    help="The member's latest changes shown with each discrepancy (with --as-of, the latest up to that time).",
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
    REPORT.json` appends the adjustments that remove it. The report names the ledger's id and the log
    position the comparison was made at, which `correct` checks it against. Both sides are read in member
    id order and merged, a member at a time (a balance file, which may be a pipe, is sorted in a temporary
    table on disk); the report is written as discrepancies are found. Exit 0 whatever was found; with
    --format json the last line is {members_compared, discrepancies, balance, tier, balance_and_tier,
    missing_in_ledger, missing_in_other, net_difference, position, report}.
    """
    from consumers.member_table import MemberTable
    from ledger.storage.identity import ledger_id
    from projections import reconcile
    from projections.runner import Projections

    if (against_file is None) == (against_store is None):
        raise UsageProblemError(
            "give exactly one of --against FILE.csv and --against-ledger STORE_URL (env LEDGER_AGAINST_LEDGER)"
        )
    if against_password_file is not None and against_store is None:
        raise UsageProblemError(
            "--against-ledger-password-file (env LEDGER_AGAINST_LEDGER_PASSWORD_FILE) is for --against-ledger"
        )
    check_target(report_path, force)
    tally = reconcile.Tally()
    with ExitStack() as stack:
        if against_file is not None:
            other, against = _balance_file(against_file, stack.enter_context(MemberTable()))
        else:
            other, against = stack.enter_context(
                _other_ledger(context, str(against_store), against_password_file, as_of)
            )
        app = stack.enter_context(context.ledger(must_exist=True))
        sql, position = stack.enter_context(Projections(app).reading())
        ledger_side = {"id": ledger_id(app), "store": context.describe_store(), "position": position}
        writer = stack.enter_context(
            report_writer(report_path, {"as_of": as_of, "ledger": ledger_side, "against": against}, force=force)
        )
        try:
            for member_id, ours, theirs in reconcile.merged(reconcile.ledger_sides(sql, as_of), other):
                found = reconcile.discrepancy(member_id, ours, theirs)
                tally.add(found)
                if found is not None:
                    writer.item(reconcile.with_context(sql, found, context_events, as_of).as_dict())
        except reconcile.UnorderedSideError as error:
            raise CommandError(f"{error}; no report was written") from error
        writer.finish(tally.summary())
    summary = {**tally.summary(), "position": position, "report": str(report_path)}
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

    The report is checked first, as a whole: it must name this ledger, and every item must agree with the
    ledger as of the report's log position (the member known then, its balance and tier, the kind and
    difference); otherwise nothing is recorded (exit 1). Each balance discrepancy then gets an `adjustment`
    of -difference points with the reason and operator given, effective at the member's ledger time (so no
    lot expires and no tier is reviewed before it) and recorded now; history is never edited. A member
    corrected since the report (by correct or an adjustment) is left alone: reconcile again. Ids derive from
    the ledger, the report's position and the discrepancy: running the same report twice corrects once, and
    a re-run after a crash completes what is missing. Tier-only differences, members only the ledger has and
    members only the other side has (correct never creates a member) are listed as not corrected; a
    correction the rules refuse (points to remove beyond the balance) as rejected. One line per member as
    it is decided (JSON lines with --format json), then the counts.
    """
    from consumers.json_stream import JsonStreamError
    from projections.report_check import ReportError

    require_rereadable(
        report_path, "correct reads a report twice (it checks every item, then applies)", REPORT_MAX_BYTES
    )
    counts: Counter[str] = Counter()
    problems: FirstShown[dict[str, Any]] = FirstShown()

    def counted(lines: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for line in lines:
            counts[line["outcome"]] += 1
            if line["outcome"] in {"rejected", "not_corrected"}:
                problems.add(line)
            yield line

    with context.ledger(must_exist=True) as app:
        try:
            header, views = _checked_report(app, report_path)
            lines = _outcomes(app, views, header, report_path, reason=reason, operator=operator, dry_run=dry_run,
                              batch_size=batch_size)  # fmt: skip
            _print_outcomes(counted(lines), output_format)
        except (ReportError, JsonStreamError) as error:
            recorded = counts["corrected"]
            done = f"{recorded} corrections recorded before this item, each checked" if recorded else "nothing recorded"
            raise CommandError(f"{error}; {done}") from error
    summary = {
        "dry_run": dry_run, "corrections": counts["planned" if dry_run else "corrected"],
        **{outcome: counts[outcome] for outcome in ("already_corrected", "rejected", "not_corrected")},
        "ledger": header.ledger_id, "position": header.position,
    }  # fmt: skip
    if output_format == "json":
        output.print_json(summary)
    else:
        output.print_record("correct --dry-run" if dry_run else "correct", summary)
    for entry in problems.shown:
        say(f"{entry['member_id']}: {entry['reason']}")
    if problems.more():
        say(problems.more().strip(" ()"))


def _report_items(path: Path) -> Iterator[Any]:
    """The items of a report file, one at a time."""
    from consumers.json_stream import fields

    with opened(path) as binary:
        for key, value in fields(binary, path.name, REPORT_ITEMS):
            if key == REPORT_ITEMS:
                yield from value


def _checked_report(app: LedgerApplication, path: Path) -> tuple[ReportHeader, Projections]:
    """The report's header, once it and every item were checked against the ledger's views (returned too);
    nothing is recorded."""
    from consumers.json_stream import fields
    from ledger.storage.identity import ledger_id
    from projections.report_check import ItemChecker, check_header, report_header
    from projections.runner import Projections

    with opened(path) as binary:
        found = {key: None if key == REPORT_ITEMS else value for key, value in fields(binary, path.name, REPORT_ITEMS)}
    header = report_header(found, path.name)
    check_header(header, path.name, ledger_id(app), app.recorder.max_notification_id() or 0)
    views, checker = Projections(app), ItemChecker(header, path.name)
    with views.reading() as (sql, _):
        for item in _report_items(path):
            checker.check(sql, item, now=False)
    return header, views


def _outcomes(
    app: LedgerApplication, views: Projections, header: ReportHeader, path: Path, *, reason: str, operator: str,
    dry_run: bool, batch_size: int,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Each item's outcome, a batch of items at a time: checked again against the views (caught up), then the
    batch's corrections applied in one transaction (or, with `dry_run`, only planned)."""
    from consumers.corrections import Correction, apply_corrections, planned
    from projections.report_check import ItemChecker

    committed, checker = crash_hook(), ItemChecker(header, path.name)
    items = _report_items(path)
    while batch := list(itertools.islice(items, batch_size)):
        with views.reading() as (sql, _):
            plans = [planned(header, checker.check(sql, item), reason=reason, operator=operator)
                     for item in batch]  # fmt: skip
        corrections = [plan for plan in plans if isinstance(plan, Correction)]
        if dry_run:
            decided = iter([correction.outcome("planned") for correction in corrections])
        else:
            decided = iter(list(apply_corrections(app, corrections, path.name, batch_size=batch_size,
                                                  on_batch=lambda _: committed())))  # fmt: skip
        for plan in plans:
            yield next(decided) if isinstance(plan, Correction) else plan


#: The columns of `correct`'s table, printed as each member is decided.
OUTCOME_COLUMNS = (
    output.Column("member_id", 16), output.Column("outcome", 17), output.Column("points", 10, numeric=True),
    output.Column("reason", 0),
)  # fmt: skip


def _print_outcomes(lines: Iterable[dict[str, Any]], output_format: str) -> None:
    if output_format == "json":
        output.print_json_lines(lines)
        return
    rows = ([line["member_id"], line["outcome"], line.get("points"), line.get("reason")] for line in lines)
    output.print_rows_as_they_come("correct", OUTCOME_COLUMNS, rows)


COMMANDS = [reconcile_command, correct_command]
