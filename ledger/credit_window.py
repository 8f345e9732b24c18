"""The qualifying credits a member's purchases can still contribute to a tier evaluation.

Credits at t count the purchases effective in (t - tier window, t] (docs/rules.md §10). A member's time
never runs back, so once a purchase has left the window it never counts again: the window keeps only the
purchases that can still count, in effective-time order, with their credits' running total, and an index
by transaction for the refunds that claw credits back. What a purchase earned and what refunds took is
not kept here: refunds look their purchase up (`ledger.claims.Recall.purchase`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from ledger.invariants import LedgerInvariantError


@dataclass(slots=True)
class Credit:
    """One purchase's credits still counting: its base minus the credits refunds clawed back."""

    transaction_id: str
    effective_at: datetime
    credits: int


class CreditWindow:
    """Credits of the purchases that may still count, oldest first, and their total."""

    __slots__ = ("_by_transaction", "_queue", "total")

    def __init__(self, credits: Iterable[Credit] = ()) -> None:
        self._queue: deque[Credit] = deque()
        self._by_transaction: dict[str, Credit] = {}
        self.total = 0
        for credit in credits:
            self.add(credit.transaction_id, credit.effective_at, credit.credits)

    def restore(self, credit: Credit) -> None:
        """Put back an entry as a snapshot holds it (one a refund left at 0 credits included)."""
        self._queue.append(credit)
        self._by_transaction[credit.transaction_id] = credit
        self.total += credit.credits

    def __iter__(self) -> Iterator[Credit]:
        return iter(self._queue)

    def __len__(self) -> int:
        return len(self._queue)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CreditWindow) and self.total == other.total and self._queue == other._queue

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"CreditWindow({list(self._queue)!r})"

    def add(self, transaction_id: str, effective_at: datetime, credits: int) -> None:
        """A purchase's credits, at the back (purchases come in effective-time order); none for 0 credits."""
        if credits <= 0:
            return
        credit = Credit(transaction_id, effective_at, credits)
        self._queue.append(credit)
        self._by_transaction[transaction_id] = credit
        self.total += credits

    def claw_back(self, transaction_id: str, credits: int) -> None:
        """A refund took `credits` of a purchase's back; nothing if the purchase no longer counts."""
        credit = self._by_transaction.get(transaction_id)
        if credit is None:
            return
        if credits > credit.credits:
            raise LedgerInvariantError(f"a refund of {transaction_id} claws back {credits} of {credit.credits} credits")
        credit.credits -= credits  # an entry left at 0 stays until the window passes it: no search to remove it
        self.total -= credits

    def since(self, start: datetime) -> int:
        """Credits of the purchases effective after `start` (those at or before it are at the front)."""
        lapsed = 0
        for credit in self._queue:
            if credit.effective_at > start:
                break
            lapsed += credit.credits
        return self.total - lapsed

    def forget_through(self, start: datetime) -> None:
        """Drop the purchases effective at or before `start`: they can never count again."""
        while self._queue and self._queue[0].effective_at <= start:
            credit = self._queue.popleft()
            del self._by_transaction[credit.transaction_id]
            self.total -= credit.credits
