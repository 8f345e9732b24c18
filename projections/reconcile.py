"""Reconciliation: the ledger's balances against another system's (a legacy export, a POS, a CRM) or against a
shadow ledger, member by member, with each discrepancy's context from the audit trail.

A discrepancy is a member whose balance differs, whose tier differs (when the other side states one), or who
is on one side only. `difference` is always the ledger's balance minus the other side's (a missing side
counts as 0): the adjustment that would make the ledger agree is its negation.

Both sides are read in member id order and merged, a member at a time: memory does not grow with members.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from operator import itemgetter
from typing import Any

from ledger.member import member_uuid
from ledger.micros import from_micros, to_micros
from projections import queries
from projections.db import Sql

KINDS = ("balance", "tier", "balance_and_tier", "missing_in_ledger", "missing_in_other")


@dataclass(frozen=True, slots=True)
class Side:
    """One side's view of a member: the balance, and the tier when that side states one."""

    balance: int
    tier: str | None


@dataclass(frozen=True, slots=True)
class Discrepancy:
    member_id: str
    kind: str
    ledger_balance: int | None
    other_balance: int | None
    difference: int
    ledger_tier: str | None
    other_tier: str | None
    last_events: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ledger_sides(sql: Sql, as_of: datetime | None) -> Iterator[tuple[str, Side]]:
    """A ledger's balances (as of a time, or its latest), by member id, streamed from its views."""
    for row in queries.balances(sql, as_of):
        yield row["member_id"], Side(int(row["balance"]), row["tier"])


def kind_of(ledger: Side | None, other: Side | None) -> str | None:
    """The kind of discrepancy between the two sides' view of a member (None: they agree)."""
    if ledger is None:
        return "missing_in_ledger"
    if other is None:
        return "missing_in_other"
    balance = ledger.balance != other.balance
    tier = other.tier is not None and other.tier != ledger.tier
    if balance and tier:
        return "balance_and_tier"
    if balance:
        return "balance"
    return "tier" if tier else None


#: A side of the comparison: (member id, that side's view of the member), in member id order.
Sides = Iterable[tuple[str, Side]]


class UnorderedSideError(ValueError):
    """A side did not come in strictly increasing member id order: a merge would pair the wrong members."""


def merged(ledger: Sides, other: Sides) -> Iterator[tuple[str, Side | None, Side | None]]:
    """Every member on either side with both sides' view of it (None: not on that side), by member id.

    Both sides come sorted by member id in code point order (Python's own `<` on str), so the merge holds
    one member of each side at a time, whatever their sizes. A side out of order is an error, never a
    quiet mismatch (a database collation other than code point order would do that)."""
    tagged = heapq.merge(
        ((member_id, 0, side) for member_id, side in _ordered(ledger, "the ledger")),
        ((member_id, 1, side) for member_id, side in _ordered(other, "the other side")),
    )  # ties in member id are broken by the tag: sides themselves are never compared
    for member_id, group in itertools.groupby(tagged, key=itemgetter(0)):
        views: list[Side | None] = [None, None]
        for _, tag, side in group:
            views[tag] = side
        yield member_id, views[0], views[1]


def _ordered(side: Sides, name: str) -> Iterator[tuple[str, Side]]:
    previous: str | None = None
    for member_id, found in side:
        if previous is not None and not previous < member_id:
            raise UnorderedSideError(f"{name} gave member {member_id!r} after {previous!r}: not in member id order")
        previous = member_id
        yield member_id, found


def discrepancy(member_id: str, ours: Side | None, theirs: Side | None) -> Discrepancy | None:
    """The discrepancy of one member (None: the sides agree)."""
    kind = kind_of(ours, theirs)
    if kind is None:
        return None
    ledger_balance = None if ours is None else ours.balance
    other_balance = None if theirs is None else theirs.balance
    return Discrepancy(
        member_id,
        kind,
        ledger_balance,
        other_balance,
        (ledger_balance or 0) - (other_balance or 0),
        None if ours is None else ours.tier,
        None if theirs is None else theirs.tier,
    )


def last_changes(sql: Sql, member_id: str, limit: int, as_of: datetime | None = None) -> list[dict[str, Any]]:
    """The member's latest `limit` audit rows (effective by `as_of`, when given), oldest first: what a person
    looks at to explain a difference. A comparison as of a time shows the changes up to it, never later ones
    (a member's effective times never run backwards, so these are the versions up to that time)."""
    by_then, bound = ("AND effective_at <= ? ", (to_micros(as_of),)) if as_of is not None else ("", ())
    rows = sql.rows(
        "SELECT version, effective_at, kind, delta, balance, tier, event_id, operator, reason FROM pl_audit "
        f"WHERE member_key = ? {by_then}ORDER BY version DESC LIMIT ?",
        (str(member_uuid(member_id)), *bound, limit),
    )
    changes = []
    for row in reversed(rows):
        change = {
            "version": row["version"],
            "effective_at": from_micros(row["effective_at"]),
            "event": row["kind"],
            "change": row["delta"],
            "balance": row["balance"],
            "tier": row["tier"],
            "event_id": row["event_id"],
        }
        changes.append(change | {key: row[key] for key in ("operator", "reason") if row[key]})
    return changes


def with_context(sql: Sql, found: Discrepancy, limit: int, as_of: datetime | None = None) -> Discrepancy:
    """The discrepancy with the member's latest changes in the ledger, up to `as_of` when given (none for a
    member it lacks)."""
    changes = [] if found.ledger_balance is None else last_changes(sql, found.member_id, limit, as_of)
    return replace(found, last_events=changes)


@dataclass(slots=True)
class Tally:
    """The counts of a comparison, kept as it goes: members compared, discrepancies by kind, net difference."""

    compared: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    net_difference: int = 0

    def add(self, found: Discrepancy | None) -> None:
        self.compared += 1
        if found is not None:
            self.kinds[found.kind] += 1
            self.net_difference += found.difference

    def summary(self) -> dict[str, Any]:
        return {
            "members_compared": self.compared,
            "discrepancies": self.kinds.total(),
            **{kind: self.kinds.get(kind, 0) for kind in KINDS},
            "net_difference": self.net_difference,
        }
