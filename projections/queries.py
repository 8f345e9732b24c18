"""Answers served from the views: index lookups and set-based SQL, never a replay of events.

Each function reads in the caller's read transaction (`Projections.reading`), after the views caught up,
and returns the same shapes as the folds over the log (projections.reports, projections.statements), so the
two can be compared field by field.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from ledger.member import FLOW_SIGNS, member_uuid
from ledger.program import Program
from projections import reports
from projections.db import Sql, from_micros, to_micros


def _as_of_rows(columns: str) -> str:
    """Each member's last audit row effective at or before the bound time (`?`)."""
    return (
        f"SELECT {columns} FROM pl_audit a JOIN (SELECT member_key, MAX(version) AS version FROM pl_audit "
        "WHERE effective_at <= ? GROUP BY member_key) last "
        "ON a.member_key = last.member_key AND a.version = last.version"
    )


def statement(sql: Sql, member_id: str, as_of: datetime | None) -> dict[str, Any] | None:
    """`balance`: a member's balance, tier and lots with points left (latest, or as of a time); None if unknown."""
    key = str(member_uuid(member_id))
    if as_of is None:
        member = sql.row("SELECT balance, tier, ledger_time FROM pl_members WHERE member_key = ?", (key,))
        if member is None:
            return None
        lots = sql.rows(
            "SELECT points, remaining, expires_at FROM pl_lots WHERE member_key = ? ORDER BY expires_at, lot_id", (key,)
        )
        when = from_micros(member["ledger_time"])
    else:
        member = sql.row(
            "SELECT balance, tier FROM pl_audit WHERE member_key = ? AND effective_at <= ? "
            "ORDER BY version DESC LIMIT 1",
            (key, to_micros(as_of)),
        )
        if member is None:
            return None
        lots = sql.rows(
            "SELECT MAX(points) AS points, SUM(delta) AS remaining, MAX(expires_at) AS expires_at FROM pl_lot_changes "
            "WHERE member_key = ? AND effective_at <= ? GROUP BY lot_id HAVING SUM(delta) > 0 "
            "ORDER BY MAX(expires_at), lot_id",
            (key, to_micros(as_of)),
        )
        when = as_of
    return {
        "member_id": member_id,
        "as_of": when,
        "balance": member["balance"],
        "tier": member["tier"],
        "lots": [
            {"points": lot["points"], "remaining": int(lot["remaining"]), "expires_at": from_micros(lot["expires_at"])}
            for lot in lots
        ],
    }


def balances(sql: Sql, as_of: datetime | None) -> Iterator[dict[str, Any]]:
    """`balances`: every member's balance and tier, by member id."""
    if as_of is None:
        rows = sql.rows("SELECT member_id, balance, tier FROM pl_members ORDER BY member_id")
    else:
        rows = sql.rows(_as_of_rows("a.member_id, a.balance, a.tier") + " ORDER BY a.member_id", (to_micros(as_of),))
    for row in rows:
        yield {"member_id": row["member_id"], "balance": row["balance"], "tier": row["tier"]}


def tier_totals(sql: Sql, as_of: datetime) -> reports.TierTotals:
    """Per tier at `as_of`: members, outstanding and negative points, and open lots' points by expiry.

    Each member's state at `as_of` is read once (their last audit row by then), and their open lots' points
    summed per expiry window by member; the two meet here, by member, rather than in a second join."""
    at = to_micros(as_of)
    tier_of: dict[str, str] = {}
    totals: reports.TierTotals = {}
    for row in sql.rows(_as_of_rows("a.member_key, a.balance, a.tier"), (at,)):
        tier_of[row["member_key"]] = row["tier"]
        line = totals.setdefault(row["tier"], reports.empty_totals())
        balance = int(row["balance"])
        line["members"] += 1
        line["outstanding_points"] += max(balance, 0)
        line["negative_points"] += -min(balance, 0)
    edges = [to_micros(edge) for edge in reports.expiry_edges(as_of)]
    buckets = ", ".join(
        f"SUM(CASE WHEN expires_at <= ? THEN remaining ELSE 0 END) AS {column}" for column in reports.EXPIRY_COLUMNS[:4]
    )
    for row in sql.rows(
        f"SELECT member_key, {buckets}, SUM(CASE WHEN expires_at > ? THEN remaining ELSE 0 END) AS non_current_points "
        "FROM (SELECT member_key, SUM(delta) AS remaining, MAX(expires_at) AS expires_at FROM pl_lot_changes "
        "WHERE effective_at <= ? GROUP BY member_key, lot_id HAVING SUM(delta) > 0) AS open_lots GROUP BY member_key",
        (*edges, edges[3], at),
    ):
        line = totals[tier_of[row["member_key"]]]
        for column in reports.EXPIRY_COLUMNS:
            line[column] += int(row[column])
    return totals


