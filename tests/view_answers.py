"""Every answer the views serve, and the same answers folded from the log, as plain JSON-ready values."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ledger.application import LedgerApplication
from points_ledger.output import jsonable
from projections import answers
from projections.db import Sql
from projections.periods import ReportPeriods
from projections.runner import Projections
from projections.sources import LogSource, ReportSource, ViewSource


def report_answers(source: ReportSource, members: list[str], times: list[datetime]) -> dict[str, Any]:
    """Every report (projections.answers) from one source, at each time and for each member."""
    found: dict[str, Any] = {"balances": list(answers.balances(source))}
    for as_of in times:
        found[f"balances@{as_of}"] = list(answers.balances(source, as_of))
        found[f"liability@{as_of}"] = answers.liability(source, as_of)
        found[f"liability-estimated@{as_of}"] = answers.liability(source, as_of, "estimated", 300)
        found[f"rollforward@{as_of}"] = answers.rollforward(source, ReportPeriods.of(times[0], as_of, None))
    quarters = ReportPeriods.of(times[0], times[-1], "quarter")
    found["rollforward-by-quarter"] = answers.rollforward(source, quarters)
    found["kpis"] = answers.kpis(source, quarters)
    found["liability-at-quarter-ends"] = answers.liability_at_period_ends(source, quarters)
    for member_id in members:
        found[f"balance:{member_id}"] = answers.balance(source, member_id)
        found[f"history:{member_id}"] = answers.history(source, member_id)
        for as_of in times:
            found[f"balance:{member_id}@{as_of}"] = answers.balance(source, member_id, as_of)
    return jsonable(found)  # type: ignore[no-any-return]


def view_answers(
    sql: Sql, position: int, app: LedgerApplication, members: list[str], times: list[datetime]
) -> dict[str, Any]:
    return report_answers(ViewSource(sql, position, app.program), members, times)


def log_answers(app: LedgerApplication, members: list[str], times: list[datetime]) -> dict[str, Any]:
    return report_answers(LogSource(app, app.recorder.max_notification_id() or 0), members, times)


def caught_up_answers(app: LedgerApplication, members: list[str], times: list[datetime]) -> dict[str, Any]:
    with Projections(app).reading() as (sql, position):
        return view_answers(sql, position, app, members, times)


def view_tables(app: LedgerApplication) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every view table, sorted (what a rebuild must reproduce exactly)."""
    projections = Projections(app)
    tables = ("pl_members", "pl_lots", "pl_lot_changes", "pl_audit")
    with projections.db.transaction(commit=False) as sql:
        return {table: sorted(_values(row) for row in sql.rows(f"SELECT * FROM {table}")) for table in tables}


def _values(row: Any) -> tuple[Any, ...]:
    """A row's values in column order (sqlite3.Row and psycopg's dict rows alike)."""
    return tuple(row[key] for key in row.keys())  # noqa: SIM118 (iterating a sqlite3.Row gives values, not keys)
