"""`balance`, `balances`, `history` and `report …`: answers served from the views, or folded from the log.

By default a query first catches the views up on whatever the log recorded after their positions (no answer
is ever stale), then reads them in one transaction. `--from-log` folds the event log instead, as the ground
truth to compare with. Every JSON answer carries `position`: the last log position it reflects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import click

from ledger.application import LedgerApplication
from points_ledger import output
from points_ledger.context import TIME, Context, format_option, pass_context
from points_ledger.errors import CommandError
from projections import queries, reports, statements
from projections.db import Sql
from projections.figures import figures_as_of
from projections.log import read_log
from projections.runner import Projections

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def from_log_option(command: F) -> F:
    return click.option(
        "--from-log",
        is_flag=True,
        help="Fold the event log instead of reading the views: the ground truth, slower as the log grows.",
    )(command)


@contextmanager
def views(app: LedgerApplication) -> Iterator[tuple[Sql, int]]:
    """The views, caught up, in one read transaction, and the log position they reflect."""
    with Projections(app).reading() as (sql, position):
        yield sql, position


def answer(
    context: Context,
    from_log: bool,
    from_views: Callable[[Sql, LedgerApplication], T],
    from_the_log: Callable[[LedgerApplication, int], T],
) -> tuple[T, int]:
    """The answer and the log position it reflects: from the caught-up views, or folded from the log up to
    its head (`from_the_log` is given that position)."""
    with context.ledger(must_exist=True) as app:
        if from_log:
            head = app.recorder.max_notification_id() or 0
            return from_the_log(app, head), head
        with views(app) as (sql, position):
            return from_views(sql, app), position


@click.command()
@click.argument("member_id")
@click.option("--as-of", "as_of", type=TIME, default=None, help="Balance as recorded up to this time.")
@from_log_option
@format_option
@pass_context
def balance(context: Context, member_id: str, as_of: datetime | None, from_log: bool, output_format: str) -> None:
    """A member's balance, tier and lots with points left (latest, or as of a time)."""

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


@click.command()
@click.option("--as-of", "as_of", type=TIME, default=None, help="Balances as recorded up to this time.")
@from_log_option
@format_option
@pass_context
def balances(context: Context, as_of: datetime | None, from_log: bool, output_format: str) -> None:
    """Every member's balance and tier, by member id: one JSON object per line with --format json."""

    def from_the_log(app: LedgerApplication, head: int) -> list[dict[str, Any]]:
        figures = figures_as_of(read_log(app, stop=head), as_of).members.values()
        return [
            {"member_id": m.member_id, "balance": m.balance, "tier": m.tier}
            for m in sorted(figures, key=lambda member: member.member_id)
        ]

    rows, position = answer(context, from_log, lambda sql, app: list(queries.balances(sql, as_of)), from_the_log)
    if output_format == "json":
        output.print_json_lines({**row, "position": position} for row in rows)
    else:
        output.print_rows(
            f"balances (log position {position})", ["member_id", "balance", "tier"], (list(r.values()) for r in rows)
        )


@click.command()
@click.argument("member_id")
@from_log_option
@format_option
@pass_context
def history(context: Context, member_id: str, from_log: bool, output_format: str) -> None:
    """Every recorded change of a member (the audit trail), with provenance and running balance."""
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


@click.group()
def report() -> None:
    """Finance reports, as recorded up to the times given (run `sweep` first at period ends)."""


@report.command()
@click.option("--as-of", "as_of", type=TIME, required=True, help="Liability at this time.")
@from_log_option
@format_option
@pass_context
def liability(context: Context, as_of: datetime, from_log: bool, output_format: str) -> None:
    """Points liability: outstanding and negative points, valued at the point value, by tier."""
    result, position = answer(
        context, from_log,
        lambda sql, app: queries.liability(sql, as_of, app.program),
        lambda app, head: reports.liability(read_log(app, stop=head), as_of, app.program),
    )  # fmt: skip
    _print_report("points liability", {**result, "position": position}, output_format)


@report.command()
@click.option("--from", "start", type=TIME, required=True, help="Period start (exclusive).")
@click.option("--to", "end", type=TIME, required=True, help="Period end (inclusive).")
@from_log_option
@format_option
@pass_context
def rollforward(context: Context, start: datetime, end: datetime, from_log: bool, output_format: str) -> None:
    """Opening balance, the flows of points in (FROM, TO], and the closing balance."""
    if end < start:
        raise click.BadParameter("--to must not be before --from", param_hint="--to")
    result, position = answer(
        context, from_log,
        lambda sql, app: queries.rollforward(sql, start, end),
        lambda app, head: reports.rollforward(read_log(app, stop=head), start, end),
    )  # fmt: skip
    _print_report("points roll-forward", {**result, "position": position}, output_format)


def _print_report(title: str, result: dict[str, Any], output_format: str) -> None:
    if output_format == "json":
        output.print_json(result)
    else:
        output.print_record(title, result)


COMMANDS = [balance, balances, history, report]
