"""Finance reports: points liability and the roll-forward, as plain dicts ready for output."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ledger.member import Member
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


def liability(events: Iterable[Member.Event], as_of: datetime, program: Program) -> dict[str, Any]:
    """Points owed to members at `as_of`, valued at the program's point value."""
    figures = figures_as_of(events, as_of)
    return liability_of(figures, as_of, program)


def liability_of(figures: LedgerFigures, as_of: datetime, program: Program) -> dict[str, Any]:
    by_tier = {tier.name: [0, 0, 0] for tier in program.tiers}
    for member in figures.members.values():
        line = by_tier.setdefault(member.tier, [0, 0, 0])
        line[0] += 1
        line[1] += max(member.balance, 0)
        line[2] += -min(member.balance, 0)
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
    """Opening + issued + adjusted_in - adjusted_out - redeemed - expired - clawed_back = closing."""
    period = period_flows(events, start, end)
    opening = sum(member.balance for member in period.opening.members.values())
    closing = sum(member.balance for member in period.closing.members.values())
    moved = period.flows
    derived = (
        opening + moved["issued"] + moved["adjusted_in"] - moved["adjusted_out"]
        - moved["redeemed"] - moved["expired"] - moved["clawed_back"]
    )  # fmt: skip
    if derived != closing:
        raise ArithmeticError(f"roll-forward does not close: opening and flows give {derived}, closing is {closing}")
    return {"from": start, "to": end, "opening": opening, **moved, "closing": closing}
