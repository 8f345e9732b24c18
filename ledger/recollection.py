"""What a batch's deciding recalls of its members' histories: the store's claim index, read once per batch,
under what the batch itself and the writes still in flight have claimed since.

Deciding batch k+1 overlaps writing batch k (ledger.pipeline), so the store cannot yet answer for batch k:
each write keeps the `Notes` of its events until it has committed, and a batch's `BatchRecall` consults
the newest notes first, then older ones, then the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from ledger.claims import Kind
from ledger.invariants import LedgerInvariantError
from ledger.member import Member
from ledger.rules import PurchaseRecord


@dataclass(slots=True)
class _MemberNotes:
    claims: set[tuple[Kind, str]] = field(default_factory=set)
    purchases: dict[str, PurchaseRecord] = field(default_factory=dict)


class Notes:
    """The ids claimed and the purchases changed by events the store may not have yet."""

    __slots__ = ("_members",)

    def __init__(self) -> None:
        self._members: dict[UUID, _MemberNotes] = {}

    def claimed(self, member_id: UUID, kind: Kind, key: str) -> bool:
        notes = self._members.get(member_id)
        return notes is not None and (kind, key) in notes.claims

    def purchase(self, member_id: UUID, transaction_id: str) -> PurchaseRecord | None:
        notes = self._members.get(member_id)
        return None if notes is None else notes.purchases.get(transaction_id)

    def note(self, member_id: UUID, events: Iterable[Member.Event], recall: MemberRecall) -> None:
        """Take in a member's new events; `recall` gives each refunded purchase as it stood before them."""
        notes = self._members.setdefault(member_id, _MemberNotes())
        for event in events:
            notes.claims.update((claim.kind, claim.key) for claim in event.claims())
            if isinstance(event, Member.PointsEarned):
                notes.purchases[event.transaction_id] = event.purchase()
            elif isinstance(event, Member.RefundApplied):
                before = recall.purchase(event.transaction_id)
                if before is None:
                    raise LedgerInvariantError(f"refund {event.refund_id} recorded without its purchase")
                notes.purchases[event.transaction_id] = event.refunded(before)

    def forget(self, member_id: UUID) -> None:
        """Drop what was noted of one member (its batch is decided again from the store)."""
        self._members.pop(member_id, None)


@dataclass(frozen=True, slots=True)
class Stored:
    """The store's answers for one batch: the ids found claimed, and the purchases asked for."""

    claimed: frozenset[tuple[UUID, Kind, str]]
    purchases: dict[tuple[UUID, str], PurchaseRecord]


def stored_purchases(events: Iterable[Member.Event]) -> dict[tuple[UUID, str], PurchaseRecord]:
    """Each purchase folded from its stored events: the purchase, then its refunds in order."""
    purchases: dict[tuple[UUID, str], PurchaseRecord] = {}
    for event in events:
        if isinstance(event, Member.PointsEarned):
            purchases[(event.originator_id, event.transaction_id)] = event.purchase()
        elif isinstance(event, Member.RefundApplied):
            key = (event.originator_id, event.transaction_id)
            if key not in purchases:
                raise LedgerInvariantError(f"refund {event.refund_id} is stored before its purchase")
            purchases[key] = event.refunded(purchases[key])
        else:
            raise LedgerInvariantError(f"the claim index names a {type(event).__name__} as a purchase's event")
    return purchases


class BatchRecall:
    """The recall of one batch: its own notes, then the notes of writes in flight (newest first), then the store."""

    __slots__ = ("_earlier", "_stored", "notes")

    def __init__(self, stored: Stored, in_flight: Sequence[Notes]) -> None:
        self._stored = stored
        self._earlier = list(reversed(in_flight))
        self.notes = Notes()

    def of(self, member_id: UUID) -> MemberRecall:
        return MemberRecall(self, member_id)

    def claimed(self, member_id: UUID, kind: Kind, key: str) -> bool:
        if self.notes.claimed(member_id, kind, key):
            return True
        if any(notes.claimed(member_id, kind, key) for notes in self._earlier):
            return True
        return (member_id, kind, key) in self._stored.claimed

    def purchase(self, member_id: UUID, transaction_id: str) -> PurchaseRecord | None:
        for notes in (self.notes, *self._earlier):
            purchase = notes.purchase(member_id, transaction_id)
            if purchase is not None:
                return purchase
        return self._stored.purchases.get((member_id, transaction_id))


@dataclass(frozen=True, slots=True)
class MemberRecall:
    """A batch's recall as one member's `ledger.claims.Recall`."""

    batch: BatchRecall
    member_id: UUID

    def claimed(self, kind: Kind, key: str) -> bool:
        return self.batch.claimed(self.member_id, kind, key)

    def purchase(self, transaction_id: str) -> PurchaseRecord | None:
        return self.batch.purchase(self.member_id, transaction_id)
