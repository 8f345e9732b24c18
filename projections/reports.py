"""Finance reports: points liability and the roll-forward, as plain dicts ready for output.

The arithmetic lives here once; the figures come either from the views (projections.queries, set-based SQL)
or from a fold over the log (`--from-log`), and both paths end in the same functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ledger.events import FLOW_SIGNS, signed_flow
from ledger.member import Member
from ledger.program import Program
from projections.figures import LedgerFigures, RollforwardFigures, figures_as_of, rollforward_figures
from projections.periods import add_months, require_consecutive

_CENT = Decimal("0.01")
_RATE = Decimal("0.0001")

#: Points of open lots by when they expire, counted from the report's time T: within 30, 60, 90 days
#: (cumulative), within 12 months (current) and later (non-current). A lot whose expiry has passed but was
#: not yet recorded (lazy expiry, before a sweep) counts as expiring within 30 days.
EXPIRY_COLUMNS = ("expiring_30d", "expiring_60d", "expiring_90d", "current_points", "non_current_points")
#: Per tier: members, outstanding and negative points, and the expiry columns.
TOTAL_COLUMNS = ("members", "outstanding_points", "negative_points", *EXPIRY_COLUMNS)
TierTotals = dict[str, dict[str, int]]


def money(value: Decimal) -> str:
    """Money as a decimal string with two places (half-up: how finance rounds)."""
    return str(value.quantize(_CENT, rounding=ROUND_HALF_UP))


def expiry_edges(as_of: datetime) -> tuple[datetime, datetime, datetime, datetime]:
    """The ends of the 30/60/90-day and 12-month expiry windows after `as_of` (inclusive)."""
    return (
        as_of + timedelta(days=30),
        as_of + timedelta(days=60),
        as_of + timedelta(days=90),
        add_months(as_of, 12),
    )


def empty_totals() -> dict[str, int]:
    return dict.fromkeys(TOTAL_COLUMNS, 0)


@dataclass(frozen=True, slots=True)
class Breakage:
    """The share of outstanding points expected never to be redeemed, and how it was arrived at."""

    rate: Decimal
    method: str  # "configured" | "estimated"
    window: tuple[datetime, datetime] | None = None
    expired: int = 0
    redeemed: int = 0

    def describe(self) -> dict[str, Any]:
        if self.window is None:
            return {"method": self.method, "rate": str(self.rate)}
        return {
            "method": self.method, "rate": str(self.rate), "from": self.window[0], "to": self.window[1],
            "expired": self.expired, "redeemed": self.redeemed,
        }  # fmt: skip


def configured_breakage(program: Program) -> Breakage:
    return Breakage(program.breakage_rate, "configured")


def estimated_breakage(flows: dict[str, int], window: tuple[datetime, datetime]) -> Breakage:
    """expired / (expired + redeemed) over the window, 4 places half-up (0 when nothing left either way)."""
    expired, redeemed = flows.get("expired", 0), flows.get("redeemed", 0)
    rate = Decimal(0) if expired + redeemed == 0 else Decimal(expired) / Decimal(expired + redeemed)
    return Breakage(rate.quantize(_RATE, rounding=ROUND_HALF_UP), "estimated", window, expired, redeemed)


def breakage_window(as_of: datetime, days: int) -> tuple[datetime, datetime]:
    return as_of - timedelta(days=days), as_of


# ---- liability ----------------------------------------------------------------------------------


def liability(
    events: Iterable[Member.Event], as_of: datetime, program: Program, breakage: Breakage | None = None
) -> dict[str, Any]:
    """Points owed to members at `as_of`, valued at the program's point value (folded from the log)."""
    return liability_of(tier_totals(figures_as_of(events, as_of), as_of), as_of, program, breakage)


def tier_totals(figures: LedgerFigures, as_of: datetime) -> TierTotals:
    edges = expiry_edges(as_of)
    totals: TierTotals = {}
    for member in figures.members.values():
        line = totals.setdefault(member.tier, empty_totals())
        line["members"] += 1
        line["outstanding_points"] += max(member.balance, 0)
        line["negative_points"] += -min(member.balance, 0)
        for lot in member.lots.values():
            for column, edge in zip(EXPIRY_COLUMNS[:4], edges, strict=True):
                if lot.expires_at <= edge:
                    line[column] += lot.remaining
            if lot.expires_at > edges[3]:
                line["non_current_points"] += lot.remaining
    return totals


