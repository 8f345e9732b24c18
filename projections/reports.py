"""Finance reports: points liability and the roll-forward, as plain dicts ready for output."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ledger.member import FLOW_SIGNS, Member
from ledger.program import Program
from projections.figures import LedgerFigures, figures_as_of, period_flows

_CENT = Decimal("0.01")


def money(value: Decimal) -> str:
    """Money as a decimal string with two places (half-up: how finance rounds)."""
    return str(value.quantize(_CENT, rounding=ROUND_HALF_UP))


def _liability_line(members: int, outstanding: int, negative: int, program: Program) -> dict[str, Any]:
    value = (Decimal(outstanding) * program.point_value).quantize(_CENT, rounding=ROUND_HALF_UP)
    return {
        "members": members,
        "outstanding_points": outstanding,
        "negative_points": negative,
        "liability_value": money(value),
        "liability_net": money(value * (1 - program.breakage_rate)),
    }


#: Per tier: [members, outstanding points, negative points].
TierTotals = dict[str, list[int]]


def liability(events: Iterable[Member.Event], as_of: datetime, program: Program) -> dict[str, Any]:
    """Points owed to members at `as_of`, valued at the program's point value (folded from the log)."""
    return liability_of(tier_totals(figures_as_of(events, as_of)), as_of, program)


def tier_totals(figures: LedgerFigures) -> TierTotals:
    totals: TierTotals = {}
    for member in figures.members.values():
        line = totals.setdefault(member.tier, [0, 0, 0])
        line[0] += 1
        line[1] += max(member.balance, 0)
        line[2] += -min(member.balance, 0)
    return totals


def liability_of(totals: TierTotals, as_of: datetime, program: Program) -> dict[str, Any]:
    """The liability report from per-tier totals (every tier of the program listed, in its order)."""
    by_tier = {tier.name: [0, 0, 0] for tier in program.tiers}
    for name, line in totals.items():
        by_tier[name] = [a + b for a, b in zip(by_tier.get(name, [0, 0, 0]), line, strict=True)]
    total = _liability_line(
        sum(line[0] for line in by_tier.values()),
        sum(line[1] for line in by_tier.values()),
        sum(line[2] for line in by_tier.values()),
        program,
    )
    return {
        "as_of": as_of,
        "members": total["members"],
        "outstanding_points": total["outstanding_points"],
        "negative_points": total["negative_points"],
        "point_value": str(program.point_value),
        "liability_value": total["liability_value"],
        "breakage_rate": str(program.breakage_rate),
        "liability_net": total["liability_net"],
        "by_tier": {name: _liability_line(line[0], line[1], line[2], program) for name, line in by_tier.items()},
    }


def rollforward(events: Iterable[Member.Event], start: datetime, end: datetime) -> dict[str, Any]:
    """Opening + issued + adjusted_in - adjusted_out - redeemed - expired - clawed_back = closing (from the log)."""
    period = period_flows(events, start, end)
    opening = sum(member.balance for member in period.opening.members.values())
    closing = sum(member.balance for member in period.closing.members.values())
    return rollforward_of(start, end, opening, period.flows, closing)


def rollforward_of(start: datetime, end: datetime, opening: int, flows: dict[str, int], closing: int) -> dict[str, Any]:
    """The roll-forward line; refuses one that does not close."""
    moved = {flow: flows.get(flow, 0) for flow in FLOW_SIGNS}
    derived = opening + sum(FLOW_SIGNS[flow] * points for flow, points in moved.items())
    if derived != closing:
        raise ArithmeticError(f"roll-forward does not close: opening and flows give {derived}, closing is {closing}")
    return {"from": start, "to": end, "opening": opening, **moved, "closing": closing}
