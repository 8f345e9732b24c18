"""`balance`, `balances`, `history` and `report …`: options parsed, the answer asked of the report layer
(projections.answers) and rendered.

By default a query first catches the views up on whatever the log recorded after their positions (no answer
is ever stale), then reads them in one transaction. `--from-log` folds the event log instead, as the ground
truth to compare with. Every JSON answer carries `position`: the last log position it reflects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from points_ledger import output, readable
from points_ledger.context import TIME, Context, format_option, pass_context
from points_ledger.errors import CommandError
from points_ledger.files import binary_output, check_target, force_option
from projections.defaults import BREAKAGE_WINDOW_DAYS

if TYPE_CHECKING:
    from projections.answers import BreakageMethod
    from projections.periods import Granularity, ReportPeriods
    from projections.sources import ReportSource

F = TypeVar("F", bound=Callable[..., Any])


def from_log_option(command: F) -> F:
    return click.option(
        "--from-log",
        is_flag=True,
        help="Fold the event log instead of reading the views: the ground truth, slower as the log grows.",
    )(command)


def report_format_option(command: F) -> F:
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["table", "json", "csv"]),
        default="table",
        show_default=True,
        help="table for people, json for machines, csv for spreadsheets.",
    )(command)


@contextmanager
def source(context: Context, from_log: bool) -> Iterator[ReportSource]:
    """The ledger's views (caught up, in one read transaction) or its log, open for the context: an answer may
    be an iterator, read as it is printed."""
    from projections.sources import report_source

    with context.ledger(must_exist=True) as app, report_source(app, from_log) as found:
        yield found


@click.command()
@click.argument("member_id")
@click.option("--as-of", "as_of", type=TIME, default=None, help="Balance as recorded up to this time.")
@from_log_option
@format_option
@pass_context
def balance(context: Context, member_id: str, as_of: datetime | None, from_log: bool, output_format: str) -> None:
    """A member's balance, tier and lots with points left (latest, or as of a time)."""
    from projections import answers

    with source(context, from_log) as found:
        result = answers.balance(found, member_id, as_of)
    if result is None:
        raise CommandError(f"no member {member_id!r}" + (f" as of {as_of.isoformat()}" if as_of else ""))
    if output_format == "json":
        output.print_json(result)
        return
    shown = {k: v for k, v in result.items() if k not in {"lots", "position"}}
    output.print_record(f"member {member_id}", shown, f"log position {result['position']:,}")
    output.print_rows(
        "lots with points left", ["points", "remaining", "expires_at"],
        ([lot["points"], lot["remaining"], lot["expires_at"]] for lot in result["lots"]),
    )  # fmt: skip


#: The columns of `balances` as a table, printed as the rows come.
BALANCE_COLUMNS = (
    output.Column("member_id", 16),
    output.Column("balance", 12, numeric=True),
    output.Column("tier", 10),
)


@click.command()
@click.option("--as-of", "as_of", type=TIME, default=None, help="Balances as recorded up to this time.")
@from_log_option
@report_format_option
@pass_context
def balances(context: Context, as_of: datetime | None, from_log: bool, output_format: str) -> None:
    """Every member's balance and tier, by member id: one JSON object per line with --format json.

    Rows are printed as they are read from the views, so memory does not grow with members; the table is in
    fixed-width columns (a longer value widens its own line). --from-log folds the whole log first and holds
    every member's figures."""
    from projections import answers

    with source(context, from_log) as found:
        rows = answers.balances(found, as_of)
        if output_format == "json":
            output.print_json_lines(rows)
        elif output_format == "csv":
            output.print_csv(answers.BALANCES_COLUMNS, rows)
        else:
            title = f"balances (log position {found.position})"
            columns = [column.name for column in BALANCE_COLUMNS]
            output.print_rows_as_they_come(title, BALANCE_COLUMNS, ([row[c] for c in columns] for row in rows))


@click.command()
@click.argument("member_id")
@from_log_option
@format_option
@pass_context
def history(context: Context, member_id: str, from_log: bool, output_format: str) -> None:
    """Every recorded change of a member (the audit trail), with provenance and running balance."""
    from projections import answers

    with source(context, from_log) as found:
        rows, position = answers.history(found, member_id), found.position
    if not rows:
        raise CommandError(f"no member {member_id!r}")
    if output_format == "json":
        output.print_json_lines(rows)
        return
    from projections.history_lines import statement_line

    lines = [statement_line(row) for row in rows]
    narrow = output.console().width < WIDE_TERMINAL
    output.print_rows(
        f"history of {member_id}", ["#", "effective", "what happened", "change", "balance", "tier", "from"],
        ([line["version"], line["effective_at"].date() if narrow else line["effective_at"], line["what"],
          readable.signed(line["change"]), line["balance"], line["tier"], line["origin"]] for line in lines),
        caption=f"{len(lines):,} changes, oldest first (log position {position:,}); every detail: --format json",
        right_aligned={"#", "change", "balance"}, compact=True,
    )  # fmt: skip


