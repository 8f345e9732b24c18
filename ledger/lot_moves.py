"""Lot arithmetic shared by the aggregate and the read models: what an event does to a member's lots and debt.

An event describes its effect as `LotMoves` (a lot opened, points taken from lots by id, debt repaid or
incurred). The Member aggregate applies them to its `OpenLots` (`Member.move_lots`) and the read models to
their lots keyed by id (`move_lots_by_id`): one description, so the two can never apply an event differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ledger.invariants import LedgerInvariantError
from ledger.rules import Lot


@dataclass(frozen=True, slots=True)
class LotMoves:
    """What an event does to a member's lots and debt: the one description both the aggregate and the
    read models apply. `opened` may have nothing remaining when its points all went to repay debt."""

    opened: Lot | None = None
    taken: tuple[tuple[int, int], ...] = ()
    debt_delta: int = 0


NO_LOT_MOVES = LotMoves()


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
