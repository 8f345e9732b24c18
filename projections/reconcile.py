"""Reconciliation: the ledger's balances against another system's (a legacy export, a POS, a CRM) or against a
shadow ledger, member by member, with each discrepancy's context from the audit trail.

A discrepancy is a member whose balance differs, whose tier differs (when the other side states one), or who
is on one side only. `difference` is always the ledger's balance minus the other side's (a missing side
counts as 0): the adjustment that would make the ledger agree is its negation.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from ledger.member import member_uuid
from ledger.micros import from_micros
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


def _kind(ledger: Side | None, other: Side | None) -> str | None:
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


def compare(ledger: dict[str, Side], other: dict[str, Side]) -> list[Discrepancy]:
    """Every member on either side whose balance or tier differs, or who is on one side only, by member id."""
    found = []
    for member_id in sorted(ledger.keys() | other.keys()):
        ours, theirs = ledger.get(member_id), other.get(member_id)
        kind = _kind(ours, theirs)
        if kind is None:
            continue
        ledger_balance = None if ours is None else ours.balance
        other_balance = None if theirs is None else theirs.balance
        found.append(
            Discrepancy(
                member_id,
                kind,
                ledger_balance,
                other_balance,
                (ledger_balance or 0) - (other_balance or 0),
                None if ours is None else ours.tier,
                None if theirs is None else theirs.tier,
            )
        )
    return found


def last_changes(sql: Sql, member_id: str, limit: int) -> list[dict[str, Any]]:
    """The member's latest `limit` audit rows, oldest first: what a person looks at to explain a difference."""
    rows = sql.rows(
        "SELECT version, effective_at, kind, delta, balance, tier, event_id, operator, reason FROM pl_audit "
        "WHERE member_key = ? ORDER BY version DESC LIMIT ?",
        (str(member_uuid(member_id)), limit),
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


def with_context(sql: Sql, found: list[Discrepancy], limit: int) -> list[Discrepancy]:
    """Each discrepancy with the member's latest changes in the ledger (none for a member it lacks)."""
    return [
        replace(d, last_events=[] if d.ledger_balance is None else last_changes(sql, d.member_id, limit)) for d in found
    ]


def summary(compared: int, found: list[Discrepancy]) -> dict[str, Any]:
    kinds = Counter(d.kind for d in found)
    return {
        "members_compared": compared,
        "discrepancies": len(found),
        **{kind: kinds.get(kind, 0) for kind in KINDS},
        "net_difference": sum(d.difference for d in found),
    }


def report(
    as_of: datetime | None, ledger: dict[str, Any], against: dict[str, Any], compared: int, found: list[Discrepancy]
) -> dict[str, Any]:
    """The whole reconciliation as one object: when, what was compared, the summary, every discrepancy."""
    return {
        "as_of": as_of,
        "ledger": ledger,
        "against": against,
        **summary(compared, found),
        "items": [d.as_dict() for d in found],
    }
