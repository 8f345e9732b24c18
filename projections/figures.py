"""Ledger-wide figures as of a time: a pure fold over the event log."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from ledger.events import FLOW_SIGNS
from ledger.lot_moves import move_lots_by_id
from ledger.member import Member
from ledger.rules import Lot

FLOWS = tuple(FLOW_SIGNS)


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
        figures = self.members[event.originator_id]
        figures.balance += event.balance_delta
        move_lots_by_id(figures.lots, event.lot_moves(), figures.member_id)
        if isinstance(event, Member.TierChanged):
            figures.tier = event.to_tier


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
