"""Ledger-wide figures as of a time, and the roll-forward's figures of consecutive periods: pure folds over
the event log."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from uuid import UUID

from ledger.events import FLOW_SIGNS
from ledger.lot_moves import LotMoves, move_lots_by_id
from ledger.member import Member
from ledger.rules import Lot
from projections.periods import require_consecutive

FLOWS = tuple(FLOW_SIGNS)


class MemberState(Protocol):
    """What the folds of the log keep of a member (figures here, a view's row in projections.views)."""

    member_id: str
    tier: str
    balance: int
    lots: dict[int, Lot]


def fold_member(member: MemberState, event: Member.Event, moves: LotMoves) -> list[tuple[Lot, int]]:
    """One event on its member's balance, tier and open lots (`moves`: the event's `lot_moves()`, which a
    caller may want too); the lots it touched, each with its change."""
    touched = move_lots_by_id(member.lots, moves, member.member_id)
    member.balance += event.balance_delta
    if isinstance(event, Member.TierChanged):
        member.tier = event.to_tier
    return touched


@dataclass(slots=True)
class MemberFigures:
    """One member's balance, tier and open lots as recorded up to a time."""

    member_id: str
    tier: str
    balance: int = 0
    lots: dict[int, Lot] = field(default_factory=dict)


@dataclass(slots=True)
class LedgerFigures:
    """Every member's figures as of `as_of` (None: everything recorded)."""

    as_of: datetime | None
    members: dict[UUID, MemberFigures] = field(default_factory=dict)

    def fold(self, event: Member.Event) -> None:
        """Apply one event, if it counts as of `as_of`."""
        if self.as_of is not None and event.effective_at > self.as_of:
            return
        if isinstance(event, Member.Enrolled):
            self.members[event.originator_id] = MemberFigures(event.member_id, event.tier)
            return
        fold_member(self.members[event.originator_id], event, event.lot_moves())


def figures_as_of(events: Iterable[Member.Event], as_of: datetime | None) -> LedgerFigures:
    figures = LedgerFigures(as_of)
    for event in events:
        figures.fold(event)
    return figures


@dataclass(frozen=True, slots=True)
class RollforwardFigures:
    """What the roll-forwards of consecutive periods are made of, from the views or the log alike: the sum of
    balances at the first period's start, each period's points per flow (counts; `migrated` signed), and the
    sum of balances at the last period's end, found on its own (the periods' flows must lead to it)."""

    opening: int
    flows: list[dict[str, int]]
    closing: int


def rollforward_figures(
    events: Iterable[Member.Event], spans: Sequence[tuple[datetime, datetime]]
) -> RollforwardFigures:
    """One pass over the log for every period: each event's change to balances by the ends, its flow to the
    period (start, end] it falls in."""
    require_consecutive(spans)
    first, last = spans[0][0], spans[-1][1]
    ends = [end for _, end in spans]
    opening = closing = 0
    flows = [dict.fromkeys(FLOWS, 0) for _ in spans]
    for event in events:
        at = event.effective_at
        if at > last:
            continue
        delta = event.balance_delta
        closing += delta
        if at <= first:
            opening += delta
            continue
        flow = event.flow()
        if flow is not None:
            flows[bisect_left(ends, at)][flow[0]] += flow[1]
    return RollforwardFigures(opening, flows, closing)


def flows_between(events: Iterable[Member.Event], start: datetime, end: datetime) -> dict[str, int]:
    """Points per flow in (start, end]."""
    return rollforward_figures(events, [(start, end)]).flows[0]
