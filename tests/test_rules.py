"""Unit tests of every pure rule, and of the member state's lots and tier window that they decide on."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from ledger.credit_window import CreditWindow
from ledger.open_lots import OpenLots
from ledger.program import Program
from ledger.rules import (
    Lot,
    PurchaseRecord,
    cents,
    debt_repayment,
    earned_points,
    effective_time,
    evaluate_tier,
    floor_product,
    qualified_tier,
    refund_clawback,
    tier_window_start,
)
from tests.messages import at

P = Program()


def test_effective_time_never_goes_back() -> None:
    assert effective_time(at("2024-01-05"), None) == at("2024-01-05")
    assert effective_time(at("2024-01-05"), at("2024-01-03")) == at("2024-01-05")
    assert effective_time(at("2024-01-01"), at("2024-01-03")) == at("2024-01-03")


@pytest.mark.parametrize(
    ("amount", "multiplier", "expected"),
    [
        ("10.99", "1", (10, 10)),
        ("0.99", "1", (0, 0)),
        ("10.99", "1.25", (10, 12)),
        ("3", "1.5", (3, 4)),
        ("1000.00", "2", (1000, 2000)),
    ],
)
def test_earned_points_floor_base_then_multiplied(amount: str, multiplier: str, expected: tuple[int, int]) -> None:
    assert earned_points(Decimal(amount), Decimal(multiplier), P) == expected


def test_earn_rate_is_a_setting() -> None:
    assert earned_points(Decimal("10.50"), Decimal("1"), Program(earn_rate=Decimal("2"))) == (21, 21)


def test_floor_product_is_exact() -> None:
    assert floor_product(Decimal("0.07"), Decimal("100")) == 7
    assert floor_product(3, Decimal("0.3333")) == 0


def test_cents_refuses_sub_cent_amounts() -> None:
    assert cents(Decimal("12.3")) == 1230
    with pytest.raises(ValueError, match="two decimals"):
        cents(Decimal("1.005"))


def test_expiring_lots_include_the_expiry_instant_skip_empty_lots_and_come_by_lot_id() -> None:
    lots = OpenLots([
        Lot(4, 10, 3, at("2023-12-31")),  # opened later, expiring sooner (an opening balance's own expiry)
        Lot(1, 10, 10, at("2024-01-01")),
        Lot(2, 10, 0, at("2024-01-01")),
        Lot(3, 10, 4, at("2024-01-02")),
    ])  # fmt: skip
    assert lots.points == 17 and len(lots) == 3
    assert lots.expiring(at("2024-01-01")) == [(1, 10), (4, 3)]
    assert lots.expiring(at("2024-01-02")) == [(1, 10), (3, 4), (4, 3)]


def test_take_points_soonest_expiry_then_oldest_lot() -> None:
    lots = OpenLots([Lot(1, 50, 50, at("2025-03-01")), Lot(2, 30, 30, at("2025-01-01"))])
    lots.open(Lot(3, 30, 30, at("2025-01-01")))  # goes before lot 1, after lot 2
    assert lots.take(70) == ([(2, 30), (3, 30), (1, 10)], 0)
    assert lots.take(200) == ([(2, 30), (3, 30), (1, 50)], 90)
    assert lots.take(0) == ([], 0)
    for lot_id, points in lots.take(70)[0]:
        lots.take_from(lot_id, points, "M1")
    assert ([lot.lot_id for lot in lots], lots.points) == ([1], 40)  # emptied lots are closed


def test_debt_repayment_is_capped_by_the_lot() -> None:
    assert debt_repayment(30, 100) == 30
    assert debt_repayment(300, 100) == 100
    assert debt_repayment(0, 100) == 0


def test_refund_clawback_is_proportional_to_cumulative_refunds() -> None:
    purchase = PurchaseRecord("t", 10_000, base=100, awarded=125, effective_at=at("2024-01-01"))
    assert refund_clawback(purchase, 3_333) == (41, 33)  # floor(125 * 0.3333), floor(100 * 0.3333)
    purchase.refunded_cents, purchase.points_clawed_back, purchase.credits_clawed_back = 3_333, 41, 33
    assert refund_clawback(purchase, 6_667) == (84, 67)  # the rest: totals become exactly 125 and 100
    with pytest.raises(ValueError, match="exceeds"):
        refund_clawback(purchase, 6_668)


def test_qualifying_credits_window_is_open_at_the_start() -> None:
    window = CreditWindow()
    window.add("a", at("2023-01-01"), 400)
    window.add("b", at("2023-06-01"), 500)
    window.claw_back("b", 100)
    window.add("c", at("2024-01-01"), 700)
    # credits(t) count (t - 365 days, t]: the purchase exactly 365 days before t no longer counts.
    t = at("2023-01-01") + timedelta(days=365)
    assert window.since(tier_window_start(t, P)) == 400 + 700
    assert window.since(tier_window_start(at("2023-12-31"), P)) == 400 + 400 + 700
    window.forget_through(tier_window_start(t, P))  # a's time is over: it never counts again
    assert ([credit.transaction_id for credit in window], window.total) == (["b", "c"], 1100)
    window.claw_back("a", 400)  # a refund of a purchase no longer counting changes no credits
    assert window.total == 1100


@pytest.mark.parametrize(
    ("credits", "tier"), [(0, "member"), (999, "member"), (1000, "silver"), (4999, "silver"), (5000, "gold"),
                          (15000, "platinum"), (10**9, "platinum")]
)  # fmt: skip
def test_qualified_tier_thresholds(credits: int, tier: str) -> None:
    assert qualified_tier(credits, P) == tier


def test_tier_upgrade_is_immediate() -> None:
    decision = evaluate_tier("member", at("2024-01-01"), 5000, at("2024-02-01"), P)
    assert (decision.tier, decision.last_qualified_at) == ("gold", at("2024-02-01"))


def test_tier_requalifying_refreshes_last_qualified_at() -> None:
    decision = evaluate_tier("gold", at("2024-01-01"), 6000, at("2024-02-01"), P)
    assert (decision.tier, decision.last_qualified_at) == ("gold", at("2024-02-01"))


def test_tier_is_kept_within_the_retention_period() -> None:
    decision = evaluate_tier("gold", at("2024-01-01"), 10, at("2024-12-30"), P)
    assert (decision.tier, decision.last_qualified_at) == ("gold", at("2024-01-01"))


def test_tier_drops_to_the_qualified_tier_after_the_retention_period() -> None:
    when = at("2024-01-01") + timedelta(days=365)
    decision = evaluate_tier("gold", at("2024-01-01"), 1200, when, P)
    assert (decision.tier, decision.last_qualified_at) == ("silver", when)
