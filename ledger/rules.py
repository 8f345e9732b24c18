"""The program's rules as pure functions: no I/O, no clock, no mutation.

The Member aggregate calls these to decide, then records what they computed in
its events, so replaying history applies results and never re-runs a rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow

from ledger.program import Program

#: Decimal precision for rule arithmetic; inexact results raise instead of rounding silently.
_PRECISION = 100
#: The context rule arithmetic runs in: exact or an error. Its flags are never read, only its traps matter.
_EXACT = Context(prec=_PRECISION, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])
#: Most points one purchase may award (the most any other message may move, too).
AWARD_MAX = 1_000_000_000
#: Largest balance (and debt) a member may reach: a trillion points. Sums over millions of members
#: then still fit the 64-bit integers SQL engines add with (SQLite raises on overflow).
BALANCE_MAX = 1_000_000_000_000


@dataclass(slots=True)
class Lot:
    """Points earned together, spent oldest-expiry first, expiring together."""

    lot_id: int
    points: int
    remaining: int
    expires_at: datetime


@dataclass(slots=True)
class PurchaseRecord:
    """What a purchase earned and what refunds have taken back since."""

    transaction_id: str
    amount_cents: int
    base: int
    awarded: int
    effective_at: datetime
    refunded_cents: int = 0
    points_clawed_back: int = 0
    credits_clawed_back: int = 0

    @property
    def credits(self) -> int:
        """Qualifying credits this purchase still contributes."""
        return self.base - self.credits_clawed_back


@dataclass(frozen=True, slots=True)
class TierDecision:
    """The outcome of one tier evaluation."""

    tier: str
    last_qualified_at: datetime
    credits: int

    def changed_from(self, tier: str) -> bool:
        return self.tier != tier


def cents(amount: Decimal) -> int:
    """Money with at most two decimals as an exact count of cents."""
    scaled = amount * 100
    if scaled != scaled.to_integral_value():
        raise ValueError(f"amount {amount} has more than two decimals")
    return int(scaled)


def floor_product(value: Decimal | int, factor: Decimal) -> int:
    """floor(value * factor), computed exactly (a product that needs more digits than _PRECISION raises
    Inexact). One shared context rather than a local one per call: measured, a third of the call's time."""
    product = _EXACT.multiply(Decimal(value), factor)
    return int(product.to_integral_value(rounding=ROUND_FLOOR, context=_EXACT))


def effective_time(occurred_at: datetime, last_effective_at: datetime | None) -> datetime:
    """Ledger time never runs backwards for a member: late messages take the latest time."""
    if last_effective_at is None or occurred_at > last_effective_at:
        return occurred_at
    return last_effective_at


def earned_points(amount: Decimal, multiplier: Decimal, program: Program) -> tuple[int, int]:
    """(base, awarded): base = floor(amount * earn_rate); awarded = floor(base * multiplier)."""
    base = floor_product(amount, program.earn_rate)
    return base, floor_product(base, multiplier)


def beyond_limits(balance_after: int) -> bool:
    """Would this balance (or debt, when negative) leave the range the ledger keeps?"""
    return not -BALANCE_MAX <= balance_after <= BALANCE_MAX


def lot_expiry(at: datetime, program: Program) -> datetime:
    return at + timedelta(days=program.points_validity_days)


def debt_repayment(debt: int, lot_points: int) -> int:
    """New points repay outstanding debt first."""
    return min(debt, lot_points)


def refund_clawback(purchase: PurchaseRecord, refund_cents: int) -> tuple[int, int]:
    """(points, credits) to claw back so that the totals stay proportional to R / A.

    R is the cumulative refunded amount after this refund and A the purchase
    amount; taking the difference of floors means a purchase refunded in full,
    in any number of parts, gives back exactly what it awarded.
    """
    refunded_after = purchase.refunded_cents + refund_cents
    if refunded_after > purchase.amount_cents:
        raise ValueError("refund exceeds the purchase")
    points = purchase.awarded * refunded_after // purchase.amount_cents - purchase.points_clawed_back
    credits = purchase.base * refunded_after // purchase.amount_cents - purchase.credits_clawed_back
    return points, credits


def tier_window_start(at: datetime, program: Program) -> datetime:
    """credits(at) count purchases in (tier_window_start, at]."""
    return at - timedelta(days=program.tier_window_days)


def in_tier_window(effective_at: datetime, at: datetime, program: Program) -> bool:
    """Whether a purchase at `effective_at` counts towards credits(at)."""
    return tier_window_start(at, program) < effective_at <= at


def qualified_tier(credits: int, program: Program) -> str:
    """The highest tier whose threshold the credits reach."""
    reached = program.base_tier
    for tier in program.tiers:
        if tier.threshold <= credits:
            reached = tier.name
    return reached


def evaluate_tier(
    current: str, last_qualified_at: datetime, credits: int, at: datetime, program: Program
) -> TierDecision:
    """Upgrade at once, keep while qualifying, downgrade only after the retention period."""
    qualified = qualified_tier(credits, program)
    current_rank, qualified_rank = program.tier_rank(current), program.tier_rank(qualified)
    if qualified_rank >= current_rank:
        return TierDecision(qualified, at, credits)
    if at >= last_qualified_at + timedelta(days=program.tier_retention_days):
        return TierDecision(qualified, at, credits)
    return TierDecision(current, last_qualified_at, credits)
