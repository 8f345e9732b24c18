"""Answers served from the views: index lookups and set-based SQL, never a replay of events.

Each function reads in the caller's read transaction (`Projections.reading`), after the views caught up,
and returns the same shapes as the folds over the log (projections.reports, projections.statements), so the
two can be compared field by field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from ledger.events import signed_flow
from ledger.member import member_uuid
from ledger.micros import from_micros, to_micros
from ledger.program import Program
from projections import reports
from projections.db import Sql
from projections.figures import RollforwardFigures
from projections.periods import require_consecutive


def state_at(member_key: str = "?", *, effective_by: bool = True, recorded_by: bool = False) -> str:
    """A query of one member's balance and tier as of a time: its last audit row effective by the bound time
    (`?`, when `effective_by`), of those recorded by a bound log position (`?`, first, when `recorded_by`).
    `member_key` is a bound `?` (first of all) or a column of an enclosing query. The one place a member's
    state at a time is asked of the audit trail; its index (member_key, effective_at, version, ...) answers it
    with one probe."""
    conditions = [f"member_key = {member_key}"]
    if recorded_by:
        conditions.append("position <= ?")
    if effective_by:
        conditions.append("effective_at <= ?")
    return (
        f"SELECT balance, tier FROM pl_audit WHERE {' AND '.join(conditions)} "
        "ORDER BY effective_at DESC, version DESC LIMIT 1"
    )


def _states_at(sql: Sql) -> str:
    """A subquery of each member's state (member_key, member_id, balance, tier) at the bound time (`?`). On
    PostgreSQL one `state_at` probe per member, which costs the number of members, not the length of history;
    SQLite, which has no LATERAL, takes each member's last audit row by then (a member's effective times never
    run backwards), grouped."""
    if sql.dialect == "postgresql":
        return (
            "SELECT m.member_key, m.member_id, at_time.balance, at_time.tier FROM pl_members m "
            f"CROSS JOIN LATERAL ({state_at('m.member_key')}) AS at_time"
        )
    return (
        "SELECT a.member_key, a.member_id, a.balance, a.tier FROM pl_audit a JOIN (SELECT member_key, "
        "MAX(version) AS version FROM pl_audit WHERE effective_at <= ? GROUP BY member_key) last "
        "ON a.member_key = last.member_key AND a.version = last.version"
    )


def statement(sql: Sql, member_id: str, as_of: datetime | None) -> dict[str, Any] | None:
    """`balance`: a member's balance, tier and lots with points left (latest, or as of a time); None if unknown."""
    key = str(member_uuid(member_id))
    if as_of is None:  # one query (a round trip less for the till): the member's row once per lot, or alone
        rows = sql.rows(
            "SELECT m.balance, m.tier, m.ledger_time, l.points, l.remaining, l.expires_at FROM pl_members m "
            "LEFT JOIN pl_lots l ON l.member_key = m.member_key WHERE m.member_key = ? ORDER BY l.expires_at, l.lot_id",
            (key,),
        )
        if not rows:
            return None
        member = rows[0]
        lots = [row for row in rows if row["points"] is not None]
        when = from_micros(member["ledger_time"])
    else:
        member = sql.row(state_at(), (key, to_micros(as_of)))
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
    """`balances`: every member's balance and tier, by member id in code point order (Python's, whatever the
    database's collation: a merge with another sorted side relies on it), streamed (`Sql.stream`)."""
    by_member_id = 'ORDER BY member_id COLLATE "C"' if sql.dialect == "postgresql" else "ORDER BY member_id"
    if as_of is None:
        rows = sql.stream(f"SELECT member_id, balance, tier FROM pl_members {by_member_id}")
    else:
        states = _states_at(sql)
        at = to_micros(as_of)
        rows = sql.stream(f"SELECT member_id, balance, tier FROM ({states}) AS states {by_member_id}", (at,))
    for row in rows:
        yield {"member_id": row["member_id"], "balance": row["balance"], "tier": row["tier"]}


def tier_totals(sql: Sql, as_of: datetime) -> reports.TierTotals:
    """Per tier at `as_of`: members, outstanding and negative points, and open lots' points by expiry.

    One statement: each member's state at `as_of` (found once, then used twice), summed per tier, and every
    lot movement by then summed per (tier, expiry bucket). A lot's movements sum to its points left, never
    below zero, so summing movements by the lot's expiry needs no grouping by lot."""
    at = to_micros(as_of)
    edges = [to_micros(edge) for edge in reports.expiry_edges(as_of)]
    windows = " ".join(f"WHEN c.expires_at <= ? THEN {n}" for n in range(len(edges)))
    bucket = f"CASE {windows} ELSE {len(edges)} END"
    totals: reports.TierTotals = {}
    for row in sql.rows(
        f"WITH states AS ({_states_at(sql)}) "
        "SELECT tier, -1 AS bucket, COUNT(*) AS members, "
        "SUM(CASE WHEN balance > 0 THEN balance ELSE 0 END) AS points, "
        "SUM(CASE WHEN balance < 0 THEN -balance ELSE 0 END) AS negative FROM states GROUP BY tier "
        f"UNION ALL SELECT s.tier, {bucket} AS bucket, 0, SUM(c.delta), 0 FROM pl_lot_changes c "
        "JOIN states s ON s.member_key = c.member_key WHERE c.effective_at <= ? GROUP BY s.tier, 2",
        (at, *edges, at),
    ):
        # `points`: outstanding points for a tier's row (bucket -1), a bucket's open lot points otherwise
        line = totals.setdefault(row["tier"], reports.empty_totals())
        points = int(row["points"] or 0)
        if row["bucket"] < 0:
            line["members"] += int(row["members"])
            line["outstanding_points"] += points
            line["negative_points"] += int(row["negative"])
            continue
        # buckets 0-3 are cumulative windows (30, 60, 90 days, 12 months); bucket 4 is beyond 12 months
        if row["bucket"] == len(edges):
            line["non_current_points"] += points
        for column in reports.EXPIRY_COLUMNS[row["bucket"] : len(edges)]:
            line[column] += points
    return totals


