"""The Member aggregate: one member's points, lots, purchases and tier.

Command methods decide with the pure rules in `ledger.rules` and record the
results in past-tense events; each event's `apply_to` only applies recorded
values, so replaying history never re-runs a rule (and a changed program never
rewrites the past).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from ledger.claims import Claim, Kind, Recall
from ledger.compact import untag
from ledger.credit_window import Credit, CreditWindow
from ledger.invariants import LedgerInvariantError
from ledger.open_lots import OpenLots
from ledger.outcomes import DUPLICATE, RECORDED, Decision, Outcome, Rejection
from ledger.program import Program
from ledger.rules import (
    AWARD_MAX,
    Lot,
    PurchaseRecord,
    TierDecision,
    beyond_limits,
    cents,
    debt_repayment,
    earned_points,
    effective_time,
    evaluate_tier,
    in_tier_window,
    lot_expiry,
    refund_clawback,
    tier_window_start,
)
from schemas import Adjustment, Enrollment, Message, OpeningBalance, Purchase, Redemption, Refund

#: Fixed namespace so a member id always maps to the same aggregate id.
MEMBER_NAMESPACE = UUID("6f1d3c2a-8b4e-5f60-9a7b-2c3d4e5f6a7b")

#: Where a message came from: {"file": ..., "line": ...} or {"topic", "partition", "offset"}.
Source = Mapping[str, str | int]

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


#: Member ids whose aggregate id is kept at hand: every batch asks for each of its members' (a SHA-1 each).
MEMBER_UUIDS_CACHED = 100_000


@functools.lru_cache(maxsize=MEMBER_UUIDS_CACHED)
def member_uuid(member_id: str) -> UUID:
    return uuid5(MEMBER_NAMESPACE, member_id)


def message_provenance(message: Message, source: Source) -> dict[str, Any]:
    """What every event recorded for a message keeps of it."""
    return {"event_id": message.event_id, "occurred_at": message.occurred_at, "source": dict(source)}


def sweep_provenance(as_of: datetime) -> dict[str, Any]:
    return {"event_id": None, "occurred_at": None, "source": {"sweep_as_of": as_of.isoformat()}}


@dataclass(frozen=True, slots=True)
class LotMoves:
    """What an event does to a member's lots and debt: the one description both the aggregate and the
    read models apply. `opened` may have nothing remaining when its points all went to repay debt."""

    opened: Lot | None = None
    taken: tuple[tuple[int, int], ...] = ()
    debt_delta: int = 0


NO_LOT_MOVES = LotMoves()


def no_credit_window_start(state: dict[str, Any]) -> None:
    """Upcaster of an outcome recorded before outcomes named their credit window's start: it forgets nothing."""
    state["credit_window_start"] = None


def opened_lot(lot_id: int | None, points: int, debt_repaid: int, expires_at: datetime) -> LotMoves:
    """A new lot of `points`, of which `debt_repaid` went to repay debt first (no lot without a lot_id)."""
    if lot_id is None:
        return NO_LOT_MOVES
    return LotMoves(Lot(lot_id, points, points - debt_repaid, expires_at), debt_delta=-debt_repaid)


def taken_from_lots(taken: list[tuple[int, int]], debt_incurred: int = 0) -> LotMoves:
    return LotMoves(taken=tuple((lot_id, points) for lot_id, points in taken), debt_delta=debt_incurred)


def move_lots_by_id(lots: dict[int, Lot], moves: LotMoves, owner: str) -> list[tuple[Lot, int]]:
    """Apply `moves` to open lots keyed by id, in place: an opened lot with points is added, an emptied one
    removed. Returns each lot touched with its change in points (the only place lot moves are applied)."""
    touched: list[tuple[Lot, int]] = []
    opened = moves.opened
    if opened is not None and opened.remaining > 0:
        lot = lots[opened.lot_id] = Lot(opened.lot_id, opened.points, opened.remaining, opened.expires_at)
        touched.append((lot, lot.remaining))
    for lot_id, points in moves.taken:
        taken = lots.get(lot_id)
        if taken is None or taken.remaining < points:
            raise LedgerInvariantError(f"member {owner}: lot {lot_id} cannot give {points} points")
        taken.remaining -= points
        touched.append((taken, -points))
        if taken.remaining == 0:
            del lots[lot_id]
    return touched