#: From this width on, `history` shows each change's time to the second (below, its date).
WIDE_TERMINAL = 120


# ---- finance reports -------------------------------------------------------------------------


def by_option(command: F) -> F:
    return click.option(
        "--by",
        "granularity",
        type=click.Choice(["month", "quarter"]),
        default=None,
        help="A row per calendar month or quarter (UTC) in (FROM, TO], then a total row.",
    )(command)


def period_report(command: F) -> F:
    """The options of a report over periods: --from, --to, --by, --from-log and --format (in that order)."""
    command = cast("F", pass_context(command))
    for option in (report_format_option, from_log_option, by_option):
        command = option(command)
    command = click.option("--to", "end", type=TIME, required=True, help="Range end (inclusive).")(command)
    return click.option("--from", "start", type=TIME, required=True, help="Range start (exclusive).")(command)


def checked_periods(start: datetime, end: datetime, granularity: Granularity | None) -> ReportPeriods:
    from projections.periods import ReportPeriods

    if end < start:
        raise click.BadParameter("--to must not be before --from", param_hint="--to")
    try:
        return ReportPeriods.of(start, end, granularity)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--by") from error


@click.group()
def report() -> None:
    """Finance and program reports, as recorded up to the times given (run `sweep` first at period ends)."""


@report.command()
@click.option("--as-of", "as_of", type=TIME, default=None, help="Liability at this time (required without --chart).")
@click.option(
    "--breakage",
    "breakage_method",
    type=click.Choice(["configured", "estimated"]),
    default="configured",
    show_default=True,
    help="configured: the program's breakage_rate. estimated: expired / (expired + redeemed) points over "
    "the trailing window before AS-OF (stated in the output).",
)
@click.option(
    "--breakage-window-days",
    type=click.IntRange(1, 3660),
    default=BREAKAGE_WINDOW_DAYS,
    show_default=True,
    help="The trailing window of --breakage estimated, in days.",
)
@click.option(
    "--chart",
    "chart_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Draw month-end outstanding points and liability value in (FROM, TO] to this PNG file "
    "(with --from and --to); prints the figures drawn. An existing file only with --force.",
)
@click.option("--from", "start", type=TIME, default=None, help="With --chart: range start (exclusive).")
@click.option("--to", "end", type=TIME, default=None, help="With --chart: range end (inclusive).")
@force_option
@from_log_option
@report_format_option
@pass_context
def liability(  # noqa: PLR0917 (one parameter per option, as click passes them)
    context: Context,
    as_of: datetime | None,
    breakage_method: BreakageMethod,
    breakage_window_days: int,
    chart_path: Path | None,
    start: datetime | None,
    end: datetime | None,
    force: bool,
    from_log: bool,
    output_format: str,
) -> None:
    """Points liability: outstanding and negative points, valued at the point value, net of breakage, by tier,
    with the points expiring within 30/60/90 days and 12 months (current) or later (non-current)."""
    from projections import answers

    if chart_path is not None:
        if start is None or end is None:
            raise click.UsageError("--chart needs --from and --to")
        check_target(chart_path, force)
        _liability_chart(context, chart_path, (start, end), from_log, output_format, force=force)
        return
    if as_of is None:
        raise click.UsageError("give --as-of (or --chart with --from and --to)")
    with source(context, from_log) as found:
        result = answers.liability(found, as_of, breakage_method, breakage_window_days)
        currency = found.program.currency
    if output_format == "csv":
        output.print_csv(answers.LIABILITY_CSV_COLUMNS, answers.liability_csv_rows(result))
    elif output_format == "json":
        output.print_json(result)
    else:
        _liability_table(result, currency)


def _liability_table(result: dict[str, Any], currency: str) -> None:
    """The liability for people: its totals, then its measures by tier (a row per measure, a column per tier)."""
    from projections import answers

    breakage = result["breakage"]
    output.print_record("points liability", {
        "as of": result["as_of"], "members": result["members"], "outstanding points": result["outstanding_points"],
        "negative points": result["negative_points"], "point value": f"{result['point_value']} {currency}",
        "liability": readable.money(result["liability_value"], currency),
        "breakage": f"{readable.percent(result['breakage_rate'])} ({breakage['method']})",
        "liability net of breakage": readable.money(result["liability_net"], currency),
    }, f"log position {result['position']:,}")  # fmt: skip
    lines = answers.liability_csv_rows(result)
    figures = [
        (measure.replace("_", " "), [
            readable.money(line[measure], currency) if measure in answers.MONEY_MEASURES
            else readable.number(line[measure]) for line in lines
        ]) for measure in answers.LIABILITY_MEASURES
    ]  # fmt: skip
    caption = f"as of {readable.when(result['as_of'])}; money in {currency}"
    output.print_statement("by tier", caption, [line["tier"] for line in lines], figures)