def liability(sql: Sql, as_of: datetime, program: Program, breakage: reports.Breakage | None = None) -> dict[str, Any]:
    return reports.liability_of(tier_totals(sql, as_of), as_of, program, breakage)


def outstanding_points(sql: Sql, as_of: datetime) -> int:
    """The sum of positive balances at `as_of`."""
    value = sql.scalar(
        f"SELECT SUM(CASE WHEN balance > 0 THEN balance ELSE 0 END) FROM ({_states_at(sql)}) AS at_time",
        (to_micros(as_of),),
    )
    return int(value or 0)


def total_balance(sql: Sql, as_of: datetime) -> int:
    """The sum of every member's balance at `as_of`: each balance is the sum of its member's changes, so this is
    one sum over the audit trail (negative balances included)."""
    value = sql.scalar("SELECT SUM(delta) FROM pl_audit WHERE effective_at <= ?", (to_micros(as_of),))
    return int(value or 0)


def flows(sql: Sql, start: datetime, end: datetime) -> dict[str, int]:
    """Points moved per roll-forward flow in (start, end]: a count for each flow of one direction, the signed
    sum for `migrated` (opening balances may be debts)."""
    rows = sql.rows(
        "SELECT flow, SUM(delta) AS delta FROM pl_audit WHERE effective_at > ? AND effective_at <= ? "
        "AND flow IS NOT NULL GROUP BY flow",
        (to_micros(start), to_micros(end)),
    )
    return {row["flow"]: signed_flow(row["flow"], int(row["delta"])) for row in rows}  # signed sums back to points


def rollforward(sql: Sql, start: datetime, end: datetime) -> dict[str, Any]:
    return rollforwards(sql, [(start, end)])[0]


def rollforwards(sql: Sql, spans: Sequence[tuple[datetime, datetime]]) -> list[dict[str, Any]]:
    """The roll-forward of each of consecutive periods (projections.reports.rollforward_lines)."""
    return reports.rollforward_lines(spans, rollforward_figures(sql, spans))


def rollforward_figures(sql: Sql, spans: Sequence[tuple[datetime, datetime]]) -> RollforwardFigures:
    """The sum of balances at the first start, summed once, each period's flows from an index range, and the
    sum of balances at the last end, summed on its own."""
    require_consecutive(spans)
    moved = [flows(sql, start, end) for start, end in spans]
    return RollforwardFigures(total_balance(sql, spans[0][0]), moved, total_balance(sql, spans[-1][1]))


def due_members(sql: Sql, as_of: datetime, base_tier: str) -> list[str]:
    """The members a sweep at `as_of` may change: those with an open lot expiring by then, and those above the
    base tier (a tier is renewed or, after the retention period, lowered). Everyone else would not change.
    Two index range scans (lots by expiry, members by tier), not a scan of every member."""
    rows = sql.rows(
        "SELECT member_id FROM pl_members WHERE tier < ? OR tier > ? UNION "
        "SELECT m.member_id FROM pl_lots l JOIN pl_members m ON m.member_key = l.member_key WHERE l.expires_at <= ?",
        (base_tier, base_tier, to_micros(as_of)),
    )
    return sorted(row["member_id"] for row in rows)


def history_length(sql: Sql, member_id: str) -> int:
    """How many changes the member's history holds (0: unknown); its lines are numbered 1 to this."""
    found = sql.scalar("SELECT max(version) FROM pl_audit WHERE member_key = ?", (str(member_uuid(member_id)),))
    return int(found or 0)


def history(sql: Sql, member_id: str, after: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
    """`history`: the member's audit rows after version `after`, oldest first, at most `limit` (all: None);
    empty if unknown. An index range scan: a page costs the same however long the member's history."""
    limited = "" if limit is None else f" LIMIT {int(limit)}"
    rows = sql.rows(
        "SELECT version, effective_at, occurred_at, recorded_at, kind, delta, balance, tier, event_id, source, "
        f"details FROM pl_audit WHERE member_key = ? AND version > ? ORDER BY version{limited}",
        (str(member_uuid(member_id)), after),
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
