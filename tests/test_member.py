"""The order of work and every rule, worked through the ledger application (in memory)."""

from __future__ import annotations

from datetime import timedelta

from eventsourcing.domain import Snapshot

from ledger.application import LedgerApplication
from ledger.member import Member
from ledger.outcomes import Outcome, Rejection
from ledger.rules import Lot, PurchaseRecord
from schemas import Message
from tests.messages import adjustment, at, enrollment, opening_balance, purchase, redemption, refund


def apply(app: LedgerApplication, *messages: Message) -> list[tuple[Outcome, Rejection | None]]:
    return [
        (d.outcome, d.rejection)
        for d in app.apply_batch([(m, {"file": "t", "line": i}) for i, m in enumerate(messages)])
    ]


def kinds(app: LedgerApplication, member: str = "M1") -> list[str]:
    return [type(e).__name__ for e in app.member_events(member)]


def the(app: LedgerApplication, member: str = "M1") -> Member:
    found = app.member(member)
    assert found is not None
    return found


OK = (Outcome.RECORDED, None)
DUP = (Outcome.DUPLICATE, None)


def rejected(reason: Rejection) -> tuple[Outcome, Rejection]:
    return (Outcome.REJECTED, reason)


# ---- enrollment and duplicates ------------------------------------------------------------------


def test_first_message_of_an_unknown_member_enrolls_them_at_its_time(memory_ledger: LedgerApplication) -> None:
    assert apply(memory_ledger, purchase("12.00", when="2024-02-01")) == [OK]
    member = the(memory_ledger)
    assert (member.enrolled_at, member.balance, member.tier) == (at("2024-02-01"), 12, "member")
    assert kinds(memory_ledger) == ["Enrolled", "PointsEarned"]


def test_enrollment_uses_enrolled_at_and_a_repeat_changes_nothing(memory_ledger: LedgerApplication) -> None:
    first = enrollment(when="2024-02-01", enrolled_at="2023-12-01T00:00:00Z")
    assert apply(memory_ledger, first, enrollment(when="2024-03-01")) == [OK, OK]
    assert the(memory_ledger).enrolled_at == at("2023-12-01")
    assert kinds(memory_ledger) == ["Enrolled", "EnrollmentRepeated"]
    assert apply(memory_ledger, first) == [DUP]


def test_a_redelivered_event_id_changes_nothing(memory_ledger: LedgerApplication) -> None:
    message = purchase("50.00")
    assert apply(memory_ledger, message, message) == [OK, DUP]
    assert apply(memory_ledger, message) == [DUP]
    assert the(memory_ledger).balance == 50
    assert len(memory_ledger.member_events("M1")) == 2


def test_event_ids_are_per_member(memory_ledger: LedgerApplication) -> None:
    assert apply(memory_ledger, purchase("5", event_id="same"), purchase("7", member="M2", event_id="same")) == [OK, OK]


# ---- earning ---------------------------------------------------------------------------------


def test_purchase_awards_floor_of_base_times_the_tier_multiplier(memory_ledger: LedgerApplication) -> None:
    apply(memory_ledger, purchase("999.99"), purchase("1.00"))  # 999 + 1: reaches silver after the second
    assert (the(memory_ledger).balance, the(memory_ledger).tier) == (1000, "silver")
    apply(memory_ledger, purchase("10.99"))  # silver: floor(10 * 1.25) = 12
    earned = [e for e in memory_ledger.member_events("M1") if isinstance(e, Member.PointsEarned)]
    assert [(e.base, e.awarded, str(e.multiplier)) for e in earned] == [(999, 999, "1"), (1, 1, "1"), (10, 12, "1.25")]


def test_multiplier_is_the_tier_before_the_purchase(memory_ledger: LedgerApplication) -> None:
    apply(memory_ledger, purchase("1500.00"))
    earned = next(e for e in memory_ledger.member_events("M1") if isinstance(e, Member.PointsEarned))
    assert (earned.awarded, the(memory_ledger).tier) == (1500, "silver")
    assert kinds(memory_ledger) == ["Enrolled", "PointsEarned", "TierChanged"]


def test_a_reused_transaction_id_is_rejected(memory_ledger: LedgerApplication) -> None:
    assert apply(memory_ledger, purchase("5", txn="T1"), purchase("9", txn="T1")) == [
        OK, rejected(Rejection.DUPLICATE_TRANSACTION)
    ]  # fmt: skip
    assert the(memory_ledger).balance == 5


def test_lots_expire_365_days_after_they_are_earned(memory_ledger: LedgerApplication) -> None:
    apply(memory_ledger, purchase("20", when="2024-01-10"))
    assert the(memory_ledger).lots[0].expires_at == at("2024-01-10") + timedelta(days=365)


