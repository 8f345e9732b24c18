"""Ledger-wide figures as of a time: a pure fold over the event log."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from uuid import UUID

from ledger.member import FLOW_SIGNS, LotMoves, Member, move_lots_by_id
from ledger.rules import Lot

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


@dataclass(slots=True)
class PeriodFlows:
    """Opening and closing figures and the flows between, for the period (start, end]."""

    start: datetime
    end: datetime
    opening: LedgerFigures
    closing: LedgerFigures
    flows: dict[str, int]


def period_flows(events: Iterable[Member.Event], start: datetime, end: datetime) -> PeriodFlows:
    """One pass: figures at both ends and the sum of each flow in between."""
    if end < start:
        raise ValueError("the period must not end before it starts")
    opening, closing = LedgerFigures(start), LedgerFigures(end)
    flows = dict.fromkeys(FLOWS, 0)
    for event in events:
        opening.fold(event)
        closing.fold(event)
        flow = event.flow()
        if flow is not None and start < event.effective_at <= end:
            flows[flow[0]] += flow[1]
    return PeriodFlows(start, end, opening, closing, flows)