def outstanding(figures: LedgerFigures) -> int:
    """Points owed to members: the sum of positive balances."""
    return sum(max(member.balance, 0) for member in figures.members.values())


def points_value(points: int, program: Program) -> str:
    """Points valued at the program's point value, in money (half-up to cents)."""
    return money(Decimal(points) * program.point_value)


def _liability_line(totals: dict[str, int], program: Program, breakage: Breakage) -> dict[str, Any]:
    value = (Decimal(totals["outstanding_points"]) * program.point_value).quantize(_CENT, rounding=ROUND_HALF_UP)
    return {
        "members": totals["members"],
        "outstanding_points": totals["outstanding_points"],
        "negative_points": totals["negative_points"],
        "liability_value": money(value),
        "liability_net": money(value * (1 - breakage.rate)),
        **{column: totals[column] for column in EXPIRY_COLUMNS},
    }


def liability_of(
    totals: TierTotals, as_of: datetime, program: Program, breakage: Breakage | None = None
) -> dict[str, Any]:
    """The liability report from per-tier totals (every tier of the program listed, in its order)."""
    breakage = breakage or configured_breakage(program)
    by_tier = {tier.name: empty_totals() for tier in program.tiers}
    for name, line in totals.items():
        merged = by_tier.setdefault(name, empty_totals())
        for column in TOTAL_COLUMNS:
            merged[column] += line[column]
    total = {column: sum(line[column] for line in by_tier.values()) for column in TOTAL_COLUMNS}
    line = _liability_line(total, program, breakage)
    return {
        "as_of": as_of,
        "members": line["members"],
        "outstanding_points": line["outstanding_points"],
        "negative_points": line["negative_points"],
        "point_value": str(program.point_value),
        "liability_value": line["liability_value"],
        "breakage_rate": str(breakage.rate),
        "liability_net": line["liability_net"],
        **{column: line[column] for column in EXPIRY_COLUMNS},
        "breakage": breakage.describe(),
        "by_tier": {name: _liability_line(tier_line, program, breakage) for name, tier_line in by_tier.items()},
    }


# ---- roll-forward ---------------------------------------------------------------------------------


def rollforward(events: Iterable[Member.Event], start: datetime, end: datetime) -> dict[str, Any]:
    """Opening + issued + migrated + adjusted_in - adjusted_out - redeemed - expired - clawed_back = closing
    (from the log; `migrated` is signed, every other flow a count)."""
    return rollforward_lines([(start, end)], rollforward_figures(events, [(start, end)]))[0]


def net_change(flows: Mapping[str, int]) -> int:
    """What flows of points do to the sum of balances."""
    return sum(signed_flow(flow, points) for flow, points in flows.items())


def rollforward_line(start: datetime, end: datetime, opening: int, flows: Mapping[str, int]) -> dict[str, Any]:
    """The roll-forward line of (start, end]: every flow listed, the closing what the opening and flows give."""
    moved = {flow: flows.get(flow, 0) for flow in FLOW_SIGNS}
    return {"from": start, "to": end, "opening": opening, **moved, "closing": opening + net_change(moved)}


def rollforward_lines(spans: Sequence[tuple[datetime, datetime]], figures: RollforwardFigures) -> list[dict[str, Any]]:
    """The roll-forward of each of consecutive periods, each closing carried to the next opening; refused
    unless the last closing is the sum of balances found on its own."""
    require_consecutive(spans)
    lines = []
    opening = figures.opening
    for (start, end), moved in zip(spans, figures.flows, strict=True):
        lines.append(rollforward_line(start, end, opening, moved))
        opening = lines[-1]["closing"]
    if opening != figures.closing:
        raise ArithmeticError(
            f"roll-forward does not close: the flows give {opening}, the balances sum to {figures.closing}"
        )
    return lines


def rollforward_total(lines: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The roll-forward of consecutive periods taken together: the first opening and every period's flows."""
    moved = {flow: sum(line[flow] for line in lines) for flow in FLOW_SIGNS}
    total = rollforward_line(lines[0]["from"], lines[-1]["to"], lines[0]["opening"], moved)
    if total["closing"] != lines[-1]["closing"]:
        raise ArithmeticError(f"roll-forward does not close: {total['closing']} against {lines[-1]['closing']}")
    return total
