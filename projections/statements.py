"""One member: balance and lots as of a time, and the full audit trail."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from ledger.member import Member

#: Event fields every event has, shown apart from an event's own details; and the outcomes' bookkeeping of
#: their tier window (`credit_window_start`), which is no fact of the message and is not shown.
COMMON_FIELDS = {
    "originator_id", "originator_version", "originator_topic", "timestamp", "effective_at", "provenance",
    "credit_window_start",
}  # fmt: skip


def replay(events: Iterable[Member.Event], as_of: datetime | None = None) -> Member | None:
    """Rebuild a member from its events, stopping after the last one effective at or before `as_of`."""
    member: Member | None = None
    for state, _ in _replay_steps(events, as_of):
        member = state
    return member


def _replay_steps(events: Iterable[Member.Event], as_of: datetime | None) -> Iterator[tuple[Member, Member.Event]]:
    member: Member | None = None
    for event in events:
        if as_of is not None and event.effective_at > as_of:
            return
        member = event.mutate(member)
        if member is None:
            raise TypeError("a member event sequence must start with Enrolled")
        yield member, event


def statement(member: Member, as_of: datetime | None) -> dict[str, Any]:
    """What `balance` prints: balance, tier and the lots with points left."""
    return {
        "member_id": member.member_id,
        "as_of": as_of if as_of is not None else member.last_effective_at,
        "balance": member.balance,
        "tier": member.tier,
        "lots": [
            {"points": lot.points, "remaining": lot.remaining, "expires_at": lot.expires_at}
            for lot in sorted(member.lots, key=lambda lot: (lot.expires_at, lot.lot_id))
        ],
    }


def event_details(event: Member.Event) -> dict[str, Any]:
    """An event's own fields (what it did), without those every event has, by name."""
    return {key: value for key, value in sorted(vars(event).items()) if key not in COMMON_FIELDS}


def history(events: Iterable[Member.Event]) -> Iterator[dict[str, Any]]:
    """Every recorded change with its provenance, the change in points and the running balance."""
    for member, event in _replay_steps(events, None):
        yield {
            "version": event.originator_version,
            "effective_at": event.effective_at,
            "recorded_at": event.timestamp,
            "event": type(event).__name__,
            "change": event.balance_delta,
            "balance": member.balance,
            "tier": member.tier,
            "details": event_details(event),
            "provenance": event.provenance,
        }