# ---- redemption ----------------------------------------------------------------------------------


def test_redemption_takes_soonest_expiring_lots_first(memory_ledger: LedgerApplication) -> None:
    apply(
        memory_ledger,
        purchase("30", when="2024-01-01"),
        purchase("50", when="2024-02-01"),
        redemption(40, when="2024-03-01"),
    )
    member = the(memory_ledger)
    assert member.balance == 40
    assert [(lot.points, lot.remaining) for lot in member.lots] == [(50, 40)]


def test_redemption_beyond_the_balance_is_rejected_and_its_id_stays_free(memory_ledger: LedgerApplication) -> None:
    assert apply(memory_ledger, purchase("30"), redemption(31, rid="R1"), redemption(30, rid="R1")) == [
        OK, rejected(Rejection.INSUFFICIENT_POINTS), OK
    ]  # fmt: skip
    assert apply(memory_ledger, purchase("30"), redemption(10, rid="R1")) == [
        OK,
        rejected(Rejection.DUPLICATE_REDEMPTION),
    ]
    assert the(memory_ledger).balance == 30


def test_a_rejected_message_is_recorded_so_its_redelivery_is_a_duplicate(memory_ledger: LedgerApplication) -> None:
    message = redemption(10)
    assert apply(memory_ledger, message, message) == [rejected(Rejection.INSUFFICIENT_POINTS), DUP]
    assert kinds(memory_ledger) == ["Enrolled", "MessageRejected"]


# ---- refunds ---------------------------------------------------------------------------------------


def test_partial_refunds_claw_back_proportionally_and_sum_to_the_award(memory_ledger: LedgerApplication) -> None:
    apply(memory_ledger, purchase("100.00", txn="T"), purchase("1000.00", txn="BIG"))  # silver after BIG
    apply(memory_ledger, purchase("100.00", txn="S"))  # silver: base 100, awarded 125
    apply(memory_ledger, refund("S", "33.33"), refund("S", "33.33"), refund("S", "33.34"))
    applied = [e for e in memory_ledger.member_events("M1") if isinstance(e, Member.RefundApplied)]
    assert [(e.points_clawed_back, e.credits_clawed_back) for e in applied] == [(41, 33), (42, 33), (42, 34)]
    assert the(memory_ledger).balance == 100 + 1000


def test_refund_checks_unknown_then_duplicate_then_exceeds(memory_ledger: LedgerApplication) -> None:
    apply(memory_ledger, purchase("50", txn="T"))
    assert apply(
        memory_ledger,
        refund("NOPE", "1", rid="F1"),
        refund("T", "10", rid="F1"),
        refund("T", "10", rid="F1"),
        refund("T", "40.01", rid="F2"),
        refund("T", "40.00", rid="F2"),
    ) == [
        rejected(Rejection.UNKNOWN_TRANSACTION), OK, rejected(Rejection.DUPLICATE_REFUND),
        rejected(Rejection.EXCEEDS_PURCHASE), OK,
    ]  # fmt: skip
    assert the(memory_ledger).balance == 0


def test_refund_after_spending_leaves_debt_that_new_points_repay(memory_ledger: LedgerApplication) -> None:
    apply(memory_ledger, purchase("100", txn="T"), redemption(80), refund("T", "100"))
    member = the(memory_ledger)
    assert (member.balance, member.debt, list(member.lots)) == (-80, 80, [])
    apply(memory_ledger, purchase("50"))
    member = the(memory_ledger)
    assert (member.balance, member.debt, list(member.lots)) == (-30, 30, [])
    apply(memory_ledger, adjustment(100))
    member = the(memory_ledger)
    assert (member.balance, member.debt, [lot.remaining for lot in member.lots]) == (70, 0, [70])


def test_refund_of_another_members_purchase_is_unknown(memory_ledger: LedgerApplication) -> None:
    apply(memory_ledger, purchase("10", txn="T", member="M2"))
    assert apply(memory_ledger, refund("T", "10")) == [rejected(Rejection.UNKNOWN_TRANSACTION)]


# ---- adjustments -------------------------------------------------------------------------------------


def test_adjustments_add_a_lot_or_take_points(memory_ledger: LedgerApplication) -> None:
    assert apply(memory_ledger, adjustment(200, aid="A1"), adjustment(-150, aid="A2"), adjustment(-51, aid="A3")) == [
        OK, OK, rejected(Rejection.INSUFFICIENT_POINTS)
    ]  # fmt: skip
    assert apply(memory_ledger, adjustment(-50, aid="A2")) == [rejected(Rejection.DUPLICATE_ADJUSTMENT)]
    assert the(memory_ledger).balance == 50


# ---- ledger time and expiry --------------------------------------------------------------------------


