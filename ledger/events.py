"""The member events: what happened to a member, in the past tense, as recorded.

Each event carries the values the Member aggregate decided (ledger.member) and its `apply_to` only applies
them, so replaying history never re-runs a rule. An event also says what it did in the terms the read models
use: its roll-forward flow (`flow`, signed by `FLOW_SIGNS`), its moves of lots and debt (`lot_moves`,
ledger.lot_moves) and the ids it used up (`claims`, ledger.claims).

Stored events name their class by topic, `module:qualname`. These classes were nested in `Member` until they
moved here, so events recorded before are stored as `ledger.member:Member.PointsEarned` and so on:
`FORMER_TOPICS` registers those names for the classes (`register_topic`), so older logs and snapshots read
as before, and `stored_topics` gives every name a class is stored under, for queries that filter by topic.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic, register_topic

from ledger.claims import Claim, Kind
from ledger.credit_window import CreditWindow
from ledger.invariants import LedgerInvariantError
from ledger.lot_moves import NO_LOT_MOVES, LotMoves, opened_lot, taken_from_lots
from ledger.open_lots import OpenLots
from ledger.rules import PurchaseRecord, cents
from ledger.upcasters import no_credit_window_start, untag

if TYPE_CHECKING:
    from ledger.member import Member

#: Sign of each flow of points in the roll-forward.
FLOW_SIGNS: dict[str, int] = {
    "issued": 1,
    #: signed: a legacy balance carried over (negative: a debt carried over)
    "migrated": 1,
    "adjusted_in": 1,
    "adjusted_out": -1,
    "redeemed": -1,
    "expired": -1,
    "clawed_back": -1,
}


def signed_flow(flow: str, points: int) -> int:
    """Points of a roll-forward flow as their change to balances (the one place a flow's sign is applied;
    a sign is its own inverse, so it also turns a signed change back into the flow's points)."""
    return FLOW_SIGNS[flow] * points


class Event(Aggregate.Event):
    """Every member event: when it counts in ledger time, and where it came from.

    Version 2 is the compact stored format (ledger.storage.compact); `untag` reads version 1's."""

    class_version = 2
    upcast_v1_v2 = staticmethod(untag)

    effective_at: datetime
    provenance: dict[str, Any]

    def apply(self, aggregate: Any) -> None:
        member = cast("Member", aggregate)
        member.last_effective_at = self.effective_at
        self.apply_to(member)

    def apply_to(self, member: Member) -> None:
        """Apply the recorded values (subclasses)."""

    def flow(self) -> tuple[str, int] | None:
        """(roll-forward category, points) for events that move the balance."""
        return None

    def lot_moves(self) -> LotMoves:
        """What this event does to the member's lots and debt."""
        return NO_LOT_MOVES

    def claims(self) -> tuple[Claim, ...]:
        """The ids this event uses up for its member (ledger.claims)."""
        return ()

    @property
    def balance_delta(self) -> int:
        flow = self.flow()
        return 0 if flow is None else signed_flow(*flow)


class Outcome(Event):
    """The event recording a message's own effect; claims its event_id.

    Version 3 added `credit_window_start`: the start of the tier window the decision counted credits
    from, before which no purchase counts again (None for earlier events, which forget nothing)."""

    class_version = 3

    last_qualified_at: datetime
    credit_window_start: datetime | None

    upcast_v2_v3 = staticmethod(no_credit_window_start)

    def apply(self, aggregate: Any) -> None:
        member = cast("Member", aggregate)
        member.last_qualified_at = self.last_qualified_at
        if self.credit_window_start is not None:
            member.credit_window.forget_through(self.credit_window_start)
        super().apply(member)

    def claims(self) -> tuple[Claim, ...]:
        return (Claim(Kind.EVENT, self.provenance["event_id"]), *self.business_claims())

    def business_claims(self) -> tuple[Claim, ...]:
        """The business id the outcome uses up, beyond the event id (subclasses)."""
        return ()


class Enrolled(Event, Aggregate.Created):
    """The member joined, by an enrollment message or by their first other message."""

    member_id: str
    enrolled_at: datetime
    tier: str
    by_message: bool

    def apply_to(self, member: Member) -> None:
        member.member_id = self.member_id
        member.enrolled_at = self.enrolled_at
        member.tier = self.tier
        member.last_qualified_at = self.effective_at
        member.lots = OpenLots()
        member.next_lot_id = 1
        member.debt = 0
        member.credit_window = CreditWindow()
        member.opening_balance_id = None

    def claims(self) -> tuple[Claim, ...]:
        return (Claim(Kind.EVENT, self.provenance["event_id"]),) if self.by_message else ()


class EnrollmentRepeated(Outcome):
    """An enrollment of a member who already exists: recorded, changes nothing."""

    enrolled_at: datetime


class PointsEarned(Outcome):
    """A purchase earned `awarded` points in a new lot (repaying debt first)."""

    transaction_id: str
    amount: Decimal
    base: int
    multiplier: Decimal
    awarded: int
    lot_id: int | None
    expires_at: datetime
    debt_repaid: int
    store_id: str | None
    channel: str | None

    def apply_to(self, member: Member) -> None:
        member.credit_window.add(self.transaction_id, self.effective_at, self.base)
        member.move_lots(self.lot_moves())

    def lot_moves(self) -> LotMoves:
        return opened_lot(self.lot_id, self.awarded, self.debt_repaid, self.expires_at)

    def business_claims(self) -> tuple[Claim, ...]:
        return (Claim(Kind.TRANSACTION, self.transaction_id),)

    def purchase(self) -> PurchaseRecord:
        """The purchase as recorded, before any refund."""
        return PurchaseRecord(self.transaction_id, cents(self.amount), self.base, self.awarded, self.effective_at)

    def flow(self) -> tuple[str, int] | None:
        return ("issued", self.awarded)


class RefundApplied(Outcome):
    """A refund clawed back points (from lots, the rest as debt) and credits."""

    refund_id: str
    transaction_id: str
    amount: Decimal
    points_clawed_back: int
    credits_clawed_back: int
    consumed: list[tuple[int, int]]
    debt_incurred: int

    def apply_to(self, member: Member) -> None:
        member.credit_window.claw_back(self.transaction_id, self.credits_clawed_back)
        member.move_lots(self.lot_moves())

    def lot_moves(self) -> LotMoves:
        return taken_from_lots(self.consumed, self.debt_incurred)

    def business_claims(self) -> tuple[Claim, ...]:
        return (Claim(Kind.REFUND, self.refund_id, purchase=self.transaction_id),)

    def refunded(self, purchase: PurchaseRecord) -> PurchaseRecord:
        """`purchase` after this refund (a new record; `purchase` is left as it was)."""
        if purchase.transaction_id != self.transaction_id:
            raise LedgerInvariantError(f"refund {self.refund_id} is of {self.transaction_id}, not of "
                                       f"{purchase.transaction_id}")  # fmt: skip
        return dataclasses.replace(
            purchase,
            refunded_cents=purchase.refunded_cents + cents(self.amount),
            points_clawed_back=purchase.points_clawed_back + self.points_clawed_back,
            credits_clawed_back=purchase.credits_clawed_back + self.credits_clawed_back,
        )

    def flow(self) -> tuple[str, int] | None:
        return ("clawed_back", self.points_clawed_back)


class PointsRedeemed(Outcome):
    """Points spent on a reward, taken from lots soonest-expiry first.

    Version 2 split `reward` (free text) into `reward_id` (a catalog id, for version-2 redemptions) and
    `reward_name`; a version-1 event is read with its text as the name and no id. Version 3 is the
    compact stored format (ledger.storage.compact); version 4 is every outcome's version 3
    (`credit_window_start`)."""

    class_version = 4
    upcast_v2_v3 = staticmethod(untag)
    upcast_v3_v4 = staticmethod(no_credit_window_start)

    redemption_id: str
    points: int
    reward_id: str | None
    reward_name: str | None
    consumed: list[tuple[int, int]]

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["reward_name"] = state.pop("reward")
        state["reward_id"] = None

    def apply_to(self, member: Member) -> None:
        member.move_lots(self.lot_moves())

    def lot_moves(self) -> LotMoves:
        return taken_from_lots(self.consumed)

    def business_claims(self) -> tuple[Claim, ...]:
        return (Claim(Kind.REDEMPTION, self.redemption_id),)

    def flow(self) -> tuple[str, int] | None:
        return ("redeemed", self.points)


class PointsAdjusted(Outcome):
    """An operator's correction: a new lot (points > 0) or points taken (points < 0)."""

    adjustment_id: str
    points: int
    reason: str
    operator: str
    lot_id: int | None
    expires_at: datetime | None
    debt_repaid: int
    consumed: list[tuple[int, int]]

    def apply_to(self, member: Member) -> None:
        member.move_lots(self.lot_moves())

    def business_claims(self) -> tuple[Claim, ...]:
        return (Claim(Kind.ADJUSTMENT, self.adjustment_id),)

    def lot_moves(self) -> LotMoves:
        if self.points <= 0:
            return taken_from_lots(self.consumed)
        if self.expires_at is None:
            raise LedgerInvariantError("a positive adjustment must carry its lot's expiry")
        return opened_lot(self.lot_id, self.points, self.debt_repaid, self.expires_at)

    def flow(self) -> tuple[str, int] | None:
        if self.points > 0:
            return ("adjusted_in", self.points)
        return ("adjusted_out", -self.points)


class OpeningBalanceApplied(Outcome):
    """A legacy balance carried over: a lot (repaying debt first), or points taken from the member's lots
    with the rest as debt (for a new member, all of it); `tier` as given."""

    opening_balance_id: str
    points: int
    tier: str | None
    legacy_ref: str | None
    lot_id: int | None
    expires_at: datetime | None
    debt_repaid: int
    consumed: list[tuple[int, int]]
    debt_incurred: int

    def apply_to(self, member: Member) -> None:
        member.opening_balance_id = self.opening_balance_id
        member.move_lots(self.lot_moves())

    def lot_moves(self) -> LotMoves:
        if self.points > 0:
            if self.expires_at is None:
                raise LedgerInvariantError("a positive opening balance must carry its lot's expiry")
            return opened_lot(self.lot_id, self.points, self.debt_repaid, self.expires_at)
        return taken_from_lots(self.consumed, self.debt_incurred)

    def flow(self) -> tuple[str, int] | None:
        return ("migrated", self.points) if self.points else None


class MessageRejected(Outcome):
    """A valid message the rules refused; its business id stays unused."""

    message_type: str
    business_id: str | None
    reason: str
    detail: str


class LotsExpired(Event):
    """Lots whose expiry had passed, found at `effective_at` (never backdated)."""

    expired: list[tuple[int, int]]
    points: int

    def apply_to(self, member: Member) -> None:
        member.move_lots(self.lot_moves())

    def lot_moves(self) -> LotMoves:
        return taken_from_lots(self.expired)

    def flow(self) -> tuple[str, int] | None:
        return ("expired", self.points)


class TierChanged(Event):
    """The member moved up, or (after the retention period) down, a tier."""

    from_tier: str
    to_tier: str
    credits: int

    def apply_to(self, member: Member) -> None:
        member.tier = self.to_tier
        member.last_qualified_at = self.effective_at


class Swept(Event):
    """A sweep renewed the member's tier at `effective_at` (still qualifying: last_qualified_at moves on)."""

    as_of: datetime
    last_qualified_at: datetime

    def apply_to(self, member: Member) -> None:
        member.last_qualified_at = self.last_qualified_at


#: Every member event class, by the name it has here and had as `Member.<name>`.
EVENT_CLASSES: tuple[type[Event], ...] = (
    Event,
    Outcome,
    Enrolled,
    EnrollmentRepeated,
    PointsEarned,
    RefundApplied,
    PointsRedeemed,
    PointsAdjusted,
    OpeningBalanceApplied,
    MessageRejected,
    LotsExpired,
    TierChanged,
    Swept,
)
#: The topic each class was stored under while nested in `Member` (in ledger/member.py).
FORMER_TOPICS: dict[type[Event], str] = {
    event_class: f"ledger.member:Member.{event_class.__name__}" for event_class in EVENT_CLASSES
}
for _event_class, _former in FORMER_TOPICS.items():
    register_topic(_former, _event_class)


def stored_topics(event_class: type[Event]) -> tuple[str, str]:
    """The topics events of `event_class` are stored under: today's, and the one recorded before the move."""
    return get_topic(event_class), FORMER_TOPICS[event_class]
