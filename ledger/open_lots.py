"""A member's open lots, kept in spending order so that every move costs only the lots it touches.

Points are spent soonest expiry first, then oldest lot (`spending_key`), and lots expire soonest expiry
first: both always take from the front. New lots almost always go to the back, since a member's time
never runs back and lot expiries are computed forward from it. So expiring, spending and opening cost what
they touch, not the number of open lots, and the balance is a running sum rather than a sum over lots.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from datetime import datetime

from ledger.invariants import LedgerInvariantError
from ledger.rules import Lot


def spending_key(lot: Lot) -> tuple[datetime, int]:
    """Points are taken from lots in this order: soonest expiry, then the oldest lot."""
    return (lot.expires_at, lot.lot_id)


class OpenLots:
    """The lots with points left, in spending order, and their points in all."""

    __slots__ = ("_queue", "points")

    def __init__(self, lots: Iterable[Lot] = ()) -> None:
        self._queue: deque[Lot] = deque(sorted((lot for lot in lots if lot.remaining > 0), key=spending_key))
        self.points: int = sum(lot.remaining for lot in self._queue)

    def __iter__(self) -> Iterator[Lot]:
        return iter(self._queue)

    def __len__(self) -> int:
        return len(self._queue)

    def __getitem__(self, index: int) -> Lot:
        return self._queue[index]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OpenLots) and self.points == other.points and self._queue == other._queue

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"OpenLots({list(self._queue)!r})"

    def open(self, lot: Lot) -> None:
        """Add a lot with points left at its place in spending order (the back, unless it expires sooner)."""
        if lot.remaining <= 0:
            raise LedgerInvariantError(f"lot {lot.lot_id} opened with {lot.remaining} points")
        key = spending_key(lot)
        index = len(self._queue)
        while index > 0 and spending_key(self._queue[index - 1]) > key:
            index -= 1
        self._queue.insert(index, lot)
        self.points += lot.remaining

    def take_from(self, lot_id: int, points: int, owner: str) -> Lot:
        """Take `points` from lot `lot_id` (the front one, unless an old event says otherwise); a lot left
        empty is closed. Returns the lot."""
        lot = self._queue[0] if self._queue and self._queue[0].lot_id == lot_id else self._find(lot_id)
        if lot is None or lot.remaining < points:
            raise LedgerInvariantError(f"member {owner}: lot {lot_id} cannot give {points} points")
        lot.remaining -= points
        self.points -= points
        if lot.remaining == 0:
            if self._queue[0] is lot:
                self._queue.popleft()
            else:
                self._queue.remove(lot)
        return lot

    def _find(self, lot_id: int) -> Lot | None:
        return next((lot for lot in self._queue if lot.lot_id == lot_id), None)

    def expiring(self, at: datetime) -> list[tuple[int, int]]:
        """(lot_id, points) of every lot whose expiry is at or before `at`, by lot id."""
        expired: list[tuple[int, int]] = []
        for lot in self._queue:
            if lot.expires_at > at:
                break
            expired.append((lot.lot_id, lot.remaining))
        return sorted(expired)

    def take(self, points: int) -> tuple[list[tuple[int, int]], int]:
        """Up to `points` from lots in spending order (soonest expiry, then oldest lot), nothing changed:
        ([(lot_id, taken)], shortfall)."""
        if points < 0:
            raise ValueError("cannot take a negative number of points")
        taken: list[tuple[int, int]] = []
        left = points
        for lot in self._queue:
            if left == 0:
                break
            take = min(lot.remaining, left)
            taken.append((lot.lot_id, take))
            left -= take
        return taken, left