def test_a_late_message_takes_the_members_latest_time(memory_ledger: LedgerApplication) -> None:
    apply(memory_ledger, purchase("10", when="2024-05-01"), purchase("10", when="2024-04-01"))
    events = memory_ledger.member_events("M1")
    assert events[-1].effective_at == at("2024-05-01")
    assert events[-1].provenance["occurred_at"] == at("2024-04-01")


def test_expiry_is_lazy_and_recorded_when_found_never_backdated(memory_ledger: LedgerApplication) -> None:
    apply(memory_ledger, purchase("10", when="2024-01-01"))
    assert the(memory_ledger).balance == 10  # expired in 2025, but nothing has looked yet
    apply(memory_ledger, purchase("5", when="2025-06-01"))
    expired = next(e for e in memory_ledger.member_events("M1") if isinstance(e, Member.LotsExpired))
    assert (expired.points, expired.effective_at) == (10, at("2025-06-01"))
    assert the(memory_ledger).balance == 5


def test_expiry_comes_before_the_message_so_expired_points_cannot_be_spent(memory_ledger: LedgerApplication) -> None:
    assert apply(memory_ledger, purchase("10", when="2024-01-01"), redemption(10, when="2025-01-01")) == [
        OK, rejected(Rejection.INSUFFICIENT_POINTS)
    ]  # fmt: skip


# ---- tiers --------------------------------------------------------------------------------------------


def test_refund_claws_back_credits_but_tier_is_kept_until_retention_ends(memory_ledger: LedgerApplication) -> None:
    apply(memory_ledger, purchase("5000", txn="T", when="2024-01-01"))
    assert the(memory_ledger).tier == "gold"
    apply(memory_ledger, refund("T", "5000", when="2024-02-01"))
    assert the(memory_ledger).tier == "gold"
    apply(memory_ledger, enrollment(when="2025-01-31"))  # 365 days after 2024-02-01 (leap year)
    assert the(memory_ledger).tier == "member"


def test_credits_older_than_the_window_stop_counting(memory_ledger: LedgerApplication) -> None:
    apply(memory_ledger, purchase("1000", when="2024-01-01"), purchase("1", when="2024-12-30"))
    assert the(memory_ledger).tier == "silver"
    apply(memory_ledger, purchase("1", when="2025-12-31"))  # credits are now 1; last qualified 2024-12-30
    assert the(memory_ledger).tier == "member"


# ---- sweep ---------------------------------------------------------------------------------------------


def test_sweep_expires_and_reevaluates_and_is_idempotent(memory_ledger: LedgerApplication) -> None:
    apply(memory_ledger, purchase("1200", when="2024-01-01"), purchase("5", member="M2", when="2024-06-01"))
    apply(memory_ledger, purchase("1200", member="M3", when="2025-03-01"))  # silver, still qualifying at the sweep
    assert memory_ledger.sweep(at("2025-06-01")) == (3, 3)
    assert memory_ledger.sweep(at("2025-06-01")) == (3, 0)
    member = the(memory_ledger)
    assert (member.balance, member.tier, member.last_effective_at) == (0, "member", at("2025-06-01"))
    assert kinds(memory_ledger)[-2:] == ["LotsExpired", "TierChanged"]
    assert kinds(memory_ledger, "M2")[-1] == "LotsExpired"
    renewed = the(memory_ledger, "M3")
    assert (kinds(memory_ledger, "M3")[-1], renewed.tier, renewed.last_qualified_at) == (
        "Swept",
        "silver",
        at("2025-06-01"),
    )
    # After the sweep a message dated earlier takes the sweep's time.
    apply(memory_ledger, purchase("3", when="2025-01-01"))
    assert memory_ledger.member_events("M1")[-1].effective_at == at("2025-06-01")


# ---- opening balances (legacy migration) -----------------------------------------------------------


def test_an_opening_balance_becomes_a_lot_with_the_given_expiry_or_the_programs(
    memory_ledger: LedgerApplication,
) -> None:
    given = opening_balance(500, when="2024-01-01", expires_at="2024-03-01T00:00:00Z", legacy_ref="LEG-1")
    assert apply(memory_ledger, given, opening_balance(300, member="M2", when="2024-01-01")) == [OK, OK]
    assert [(lot.remaining, lot.expires_at) for lot in the(memory_ledger).lots] == [(500, at("2024-03-01"))]
    assert [lot.expires_at for lot in the(memory_ledger, "M2").lots] == [at("2024-01-01") + timedelta(days=365)]
    assert kinds(memory_ledger) == ["Enrolled", "OpeningBalanceApplied"]
    event = memory_ledger.member_events("M1")[-1]
    assert isinstance(event, Member.OpeningBalanceApplied) and event.flow() == ("migrated", 500)
    assert event.legacy_ref == "LEG-1"
    apply(memory_ledger, purchase("1.00", when="2024-03-02"))  # the carried-over lot expired on its own date
    assert the(memory_ledger).balance == 1