def liability(sql: Sql, as_of: datetime, program: Program, breakage: reports.Breakage | None = None) -> dict[str, Any]:
    return reports.liability_of(tier_totals(sql, as_of), as_of, program, breakage)


def outstanding_points(sql: Sql, as_of: datetime) -> int:
    """The sum of positive balances at `as_of`."""
    value = sql.scalar(
        f"SELECT SUM(CASE WHEN balance > 0 THEN balance ELSE 0 END) FROM ({_as_of_rows('a.balance')}) AS at_time",
        (to_micros(as_of),),
    )
    return int(value or 0)


def total_balance(sql: Sql, as_of: datetime) -> int:
    """The sum of every member's balance at `as_of`: each balance is the sum of its member's changes, so this is
    one sum over the audit trail (negative balances included)."""
    value = sql.scalar("SELECT SUM(delta) FROM pl_audit WHERE effective_at <= ?", (to_micros(as_of),))
    return int(value or 0)


def flows(sql: Sql, start: datetime, end: datetime) -> dict[str, int]:
    """Points moved per roll-forward flow in (start, end], each as a positive count."""
    rows = sql.rows(
        "SELECT flow, SUM(delta) AS delta FROM pl_audit WHERE effective_at > ? AND effective_at <= ? "
        "AND flow IS NOT NULL GROUP BY flow",
        (to_micros(start), to_micros(end)),
    )
    return {row["flow"]: abs(int(row["delta"])) for row in rows}


def rollforward(sql: Sql, start: datetime, end: datetime) -> dict[str, Any]:
    return rollforwards(sql, [(start, end)])[0]


def rollforwards(sql: Sql, spans: Sequence[tuple[datetime, datetime]]) -> list[dict[str, Any]]:
    """The roll-forward of each of consecutive periods: the opening summed once, each period's flows from an
    index range, each closing carried forward; the last closing is then summed on its own and must agree."""
    for (_, end), (start, _) in itertools.pairwise(spans):
        if end != start:
            raise ValueError("roll-forward periods must follow one another")
    lines = []
    opening = total_balance(sql, spans[0][0])
    for start, end in spans:
        moved = flows(sql, start, end)
        closing = opening + sum(FLOW_SIGNS[flow] * points for flow, points in moved.items())
        lines.append(reports.rollforward_of(start, end, opening, moved, closing))
        opening = closing
    summed = total_balance(sql, spans[-1][1])
    if summed != opening:
        raise ArithmeticError(f"roll-forward does not close: the flows give {opening}, the balances sum to {summed}")
    return lines


def history(sql: Sql, member_id: str) -> list[dict[str, Any]]:
    """`history`: the member's audit rows, oldest first (empty if unknown)."""
    rows = sql.rows(
        "SELECT version, effective_at, occurred_at, recorded_at, kind, delta, balance, tier, event_id, source, "
        "details FROM pl_audit WHERE member_key = ? ORDER BY version",
        (str(member_uuid(member_id)),),
    )
    return [
        {
            "version": row["version"],
            "effective_at": from_micros(row["effective_at"]),
            "recorded_at": from_micros(row["recorded_at"]),
            "event": row["kind"],
            "change": row["delta"],
            "balance": row["balance"],
            "tier": row["tier"],
            "details": json.loads(row["details"]),
            "provenance": {
                "event_id": row["event_id"],
                "occurred_at": None if row["occurred_at"] is None else from_micros(row["occurred_at"]),
                "source": json.loads(row["source"]),
            },
        }
        for row in rows
    ]
