"""What a batch's deciding recalls of its members' histories: the store's claim index, read once per batch,
under what the batch itself and the writes still in flight have claimed since.

Deciding batch k+1 overlaps writing batch k (ledger.pipeline), so the store cannot yet answer for batch k:
each write keeps the `Notes` of its events until it has committed, and a member's recall consults the
batch's own notes first, then the in-flight ones (newest first), then the store. Everything is keyed by
member id and kind code (plain strings): deciding asks a few questions per message, and each must be cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ledger.invariants import LedgerInvariantError
from ledger.member import Member
from ledger.rules import PurchaseRecord

#: (kind code, id)
ClaimKey = tuple[str, str]


@dataclass(slots=True)
class MemberNotes:
    """What one member's events not (yet) in the store claimed, and the purchases they changed."""

    claims: set[ClaimKey] = field(default_factory=set)
    purchases: dict[str, PurchaseRecord] = field(default_factory=dict)


class Notes:
    """The ids claimed and the purchases changed by events the store may not have yet, by member id."""

    __slots__ = ("members",)

    def __init__(self) -> None:
        self.members: dict[str, MemberNotes] = {}

    def note(self, member_id: str, events: Iterable[Member.Event], recall: MemberRecall) -> None:
        """Take in a member's new events; `recall` gives each refunded purchase as it stood before them."""
        notes = self.members.get(member_id)
        if notes is None:
            notes = self.members[member_id] = MemberNotes()
        for event in events:
            for claim in event.claims():
                notes.claims.add((claim.kind, claim.key))
            if isinstance(event, Member.PointsEarned):
                notes.purchases[event.transaction_id] = event.purchase()
            elif isinstance(event, Member.RefundApplied):
                before = recall.purchase(event.transaction_id)
                if before is None:
                    raise LedgerInvariantError(f"refund {event.refund_id} recorded without its purchase")
                notes.purchases[event.transaction_id] = event.refunded(before)


@dataclass(frozen=True, slots=True)
class Stored:
    """The store's answers for one batch: the ids found claimed and the purchases asked for, by member id."""

    claimed: dict[str, set[ClaimKey]]
    purchases: dict[str, dict[str, PurchaseRecord]]


def stored_purchases(events: Iterable[tuple[str, Member.Event]]) -> dict[str, dict[str, PurchaseRecord]]:
    """Each purchase folded from its stored events (member id, event): the purchase, then its refunds in order."""
    purchases: dict[str, dict[str, PurchaseRecord]] = {}
    for member_id, event in events:
        of_member = purchases.setdefault(member_id, {})
        if isinstance(event, Member.PointsEarned):
            of_member[event.transaction_id] = event.purchase()
        elif isinstance(event, Member.RefundApplied):
            before = of_member.get(event.transaction_id)
            if before is None:
                raise LedgerInvariantError(f"refund {event.refund_id} is stored before its purchase")
            of_member[event.transaction_id] = event.refunded(before)
        else:
            raise LedgerInvariantError(f"the claim index names a {type(event).__name__} as a purchase's event")
    return purchases


_NO_CLAIMS: frozenset[ClaimKey] = frozenset()


class BatchRecall:
    """The recall of one batch: its own notes, then the notes of writes in flight (newest first), then the store."""

    __slots__ = ("_earlier", "_members", "_stored", "notes")

    def __init__(self, stored: Stored, in_flight: Sequence[Notes]) -> None:
        self._stored = stored
        self._earlier = list(reversed(in_flight))
        self._members: dict[str, MemberRecall] = {}
        self.notes = Notes()

    def of(self, member_id: str) -> MemberRecall:
        """One member's recall (made once per member and batch)."""
        recall = self._members.get(member_id)
        if recall is None:
            own = self.notes.members.get(member_id)
            if own is None:
                own = self.notes.members[member_id] = MemberNotes()
            earlier = [notes.members[member_id] for notes in self._earlier if member_id in notes.members]
            recall = self._members[member_id] = MemberRecall(
                [own, *earlier], self._stored.claimed.get(member_id, _NO_CLAIMS),
                self._stored.purchases.get(member_id, {}),
            )  # fmt: skip
        return recall

    def forget(self, member_id: str) -> None:
        """Drop what this batch noted of one member (its batch is decided again from the store)."""
        self.notes.members.pop(member_id, None)
        self._members.pop(member_id, None)


@dataclass(frozen=True, slots=True)
class MemberRecall:
    """One member's `ledger.claims.Recall` within a batch: its notes, newest first, then the store's answers."""

    notes: list[MemberNotes]
    stored_claims: set[ClaimKey] | frozenset[ClaimKey]
    stored_purchases: dict[str, PurchaseRecord]

    def claimed(self, kind: str, key: str) -> bool:
        wanted = (kind, key)
        return any(wanted in notes.claims for notes in self.notes) or wanted in self.stored_claims

    def purchase(self, transaction_id: str) -> PurchaseRecord | None:
        for notes in self.notes:
            purchase = notes.purchases.get(transaction_id)
            if purchase is not None:
                return purchase
        return self.stored_purchases.get(transaction_id)
