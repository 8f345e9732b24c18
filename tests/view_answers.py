"""Every answer the views serve, and the same answers folded from the log, as plain JSON-ready values."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ledger.application import LedgerApplication
from points_ledger.output import jsonable
from projections import kpis, periods, queries, reports, statements
from projections.db import Sql
from projections.figures import figures_as_of, period_flows
from projections.log import read_log
from projections.runner import Projections


def view_answers(sql: Sql, app: LedgerApplication, members: list[str], times: list[datetime]) -> dict[str, Any]:
    answers: dict[str, Any] = {"balances": list(queries.balances(sql, None))}
    for as_of in times:
        window = reports.breakage_window(as_of, 300)
        answers[f"balances@{as_of}"] = list(queries.balances(sql, as_of))
        answers[f"liability@{as_of}"] = queries.liability(sql, as_of, app.program)
        breakage = reports.estimated_breakage(queries.flows(sql, *window), window)
        answers[f"liability-estimated@{as_of}"] = queries.liability(sql, as_of, app.program, breakage)
        answers[f"rollforward@{as_of}"] = queries.rollforward(sql, times[0], as_of)
        answers[f"outstanding@{as_of}"] = queries.outstanding_points(sql, as_of)
    spans = periods.split(times[0], times[-1], "quarter")
    answers["kpis"] = kpis.kpi_rows(spans, kpis.counts_from_views(sql, spans), app.program)
    for member_id in members:
        answers[f"balance:{member_id}"] = queries.statement(sql, member_id, None)
        answers[f"history:{member_id}"] = queries.history(sql, member_id)
        for as_of in times:
            answers[f"balance:{member_id}@{as_of}"] = queries.statement(sql, member_id, as_of)
    return jsonable(answers)  # type: ignore[no-any-return]


def log_answers(app: LedgerApplication, members: list[str], times: list[datetime]) -> dict[str, Any]:
    def balances(as_of: datetime | None) -> list[dict[str, Any]]:
        figures = figures_as_of(read_log(app), as_of).members.values()
        return [
            {"member_id": m.member_id, "balance": m.balance, "tier": m.tier}
            for m in sorted(figures, key=lambda member: member.member_id)
        ]

    answers: dict[str, Any] = {"balances": balances(None)}
    for as_of in times:
        window = reports.breakage_window(as_of, 300)
        answers[f"balances@{as_of}"] = balances(as_of)
        answers[f"liability@{as_of}"] = reports.liability(read_log(app), as_of, app.program)
        breakage = reports.estimated_breakage(period_flows(read_log(app), *window).flows, window)
        answers[f"liability-estimated@{as_of}"] = reports.liability(read_log(app), as_of, app.program, breakage)
        answers[f"rollforward@{as_of}"] = reports.rollforward(read_log(app), times[0], as_of)
        answers[f"outstanding@{as_of}"] = reports.outstanding(figures_as_of(read_log(app), as_of))
    spans = periods.split(times[0], times[-1], "quarter")
    counts = kpis.counts_from_log(read_log(app), spans)
    answers["kpis"] = kpis.kpi_rows(spans, counts, app.program)
    for member_id in members:
        member = app.member(member_id)
        answers[f"balance:{member_id}"] = None if member is None else statements.statement(member, None)
        answers[f"history:{member_id}"] = list(statements.history(app.member_events(member_id)))
        for as_of in times:
            replayed = statements.replay(app.member_events(member_id), as_of)
            answers[f"balance:{member_id}@{as_of}"] = (
                None if replayed is None else statements.statement(replayed, as_of)
            )
    return jsonable(answers)  # type: ignore[no-any-return]


def caught_up_answers(app: LedgerApplication, members: list[str], times: list[datetime]) -> dict[str, Any]:
    with Projections(app).reading() as (sql, _):
        return view_answers(sql, app, members, times)


def view_tables(app: LedgerApplication) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every view table, sorted (what a rebuild must reproduce exactly)."""
    projections = Projections(app)
    tables = ("pl_members", "pl_lots", "pl_lot_changes", "pl_audit")
    with projections.db.transaction(commit=False) as sql:
        return {table: sorted(_values(row) for row in sql.rows(f"SELECT * FROM {table}")) for table in tables}


def _values(row: Any) -> tuple[Any, ...]:
    """A row's values in column order (sqlite3.Row and psycopg's dict rows alike)."""
    return tuple(row[key] for key in row.keys())  # noqa: SIM118 (iterating a sqlite3.Row gives values, not keys)