def _liability_chart(
    context: Context, path: Path, span: tuple[datetime, datetime], from_log: bool, output_format: str, *, force: bool
) -> None:
    # matplotlib takes about 0.45 s to import, a third of every command's start-up: only --chart pays it.
    from points_ledger.chart import draw_liability_chart
    from projections import answers

    start, end = span
    months = checked_periods(start, end, "month")
    with source(context, from_log) as found:
        rows = answers.liability_at_period_ends(found, months)
        currency = found.program.currency
    title = f"points liability, month ends {start.date().isoformat()} to {end.date().isoformat()}"
    drawn = [(row["as_of"], row["outstanding_points"], Decimal(row["liability_value"])) for row in rows]
    with binary_output(path, force=force) as file:
        draw_liability_chart(file, drawn, currency, title)
    if output_format != "table":
        _print_rows("liability by month end", answers.LIABILITY_AT_PERIOD_ENDS_COLUMNS, rows, output_format)
        return
    output.print_rows(
        "liability by month end", ["as of", "outstanding points", "liability"],
        ([row["as_of"], row["outstanding_points"], readable.money(row["liability_value"], currency)] for row in rows),
        caption=f"log position {rows[0]['position']:,}" if rows else None,
        right_aligned={"outstanding points", "liability"},
    )  # fmt: skip


@report.command()
@period_report
def rollforward(  # noqa: PLR0917 (one parameter per option, as click passes them)
    context: Context, start: datetime, end: datetime, granularity: Granularity | None, from_log: bool,
    output_format: str,
) -> None:  # fmt: skip
    """Opening balance, the flows of points in (FROM, TO], and the closing balance; with --by, a row per month
    or quarter and a total row, each satisfying the identity exactly."""
    from projections import answers

    periods = checked_periods(start, end, granularity)
    with source(context, from_log) as found:
        rows = answers.rollforward(found, periods)
    if output_format == "table":
        _statement("points roll-forward", periods, rows, answers.ROLLFORWARD_MEASURES,
                   "each closing is the next opening")  # fmt: skip
    elif granularity is None and output_format == "json":  # one line: a record, with no period to name
        output.print_json({k: v for k, v in rows[0].items() if k != "period"})
    else:
        _print_rows("points roll-forward", answers.ROLLFORWARD_COLUMNS, rows, output_format)


@report.command("kpis")
@period_report
def kpis_command(  # noqa: PLR0917 (one parameter per option, as click passes them)
    context: Context, start: datetime, end: datetime, granularity: Granularity | None, from_log: bool,
    output_format: str,
) -> None:  # fmt: skip
    """Program KPIs per period in (FROM, TO]: new and active members, points issued, redeemed and expired,
    the redemption rate, tier upgrades and downgrades, and rejected messages by reason.

    With --format json, one object per period and, on the last line, one for the whole range."""
    from projections import answers

    periods = checked_periods(start, end, granularity)
    with source(context, from_log) as found:
        rows = answers.kpis(found, periods)
    if output_format == "csv":
        output.print_csv(answers.KPI_CSV_COLUMNS, (answers.kpi_csv_row(row) for row in rows))
    elif output_format == "table":
        table = [answers.kpi_table_row(row) for row in rows]
        _statement("program KPIs", periods, table, answers.KPI_MEASURES, "redemption rate: redeemed / issued points")
    else:
        _print_rows("program KPIs", answers.KPI_TABLE_COLUMNS, rows, output_format)


def _statement(title: str, periods: ReportPeriods, rows: list[dict[str, Any]], measures: Sequence[str],
               note: str) -> None:  # fmt: skip
    """Period rows as a statement for people: a row per measure, a column per period; the range, the log
    position and `note` in its caption."""
    cut = f" by {periods.granularity}" if periods.granularity else ""
    caption = (f"({readable.when(periods.start)}, {readable.when(periods.end)}]{cut}; log position "
               f"{rows[0]['position']:,}; {note}")  # fmt: skip
    figures = [
        (measure.replace("_", " "), [readable.measure(measure, row[measure]) for row in rows])
        for measure in measures
    ]  # fmt: skip
    output.print_statement(title, caption, [row["period"] for row in rows], figures)


def _print_rows(title: str, columns: Sequence[str], rows: list[dict[str, Any]], output_format: str) -> None:
    if output_format == "json":
        output.print_json_lines(rows)
    elif output_format == "csv":
        output.print_csv(columns, rows)
    else:
        output.print_rows(title, columns, ([row.get(column) for column in columns] for row in rows))


COMMANDS = [balance, balances, history, report]