@dataclass(frozen=True, slots=True)
class _Effect:
    """Step 5 decided but not yet recorded: the outcome event and its effect on credits."""

    event_class: type[Member.Event]
    fields: dict[str, Any]
    credit_delta: int = 0
    rejection: Rejection | None = None
    #: A tier the message grants at once if it is above the one the rules give (an opening balance's).
    granted_tier: str | None = None


_TRIGGER_FIELDS: dict[type[Any], frozenset[str]] = {}


def _fields_of(event_class: type[Any]) -> frozenset[str]:
    """The fields an event needs from its trigger (originator id, version and timestamp are set for it)."""
    fields = _TRIGGER_FIELDS.get(event_class)
    if fields is None:
        names = {field.name for field in dataclasses.fields(event_class)}
        fields = _TRIGGER_FIELDS[event_class] = frozenset(names - {"originator_id", "originator_version", "timestamp"})
    return fields


class Member(Aggregate):
    """A loyalty member's ledger.

    Its state is what deciding the next message needs and nothing that grows with its history: the open
    lots, the credits that may still count for a tier, the debt. The ids its history used (event ids,
    transactions, refunds, ...) and its purchases are asked of a `Recall` (ledger.claims) instead.

    Version 2 added `opening_balance_id`; version 3 keeps lots in spending order (`OpenLots`) and the tier
    window's credits (`CreditWindow`) instead of every purchase and every id. Older snapshots are upcast."""

    class_version = 3

    member_id: str
    enrolled_at: datetime
    last_effective_at: datetime
    tier: str
    last_qualified_at: datetime
    lots: OpenLots
    next_lot_id: int
    debt: int
    credit_window: CreditWindow
    opening_balance_id: str | None

    def __init__(self) -> None:
        """State is set by `Enrolled.apply_to`, so snapshots and replays share one path."""

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot taken before opening balances existed: the member had none."""
        state["opening_balance_id"] = None

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        """A snapshot holding every purchase and id: its lots in spending order, its purchases' credits as the
        window (the next message forgets those that no longer count), its ids left to the claim index."""
        state["lots"] = OpenLots(state["lots"])
        purchases: dict[str, PurchaseRecord] = state.pop("purchases")
        window = state["credit_window"] = CreditWindow()
        for purchase in sorted(purchases.values(), key=lambda purchase: purchase.effective_at):
            if purchase.base > 0:  # what replaying its events keeps: a purchase refunded in full stays, at 0
                window.restore(Credit(purchase.transaction_id, purchase.effective_at, purchase.credits))
        for ids in ("event_ids", "refund_ids", "redemption_ids", "adjustment_ids"):
            del state[ids]

    def state_entries(self) -> int:
        """How many entries the state holds beyond its fixed fields (what a snapshot's size grows with)."""
        return len(self.lots) + len(self.credit_window)

    # ---- events ---------------------------------------------------------------------------

    class Event(Aggregate.Event):
        """Every member event: when it counts in ledger time, and where it came from.

        Version 2 is the compact stored format (ledger.compact); `untag` reads version 1's."""

        class_version = 2
        upcast_v1_v2 = staticmethod(untag)

        effective_at: datetime
        provenance: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            member = cast(Member, aggregate)
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
            member = cast(Member, aggregate)
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
        compact stored format (ledger.compact); version 4 is every outcome's version 3 (`credit_window_start`)."""

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

    def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None:
        """What the library's `trigger_event` does for our own event classes, without its generic checks,
        keyword copying and dataclass `__init__` (measured: about a tenth of deciding a message). Every
        field is still required: a missing one raises here, as the constructor would."""
        missing = _fields_of(event_class).difference(kwargs)
        if missing:
            raise TypeError(f"{event_class.__name__} needs {', '.join(sorted(missing))}")
        event = object.__new__(event_class)
        event.__dict__.update(
            kwargs, originator_id=self.id, originator_version=self.version + 1, timestamp=event_class.create_timestamp()
        )
        event.apply(self)
        self.version = event.originator_version
        self.modified_on = event.timestamp
        self._pending_events.append(event)

    # ---- state helpers used by events -------------------------------------------------------

    @property
    def balance(self) -> int:
        return self.lots.points - self.debt

    def move_lots(self, moves: LotMoves) -> None:
        """Apply `moves` to the open lots: the same moves `move_lots_by_id` applies to the views' lots."""
        self.debt += moves.debt_delta
        opened = moves.opened
        if opened is not None:
            self.next_lot_id = opened.lot_id + 1
            if opened.remaining > 0:
                self.lots.open(Lot(opened.lot_id, opened.points, opened.remaining, opened.expires_at))
        for lot_id, points in moves.taken:
            self.lots.take_from(lot_id, points, self.member_id)

    def pending_count(self) -> int:
        """How many events are waiting to be recorded (see `pending_since`)."""
        return len(self._pending_events)

    def pending_since(self, count: int) -> list[Member.Event]:
        """The events triggered since `pending_count()` was `count`."""
        return cast(list[Member.Event], self._pending_events[count:])

    # ---- commands ---------------------------------------------------------------------------

    @classmethod
    def start(cls, message: Message, source: Source, program: Program, ledger_time: datetime | None = None) -> Member:
        """Enroll an unknown member: by their enrollment message, or automatically at t.

        `ledger_time` is the ledger's own time (the last sweep's): nothing is effective before it."""
        by_message = isinstance(message, Enrollment)
        enrolled_at = message.occurred_at
        if isinstance(message, Enrollment) and message.enrolled_at is not None:
            enrolled_at = message.enrolled_at
        return cls._create(
            cls.Enrolled,
            id=member_uuid(message.member_id),
            member_id=message.member_id,
            enrolled_at=enrolled_at,
            tier=program.base_tier,
            by_message=by_message,
            effective_at=effective_time(message.occurred_at, ledger_time),
            provenance=message_provenance(message, source),
        )

    def handle(
        self, message: Message, source: Source, program: Program, recall: Recall, ledger_time: datetime | None = None
    ) -> Decision:
        """Steps 1 and 3-6 of the order of work (step 2, enrolling, is `start`); nothing is effective before
        `ledger_time`, the ledger's own time (the last sweep's). `recall` answers what the member's history
        used: ids and purchases."""
        if recall.claimed(Kind.EVENT, message.event_id):
            return DUPLICATE
        at = effective_time(effective_time(message.occurred_at, ledger_time), self.last_effective_at)
        provenance = message_provenance(message, source)
        before = self._review(at, provenance, program)
        effect = self._decide(message, at, program, recall)
        after = evaluate_tier(before.tier, before.last_qualified_at, before.credits + effect.credit_delta, at, program)
        granted = effect.granted_tier
        if granted is not None and program.tier_rank(granted) > program.tier_rank(after.tier):
            after = TierDecision(granted, at, after.credits)  # qualified at t: the retention period protects it
        self.trigger_event(
            effect.event_class,
            effective_at=at,
            provenance=provenance,
            last_qualified_at=after.last_qualified_at,
            credit_window_start=tier_window_start(at, program),
            **effect.fields,
        )
        self._record_tier(before.tier, after, at, provenance)
        if effect.rejection is not None:
            return Decision(Outcome.REJECTED, effect.rejection)
        return RECORDED

    def sweep(self, as_of: datetime, program: Program) -> bool:
        """Expire and re-evaluate at max(as_of, ledger time); False (and nothing recorded) if nothing changed.

        What changed is recorded by `LotsExpired` and `TierChanged`; a `Swept` event records a renewal of a
        tier above the base one (last_qualified_at moved to t, the tier kept). Moving ledger time alone is
        not a change: the ledger's own time (see `ledger.ledger_time`) does that for every member at once.
        Nor is renewing the base tier, which no evaluation can take away."""
        at = effective_time(as_of, self.last_effective_at)
        provenance = sweep_provenance(as_of)
        version = self.version
        decision = self._review(at, provenance, program)
        if decision.last_qualified_at != self.last_qualified_at and self.tier != program.base_tier:
            renewal = {"as_of": as_of, "last_qualified_at": decision.last_qualified_at}
            self.trigger_event(self.Swept, effective_at=at, provenance=provenance, **renewal)
        return self.version != version

    # ---- the steps --------------------------------------------------------------------------

    def _review(self, at: datetime, provenance: dict[str, Any], program: Program) -> TierDecision:
        """Steps 3 and 4: lazy expiry, then tier evaluation, both at `at`."""
        expired = self.lots.expiring(at)
        if expired:
            points = sum(points for _, points in expired)
            self.trigger_event(self.LotsExpired, effective_at=at, provenance=provenance, expired=expired, points=points)
        credits = self.credit_window.since(tier_window_start(at, program))
        decision = evaluate_tier(self.tier, self.last_qualified_at, credits, at, program)
        self._record_tier(self.tier, decision, at, provenance)
        return decision

    def _record_tier(self, current: str, decision: TierDecision, at: datetime, provenance: dict[str, Any]) -> None:
        if decision.changed_from(current):
            self.trigger_event(
                self.TierChanged,
                effective_at=at,
                provenance=provenance,
                from_tier=current,
                to_tier=decision.tier,
                credits=decision.credits,
            )

    def _decide(self, message: Message, at: datetime, program: Program, recall: Recall) -> _Effect:
        """Step 5: what the message does, or why it is rejected; records nothing."""
        if isinstance(message, Purchase):
            return self._decide_purchase(message, at, program, recall)
        if isinstance(message, Refund):
            return self._decide_refund(message, at, program, recall)
        if isinstance(message, Redemption):
            return self._decide_redemption(message, recall)
        if isinstance(message, Adjustment):
            return self._decide_adjustment(message, at, program, recall)
        if isinstance(message, OpeningBalance):
            return self._decide_opening_balance(message, at, program)
        return _Effect(self.EnrollmentRepeated, {"enrolled_at": message.enrolled_at or message.occurred_at})

    def _reject(self, message: Message, business_id: str | None, rejection: Rejection, detail: str) -> _Effect:
        fields = {"message_type": message.type, "business_id": business_id, "reason": rejection.value, "detail": detail}
        return _Effect(self.MessageRejected, fields, rejection=rejection)

    def _reject_beyond_limit(self, message: Message, business_id: str, points: int) -> _Effect:
        return self._reject(
            message, business_id, Rejection.LIMIT_EXCEEDED,
            f"{points} points on a balance of {self.balance} would pass the ledger's limit",
        )  # fmt: skip

    def _new_lot(self, points: int, at: datetime, program: Program) -> dict[str, Any]:
        return {
            "lot_id": self.next_lot_id if points > 0 else None,
            "expires_at": lot_expiry(at, program),
            "debt_repaid": debt_repayment(self.debt, points),
        }

    def _decide_purchase(self, message: Purchase, at: datetime, program: Program, recall: Recall) -> _Effect:
        if recall.claimed(Kind.TRANSACTION, message.transaction_id):
            return self._reject(
                message, message.transaction_id, Rejection.DUPLICATE_TRANSACTION,
                f"transaction {message.transaction_id} was already recorded",
            )  # fmt: skip
        multiplier = program.multiplier(self.tier)
        base, awarded = earned_points(message.amount, multiplier, program)
        if awarded > AWARD_MAX or self._would_pass_limit(awarded):
            return self._reject(
                message, message.transaction_id, Rejection.LIMIT_EXCEEDED,
                f"{awarded} points would be awarded (at most {AWARD_MAX} per purchase) on a balance of {self.balance}",
            )  # fmt: skip
        fields = {
            "transaction_id": message.transaction_id,
            "amount": message.amount,
            "base": base,
            "multiplier": multiplier,
            "awarded": awarded,
            "store_id": message.store_id,
            "channel": message.channel,
            **self._new_lot(awarded, at, program),
        }
        return _Effect(self.PointsEarned, fields, credit_delta=base)

    def _decide_refund(self, message: Refund, at: datetime, program: Program, recall: Recall) -> _Effect:
        purchase = recall.purchase(message.transaction_id)
        if purchase is None:
            return self._reject(
                message, message.refund_id, Rejection.UNKNOWN_TRANSACTION,
                f"no purchase {message.transaction_id} for this member",
            )  # fmt: skip
        if recall.claimed(Kind.REFUND, message.refund_id):
            return self._reject(
                message, message.refund_id, Rejection.DUPLICATE_REFUND,
                f"refund {message.refund_id} was already recorded",
            )  # fmt: skip
        refund_cents = cents(message.amount)
        if purchase.refunded_cents + refund_cents > purchase.amount_cents:
            return self._reject(
                message, message.refund_id, Rejection.EXCEEDS_PURCHASE,
                f"refunds would total {(purchase.refunded_cents + refund_cents) / 100:.2f}"
                f" of a {purchase.amount_cents / 100:.2f} purchase",
            )  # fmt: skip
        points, credits = refund_clawback(purchase, refund_cents)
        if beyond_limits(self.balance - points):
            return self._reject(
                message, message.refund_id, Rejection.LIMIT_EXCEEDED,
                f"clawing back {points} points would leave a debt beyond the ledger's limit",
            )  # fmt: skip
        consumed, shortfall = self.lots.take(points)
        fields = {
            "refund_id": message.refund_id,
            "transaction_id": message.transaction_id,
            "amount": message.amount,
            "points_clawed_back": points,
            "credits_clawed_back": credits,
            "consumed": consumed,
            "debt_incurred": shortfall,
        }
        in_window = in_tier_window(purchase.effective_at, at, program)
        return _Effect(self.RefundApplied, fields, credit_delta=-credits if in_window else 0)

    def _decide_redemption(self, message: Redemption, recall: Recall) -> _Effect:
        if recall.claimed(Kind.REDEMPTION, message.redemption_id):
            return self._reject(
                message, message.redemption_id, Rejection.DUPLICATE_REDEMPTION,
                f"redemption {message.redemption_id} was already recorded",
            )  # fmt: skip
        if message.points > self.balance:
            return self._reject(
                message, message.redemption_id, Rejection.INSUFFICIENT_POINTS,
                f"{message.points} points asked, balance {self.balance}",
            )  # fmt: skip
        consumed = self._take_exactly(message.points)
        fields = {
            "redemption_id": message.redemption_id,
            "points": message.points,
            "reward_id": message.reward_id,
            "reward_name": message.reward_name,
            "consumed": consumed,
        }
        return _Effect(self.PointsRedeemed, fields)

    def _decide_adjustment(self, message: Adjustment, at: datetime, program: Program, recall: Recall) -> _Effect:
        if recall.claimed(Kind.ADJUSTMENT, message.adjustment_id):
            return self._reject(
                message, message.adjustment_id, Rejection.DUPLICATE_ADJUSTMENT,
                f"adjustment {message.adjustment_id} was already recorded",
            )  # fmt: skip
        fields: dict[str, Any] = {
            "adjustment_id": message.adjustment_id,
            "points": message.points,
            "reason": message.reason,
            "operator": message.operator,
        }
        if message.points > 0 and self._would_pass_limit(message.points):
            return self._reject_beyond_limit(message, message.adjustment_id, message.points)
        if message.points > 0:
            return _Effect(
                self.PointsAdjusted, {**fields, **self._new_lot(message.points, at, program), "consumed": []}
            )
        if -message.points > self.balance:
            return self._reject(
                message, message.adjustment_id, Rejection.INSUFFICIENT_POINTS,
                f"{-message.points} points to remove, balance {self.balance}",
            )  # fmt: skip
        consumed = self._take_exactly(-message.points)
        return _Effect(
            self.PointsAdjusted, {**fields, "lot_id": None, "expires_at": None, "debt_repaid": 0, "consumed": consumed}
        )

    def _decide_opening_balance(self, message: OpeningBalance, at: datetime, program: Program) -> _Effect:
        if self.opening_balance_id is not None:
            return self._reject(
                message, message.opening_balance_id, Rejection.DUPLICATE_OPENING_BALANCE,
                f"member already has opening balance {self.opening_balance_id}",
            )  # fmt: skip
        if beyond_limits(self.balance + message.points):
            return self._reject_beyond_limit(message, message.opening_balance_id, message.points)
        fields: dict[str, Any] = {
            "opening_balance_id": message.opening_balance_id,
            "points": message.points,
            "tier": message.tier,
            "legacy_ref": message.legacy_ref,
            "lot_id": None,
            "expires_at": None,
            "debt_repaid": 0,
            "consumed": [],
            "debt_incurred": 0,
        }
        if message.points < 0:  # like a clawback: lots first, so debt only ever stands without lots
            fields["consumed"], fields["debt_incurred"] = self.lots.take(-message.points)
        if message.points > 0:
            fields |= self._new_lot(message.points, at, program)
            fields["expires_at"] = message.expires_at or fields["expires_at"]
        return _Effect(self.OpeningBalanceApplied, fields, granted_tier=message.tier)

    def _would_pass_limit(self, points: int) -> bool:
        """Would `points` more take the balance beyond the limit?"""
        return beyond_limits(self.balance + points)

    def _take_exactly(self, points: int) -> list[tuple[int, int]]:
        consumed, shortfall = self.lots.take(points)
        if shortfall:
            raise LedgerInvariantError(f"member {self.member_id}: balance covers {points} but lots do not")
        return consumed


def claiming_event_classes() -> list[type[Member.Event]]:
    """The event classes whose events may claim ids (`Member.Event.claims`): enrolments and every outcome."""
    outcomes: list[type[Member.Event]] = []
    pending: list[type[Member.Event]] = [Member.Outcome]
    while pending:
        event_class = pending.pop()
        outcomes.append(event_class)
        pending.extend(event_class.__subclasses__())
    return [Member.Enrolled, *(event_class for event_class in outcomes if event_class is not Member.Outcome)]