def test_a_negative_opening_balance_is_a_debt_that_new_points_repay_first(memory_ledger: LedgerApplication) -> None:
    assert apply(memory_ledger, opening_balance(-40), purchase("100.00")) == [OK, OK]
    member = the(memory_ledger)
    assert (member.balance, member.debt, [lot.remaining for lot in member.lots]) == (60, 0, [60])
    first = memory_ledger.member_events("M1")[1]
    assert isinstance(first, Member.OpeningBalanceApplied) and first.flow() == ("migrated", -40)


def test_an_opening_balance_is_accepted_once_per_member(memory_ledger: LedgerApplication) -> None:
    first = opening_balance(100, oid="legacy-1")
    assert apply(memory_ledger, first, opening_balance(100, oid="legacy-2"), first) == [
        OK, rejected(Rejection.DUPLICATE_OPENING_BALANCE), DUP,
    ]  # fmt: skip
    assert the(memory_ledger).balance == 100


def test_a_higher_tier_carried_over_is_granted_and_kept_through_the_retention_period(
    memory_ledger: LedgerApplication,
) -> None:
    assert apply(memory_ledger, opening_balance(0, tier="gold", when="2024-01-01")) == [OK]
    assert the(memory_ledger).tier == "gold"
    assert kinds(memory_ledger) == ["Enrolled", "OpeningBalanceApplied", "TierChanged"]
    apply(memory_ledger, purchase("1.00", when="2024-12-30"))  # no credits, still within the retention period
    assert the(memory_ledger).tier == "gold"
    apply(memory_ledger, purchase("1.00", when="2025-01-02"))  # retention over: down to what the credits earn
    assert the(memory_ledger).tier == "member"
    assert apply(memory_ledger, opening_balance(0, member="M2", tier="member")) == [OK]  # not above: nothing
    assert kinds(memory_ledger, "M2") == ["Enrolled", "OpeningBalanceApplied"]


def _older_snapshot(current: Snapshot, class_version: int | None) -> Snapshot:
    """`current` (a member with one 12.00 purchase T1, event e1, lot 1) as a snapshot of an older Member
    version: every purchase and every id in the state, lots in a list; version 1 had no opening balances."""
    replaced = {"class_version", "lots", "credit_window"}
    state = {key: value for key, value in current.state.items() if key not in replaced}
    state |= {
        "lots": [Lot(lot.lot_id, lot.points, lot.remaining, lot.expires_at) for lot in current.state["lots"]],
        "purchases": {"T1": PurchaseRecord("T1", 1200, 12, 12, state["last_effective_at"])},
        "event_ids": {"e1"}, "refund_ids": set(), "redemption_ids": set(), "adjustment_ids": set(),
    }  # fmt: skip
    if class_version is None:
        del state["opening_balance_id"]
    else:
        state["class_version"] = class_version
    return Snapshot(
        originator_id=current.originator_id, originator_version=current.originator_version,
        timestamp=current.timestamp, topic=current.topic, state=state,
    )  # fmt: skip


def test_member_snapshots_of_older_versions_are_upcast(memory_ledger: LedgerApplication) -> None:
    """Version 1 had no `opening_balance_id`; version 2 kept every purchase and id. Both load as version 3: the
    lots in spending order, the purchases' credits as the tier window, no ids (the claim index has them)."""
    apply(memory_ledger, purchase("12.00", event_id="e1", txn="T1"))
    current = Snapshot.take(the(memory_ledger))
    assert current.state["class_version"] == 3
    for version in (None, 2):
        member = _older_snapshot(current, version).mutate(None)
        assert isinstance(member, Member)
        assert (member.opening_balance_id, member.balance, member.credit_window.total) == (None, 12, 12)
        assert vars(member) == vars(current.mutate(None))


def test_an_upcast_snapshot_equals_the_replay_when_a_purchase_was_refunded_in_full(
    memory_ledger: LedgerApplication,
) -> None:
    """Replaying keeps a purchase refunded in full in the window at 0 credits; so must the upcast snapshot."""
    apply(memory_ledger, purchase("12.00", event_id="e1", txn="T1"), refund("T1", "12.00"))
    current = Snapshot.take(the(memory_ledger))
    assert [credit.credits for credit in the(memory_ledger).credit_window] == [0]
    older = _older_snapshot(current, 2)
    older.state["purchases"]["T1"] = PurchaseRecord(
        "T1",
        1200,
        12,
        12,
        older.state["last_effective_at"],
        refunded_cents=1200,
        points_clawed_back=12,
        credits_clawed_back=12,
    )
    assert vars(older.mutate(None)) == vars(current.mutate(None))
