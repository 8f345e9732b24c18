"""`balance`, `balances`, `history` and `report …`: answers served from the views, or folded from the log.

By default a query first catches the views up on whatever the log recorded after their positions (no answer
is ever stale), then reads them in one transaction. `--from-log` folds the event log instead, as the ground
truth to compare with. Every JSON answer carries `position`: the last log position it reflects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from points_ledger import output
from points_ledger.context import TIME, Context, format_option, pass_context
from points_ledger.errors import CommandError
from points_ledger.files import binary_output, check_target, force_option
from projections import periods
from projections.defaults import BREAKAGE_WINDOW_DAYS

if TYPE_CHECKING:
    from ledger.application import LedgerApplication
    from projections.db import Sql
    from projections.periods import Granularity

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


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
def views(app: LedgerApplication) -> Iterator[tuple[Sql, int]]:
    """The views, caught up, in one read transaction, and the log position they reflect."""
    from projections.runner import Projections

    with Projections(app).reading() as (sql, position):
        yield sql, position


@contextmanager
def answering(
    context: Context,
    from_log: bool,
    from_views: Callable[[Sql, LedgerApplication], T],
    from_the_log: Callable[[LedgerApplication, int], T],
) -> Iterator[tuple[T, int]]:
    """The answer and the log position it reflects: from the caught-up views, or folded from the log up to
    its head (`from_the_log` is given that position). The ledger (and the views' read transaction) stay open
    for the context, so an answer may be an iterator read as it is printed."""
    with context.ledger(must_exist=True) as app:
        if from_log:
            head = app.recorder.max_notification_id() or 0
            yield from_the_log(app, head), head
            return
        with views(app) as (sql, position):
            yield from_views(sql, app), position


def answer(
    context: Context,
    from_log: bool,
    from_views: Callable[[Sql, LedgerApplication], T],
    from_the_log: Callable[[LedgerApplication, int], T],
) -> tuple[T, int]:
    """The answer, whole, and the log position it reflects (see `answering`)."""
    with answering(context, from_log, from_views, from_the_log) as found:
        return found


@click.command()
@click.argument("member_id")
@click.option("--as-of", "as_of", type=TIME, default=None, help="Balance as recorded up to this time.")
@from_log_option
@format_option
@pass_context
def balance(context: Context, member_id: str, as_of: datetime | None, from_log: bool, output_format: str) -> None:
    """A member's balance, tier and lots with points left (latest, or as of a time)."""
    from projections import queries, statements

    def from_the_log(app: LedgerApplication, head: int) -> dict[str, Any] | None:
        member = app.member(member_id) if as_of is None else statements.replay(app.member_events(member_id), as_of)
        return None if member is None else statements.statement(member, as_of)

    result, position = answer(
        context, from_log, lambda sql, app: queries.statement(sql, member_id, as_of), from_the_log
    )
    if result is None:
        raise CommandError(f"no member {member_id!r}" + (f" as of {as_of.isoformat()}" if as_of else ""))
    result["position"] = position
    if output_format == "json":
        output.print_json(result)
        return
    output.print_record(f"member {member_id}", {k: v for k, v in result.items() if k != "lots"})
    output.print_rows(
        "lots", ["points", "remaining", "expires_at"],
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
    from projections import queries
    from projections.figures import figures_as_of
    from projections.log import read_log

    def from_the_log(app: LedgerApplication, head: int) -> Iterable[dict[str, Any]]:
        figures = figures_as_of(read_log(app, stop=head), as_of).members.values()
        return (
            {"member_id": m.member_id, "balance": m.balance, "tier": m.tier}
            for m in sorted(figures, key=lambda member: member.member_id)
        )

    with answering(context, from_log, lambda sql, app: queries.balances(sql, as_of), from_the_log) as found:
        rows, position = found
        if output_format == "json":
            output.print_json_lines({**row, "position": position} for row in rows)
        elif output_format == "csv":
            columns = ("member_id", "balance", "tier", "position")
            output.print_csv(columns, ({**row, "position": position} for row in rows))
        else:
            title = f"balances (log position {position})"
            output.print_rows_as_they_come(title, BALANCE_COLUMNS, (list(row.values()) for row in rows))


@click.command()
@click.argument("member_id")
@from_log_option
@format_option
@pass_context
def history(context: Context, member_id: str, from_log: bool, output_format: str) -> None:
    """Every recorded change of a member (the audit trail), with provenance and running balance."""
    from projections import queries, statements

    rows, position = answer(
        context, from_log,
        lambda sql, app: queries.history(sql, member_id),
        lambda app, head: list(statements.history(app.member_events(member_id))),
    )  # fmt: skip
    if not rows:
        raise CommandError(f"no member {member_id!r}")
    if output_format == "json":
        output.print_json_lines({**row, "position": position} for row in rows)
        return
    output.print_rows(
        f"history of {member_id} (log position {position})",
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


def by_option(command: F) -> F:
    return click.option(
        "--by",
        "granularity",
        type=click.Choice(["month", "quarter"]),
        default=None,
        help="A row per calendar month or quarter (UTC) in (FROM, TO], then a total row.",
    )(command)


def period_options(command: F) -> F:
    command = click.option("--to", "end", type=TIME, required=True, help="Range end (inclusive).")(command)
    return click.option("--from", "start", type=TIME, required=True, help="Range start (exclusive).")(command)


def checked_periods(start: datetime, end: datetime, granularity: Granularity | None) -> list[tuple[datetime, datetime]]:
    if end < start:
        raise click.BadParameter("--to must not be before --from", param_hint="--to")
    try:
        return periods.split(start, end, granularity)
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
    breakage_method: str,
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
    from projections import queries, reports
    from projections.figures import period_flows
    from projections.log import read_log

    if chart_path is not None:
        if start is None or end is None:
            raise click.UsageError("--chart needs --from and --to")
        check_target(chart_path, force)
        _liability_chart(context, chart_path, (start, end), from_log, output_format, force=force)
        return
    if as_of is None:
        raise click.UsageError("give --as-of (or --chart with --from and --to)")
    window = reports.breakage_window(as_of, breakage_window_days)
    estimated = breakage_method == "estimated"

    def from_views(sql: Sql, app: LedgerApplication) -> dict[str, Any]:
        breakage = reports.estimated_breakage(queries.flows(sql, *window), window) if estimated else None
        return queries.liability(sql, as_of, app.program, breakage)

    def from_the_log(app: LedgerApplication, head: int) -> dict[str, Any]:
        breakage = None
        if estimated:
            breakage = reports.estimated_breakage(period_flows(read_log(app, stop=head), *window).flows, window)
        return reports.liability(read_log(app, stop=head), as_of, app.program, breakage)

    result, position = answer(context, from_log, from_views, from_the_log)
    result["position"] = position
    if output_format == "csv":
        lines = [{"tier": name, **line} for name, line in result["by_tier"].items()]
        lines.append({"tier": "total", **{key: value for key, value in result.items() if key != "by_tier"}})
        common = {"as_of": as_of, "breakage_rate": result["breakage_rate"], "position": position}
        columns = (
            "as_of", "tier", "members", "outstanding_points", "negative_points", "liability_value", "liability_net",
            *reports.EXPIRY_COLUMNS, "breakage_rate", "position",
        )  # fmt: skip
        output.print_csv(columns, ({**line, **common} for line in lines))
    else:
        _print_report("points liability", result, output_format)


def _liability_chart(
    context: Context, path: Path, span: tuple[datetime, datetime], from_log: bool, output_format: str, *, force: bool
) -> None:
    # matplotlib takes about 0.45 s to import, a third of every command's start-up: only --chart pays it.
    from points_ledger.chart import draw_liability_chart
    from projections import queries, reports
    from projections.figures import figures_as_of
    from projections.log import read_log

    start, end = span
    month_ends = [period_end for _, period_end in checked_periods(start, end, "month")]

    def from_the_log(app: LedgerApplication, head: int) -> list[int]:
        return [reports.outstanding(figures_as_of(read_log(app, stop=head), moment)) for moment in month_ends]

    outstanding, position = answer(
        context, from_log, lambda sql, app: [queries.outstanding_points(sql, moment) for moment in month_ends],
        from_the_log,
    )  # fmt: skip
    program = context.program()
    values = [reports.points_value(points, program) for points in outstanding]
    rows = [
        {"as_of": moment, "outstanding_points": points, "liability_value": value, "position": position}
        for moment, points, value in zip(month_ends, outstanding, values, strict=True)
    ]
    title = f"points liability, month ends {start.date().isoformat()} to {end.date().isoformat()}"
    drawn = [
        (moment, points, Decimal(value)) for moment, points, value in zip(month_ends, outstanding, values, strict=True)
    ]
    with binary_output(path, force=force) as file:
        draw_liability_chart(file, drawn, program.currency, title)
    _print_rows("liability by month end", ["as_of", "outstanding_points", "liability_value", "position"], rows,
                output_format)  # fmt: skip


@report.command()
@period_options
@by_option
@from_log_option
@report_format_option
@pass_context
def rollforward(  # noqa: PLR0917 (one parameter per option, as click passes them)
    context: Context, start: datetime, end: datetime, granularity: Granularity | None, from_log: bool,
    output_format: str,
) -> None:  # fmt: skip
    """Opening balance, the flows of points in (FROM, TO], and the closing balance; with --by, a row per month
    or quarter and a total row, each satisfying the identity exactly."""
    from ledger.events import FLOW_SIGNS
    from projections import queries, reports
    from projections.log import read_log

    columns = ("period", "from", "to", "opening", *FLOW_SIGNS, "closing", "position")
    spans = checked_periods(start, end, granularity)
    wanted = [*spans, (start, end)] if granularity else spans

    def from_views(sql: Sql, app: LedgerApplication) -> list[dict[str, Any]]:
        lines = queries.rollforwards(sql, spans)
        return [*lines, reports.rollforward_total(lines)] if granularity else lines

    def from_the_log(app: LedgerApplication, head: int) -> list[dict[str, Any]]:
        return [reports.rollforward(read_log(app, stop=head), a, b) for a, b in wanted]

    lines, position = answer(context, from_log, from_views, from_the_log)
    if granularity is None:
        result = {**lines[0], "position": position}
        if output_format == "csv":
            output.print_csv(columns, [{"period": "range", **result}])
        else:
            _print_report("points roll-forward", result, output_format)
        return
    rows = _labelled(lines, spans, granularity, position)
    _print_rows("points roll-forward", columns, rows, output_format)


@report.command("kpis")
@period_options
@by_option
@from_log_option
@report_format_option
@pass_context
def kpis_command(  # noqa: PLR0917 (one parameter per option, as click passes them)
    context: Context, start: datetime, end: datetime, granularity: Granularity | None, from_log: bool,
    output_format: str,
) -> None:  # fmt: skip
    """Program KPIs per period in (FROM, TO]: new and active members, points issued, redeemed and expired,
    the redemption rate, tier upgrades and downgrades, and rejected messages by reason.

    With --format json, one object per period and, on the last line, one for the whole range."""
    from ledger.outcomes import Rejection
    from projections import kpis
    from projections.log import read_log

    # A column per rejection reason in CSV; one total in the table (the JSON keeps the reasons as an object).
    csv_columns = (
        "period", "from", "to", *kpis.KPI_COLUMNS[:-1], *(f"rejected_{reason.value}" for reason in Rejection),
        "position",
    )  # fmt: skip
    table_columns = ("period", *kpis.KPI_COLUMNS)
    spans = checked_periods(start, end, granularity)
    wanted = [*spans, (start, end)] if granularity else spans

    def from_views(sql: Sql, app: LedgerApplication) -> list[dict[str, Any]]:
        return kpis.kpi_rows(wanted, kpis.counts_from_views(sql, wanted), app.program)

    def from_the_log(app: LedgerApplication, head: int) -> list[dict[str, Any]]:
        return kpis.kpi_rows(wanted, kpis.counts_from_log(read_log(app, stop=head), wanted), app.program)

    lines, position = answer(context, from_log, from_views, from_the_log)
    rows = _labelled(lines, spans, granularity, position)
    if output_format == "csv":
        output.print_csv(csv_columns, ({**row, **_rejected_columns(row["rejected"])} for row in rows))
    elif output_format == "table":
        table = [{**row, "rejected": sum(row["rejected"].values())} for row in rows]
        _print_rows(f"program KPIs (log position {position})", table_columns, table, output_format)
    else:
        _print_rows("program KPIs", table_columns, rows, output_format)


def _rejected_columns(rejected: dict[str, int]) -> dict[str, int]:
    from ledger.outcomes import Rejection

    return {f"rejected_{reason.value}": rejected.get(reason.value, 0) for reason in Rejection}


def _labelled(
    lines: list[dict[str, Any]], spans: list[tuple[datetime, datetime]], granularity: Granularity | None,
    position: int,
) -> list[dict[str, Any]]:  # fmt: skip
    """Each period's line named (2025-01, 2025-Q1), then the whole range's as `total` when there are periods."""
    names = [periods.label(a, granularity) for a, _ in spans]
    if granularity is not None:
        names.append("total")
    return [{"period": name, **line, "position": position} for name, line in zip(names, lines, strict=True)]


def _print_rows(title: str, columns: Sequence[str], rows: list[dict[str, Any]], output_format: str) -> None:
    if output_format == "json":
        output.print_json_lines(rows)
    elif output_format == "csv":
        output.print_csv(columns, rows)
    else:
        output.print_rows(title, columns, ([row.get(column) for column in columns] for row in rows))


def _print_report(title: str, result: dict[str, Any], output_format: str) -> None:
    if output_format == "json":
        output.print_json(result)
    else:
        output.print_record(title, result)


COMMANDS = [balance, balances, history, report]
