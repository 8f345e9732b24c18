"""A reconcile report checked against the ledger it names, before `correct` acts on any of it.

A report names its ledger (the ledger's id, ledger/storage/identity.py), the log position its comparison was made at,
and the time compared (`as_of`, or the latest). Every item is recomputed from the views as of that
position: the ledger's balance and tier then (the member's last audit row recorded by that position, and
effective by `as_of` when there is one), hence the kind of discrepancy and `difference` (the ledger's balance
minus the other side's). An item that does not agree, a member the ledger did not have then, items out of
member id order or repeated, a report of another ledger or of a position beyond the log: the report is
refused as a whole. What cannot be checked is the other side's own number: the report is the only witness
of what the other system said.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

from ledger.member import member_uuid
from ledger.micros import from_micros, to_micros
from projections.db import Sql
from projections.defaults import REPORT_ITEMS
from projections.queries import state_at
from projections.reconcile import KINDS, Side, kind_of
from schemas.messages import MEMBER_ID_MAX_CHARS

#: The roll-forward flows that change points by decision of a person or a migration, not by activity: a member
#: with one of these recorded after the report's position was corrected (or carried over) since.
CORRECTING_FLOWS = ("adjusted_in", "adjusted_out", "migrated")
#: The most corrections since the report's position read per member (one is enough to leave it alone; the
#: correction of this very report is looked for among them).
CORRECTIONS_SINCE_MAX = 20


class ReportError(ValueError):
    """The report is not a reconcile report of this ledger, or does not agree with it: nothing is corrected."""


@dataclass(frozen=True, slots=True)
class ReportHeader:
    """What a report says about where it was made: the ledger, the log position, the time compared."""

    ledger_id: str
    position: int
    as_of: datetime | None


@dataclass(frozen=True, slots=True)
class CheckedItem:
    """A report item as recomputed from the ledger, and what the ledger holds of its member now."""

    number: int
    member_id: str
    kind: str
    ledger_balance: int | None
    other_balance: int | None
    difference: int
    #: The event ids of corrections (adjustments, opening balances) recorded for the member after the report's
    #: position, at most CORRECTIONS_SINCE_MAX.
    corrected_since: tuple[str, ...]
    #: The member's ledger time now (None: not in the ledger).
    ledger_time: datetime | None


def _whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def report_header(fields: Mapping[str, Any], name: str) -> ReportHeader:
    """The report's header from its top-level fields (`items` itself is not looked at), or ReportError."""
    if REPORT_ITEMS not in fields:
        raise ReportError(f"{name} is not a reconcile report (reconcile --report FILE.json): it has no {REPORT_ITEMS}")
    ledger = fields.get("ledger")
    if not isinstance(ledger, Mapping) or "id" not in ledger:
        raise ReportError(f"{name} names no ledger (a report of an older version?): reconcile again")
    ledger_id, position, as_of = ledger.get("id"), ledger.get("position"), fields.get("as_of")
    if not isinstance(ledger_id, str) or not _whole(position) or position < 0:
        raise ReportError(f"{name}: ledger.id must be text and ledger.position a whole number of at least 0")
    if as_of is None:
        return ReportHeader(ledger_id, position, None)
    try:
        moment = datetime.fromisoformat(as_of) if isinstance(as_of, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ReportError(f"{name}: as_of must be null or an ISO 8601 time with a UTC offset")
    return ReportHeader(ledger_id, position, moment.astimezone(UTC))


def check_header(header: ReportHeader, name: str, ledger_id: str, head: int) -> None:
    """Refuse a report of another ledger, or of a position this ledger's log has not reached."""
    if header.ledger_id != ledger_id:
        raise ReportError(f"{name} was made on ledger {header.ledger_id}, not on this one ({ledger_id})")
    if header.position > head:
        raise ReportError(
            f"{name} was made at log position {header.position}, beyond this ledger's log (at {head}): "
            "it is not of this ledger's history"
        )


class ItemChecker:
    """Checks a report's items in order against the views (each item once, in member id order)."""

    def __init__(self, header: ReportHeader, name: str) -> None:
        self.header = header
        self.name = name
        self.number = 0
        self.previous: str | None = None

    def check(self, sql: Sql, item: Any, *, now: bool = True) -> CheckedItem:
        """The next item recomputed from the ledger, or ReportError naming it and what does not agree. Without
        `now`, what the ledger holds of the member now is not read (`corrected_since` empty, `ledger_time` None):
        enough to check, not to correct."""
        self.number += 1
        member_id, kind = self._fields(item)
        where = f"{self.name}, item {self.number} (member {member_id})"
        if self.previous is not None and not self.previous < member_id:
            raise ReportError(f"{where}: items must be in member id order, each member once, as reconcile writes them")
        self.previous = member_id
        then = side_at(sql, member_id, self.header.position, self.header.as_of)
        other = None if item["other_balance"] is None else Side(item["other_balance"], item["other_tier"])
        if then is None and item["ledger_balance"] is not None:
            raise ReportError(f"{where}: the ledger did not have this member at position {self.header.position}")
        stated = None if item["ledger_balance"] is None else Side(item["ledger_balance"], item["ledger_tier"])
        if stated != then:
            said = "no member" if then is None else f"balance {then.balance}, tier {then.tier}"
            raise ReportError(f"{where}: the ledger had {said} at position {self.header.position}, not what it says")
        if then is None and other is None:
            raise ReportError(f"{where}: the member is on neither side")
        expected = (0 if then is None else then.balance) - (0 if other is None else other.balance)
        if kind != kind_of(then, other) or item["difference"] != expected:
            raise ReportError(
                f"{where}: kind {kind} and difference {item['difference']} do not follow from its balances "
                f"(kind {kind_of(then, other)}, difference {expected})"
            )
        corrected, ledger_time = now_of(sql, member_id, self.header.position) if now else ((), None)
        return CheckedItem(
            self.number, member_id, kind, item["ledger_balance"], item["other_balance"], expected, corrected,
            ledger_time,
        )  # fmt: skip

    def _fields(self, item: Any) -> tuple[str, str]:
        """The item's member id and kind, once every field it must have has the right type."""
        where = f"{self.name}, item {self.number}"
        if not isinstance(item, Mapping):
            raise ReportError(f"{where} is not an object")
        member_id, kind = item.get("member_id"), item.get("kind")
        if not isinstance(member_id, str) or not 1 <= len(member_id) <= MEMBER_ID_MAX_CHARS or kind not in KINDS:
            raise ReportError(f"{where}: needs a member_id (1 to {MEMBER_ID_MAX_CHARS} characters) and a kind")
        numbers_ok = all(item.get(key) is None or _whole(item.get(key)) for key in ("ledger_balance", "other_balance"))
        tiers_ok = all(item.get(key) is None or isinstance(item.get(key), str) for key in ("ledger_tier", "other_tier"))
        if not numbers_ok or not tiers_ok or not _whole(item.get("difference")):
            raise ReportError(f"{where} (member {member_id}): balances and difference must be whole numbers")
        return member_id, str(kind)


def side_at(sql: Sql, member_id: str, position: int, as_of: datetime | None) -> Side | None:
    """The member's balance and tier as the ledger had them at log `position` (and effective by `as_of`):
    its last audit row recorded by then. None: the member did not exist then."""
    key = str(member_uuid(member_id))
    row = sql.row(
        state_at(effective_by=as_of is not None, recorded_by=True),
        (key, position) if as_of is None else (key, position, to_micros(as_of)),
    )
    return None if row is None else Side(int(row["balance"]), row["tier"])


def now_of(sql: Sql, member_id: str, position: int) -> tuple[tuple[str, ...], datetime | None]:
    """The event ids of the member's corrections recorded after `position`, and its ledger time now."""
    key = str(member_uuid(member_id))
    flows = ", ".join("?" * len(CORRECTING_FLOWS))
    rows = sql.rows(
        f"SELECT event_id FROM pl_audit WHERE member_key = ? AND position > ? AND flow IN ({flows}) "
        "ORDER BY version LIMIT ?",
        (key, position, *CORRECTING_FLOWS, CORRECTIONS_SINCE_MAX),
    )
    ledger_time = sql.scalar("SELECT ledger_time FROM pl_members WHERE member_key = ?", (key,))
    return tuple(row["event_id"] or "" for row in rows), None if ledger_time is None else from_micros(ledger_time)
