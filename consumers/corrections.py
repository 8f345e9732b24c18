"""`correct`: a reconcile report's discrepancies turned into compensating adjustments, never edits.

Each item comes checked against the ledger first (projections/report_check.py): its balances and difference
recomputed as of the report's position. A balance discrepancy then gets one `adjustment` of -difference
points (what makes the ledger agree with the other side as it stood at that position), with the operator and
reason given, effective at the member's ledger time and recorded now (history is never rewritten). Later
activity (purchases, redemptions, expiries) is not a reason to refuse: both systems see it; a correction
recorded since the report (by `correct` or an adjustment message) is, and the member is left alone.

Event and adjustment ids derive from the ledger, the report's position and time, the member and both
balances: the same discrepancy corrects once however often its report (or another report of the same
position) is run, and a member's correction is one message, so it is in the ledger whole or not at all.
Not corrected, and listed: tier-only differences (points do not change a tier), members only the ledger
has (it never removes a member because another system forgot it), and members only the other system has
(`correct` never creates a member: carry them over with `migrate`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from consumers.file_batches import decided_rows, refusal
from ledger.application import LedgerApplication
from ledger.claims import Kind
from ledger.outcomes import Outcome
from schemas import Adjustment, Invalid, parse_message

#: The discrepancy kinds a points adjustment corrects.
CORRECTABLE = ("balance", "balance_and_tier")
#: Why each other kind is not corrected.
NOT_CORRECTABLE = {
    "tier": "a tier differs; points do not change a tier",
    "missing_in_other": "not in the other system; the ledger never removes a member",
    "missing_in_ledger": "not in the ledger; correct never creates a member (carry it over with migrate)",
}


class ReportMade(Protocol):
    """Where a report was made (projections.report_check.ReportHeader)."""

    @property
    def ledger_id(self) -> str: ...
    @property
    def position(self) -> int: ...
    @property
    def as_of(self) -> datetime | None: ...


class CheckedDiscrepancy(Protocol):
    """A report item as recomputed from the ledger (projections.report_check.CheckedItem)."""

    @property
    def number(self) -> int: ...
    @property
    def member_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def ledger_balance(self) -> int | None: ...
    @property
    def other_balance(self) -> int | None: ...
    @property
    def difference(self) -> int: ...
    @property
    def corrected_since(self) -> tuple[str, ...]: ...
    @property
    def ledger_time(self) -> datetime | None: ...


#: Why a correction whose id the ledger already holds, without its adjustment, is not made: the rules refused it
#: when it was first tried (that refusal is what recorded the id).
REFUSED_BEFORE = "refused by the rules when this correction was first tried: reconcile again"


@dataclass(frozen=True, slots=True)
class Correction:
    """One member's adjustment, and the report item (its number, as `line`) it corrects."""

    member_id: str
    line: int
    message: Adjustment

    @property
    def messages(self) -> tuple[Adjustment]:
        return (self.message,)

    def outcome(self, outcome: str, reason: str | None = None) -> dict[str, Any]:
        """A line of `correct`'s output about this correction."""
        found = {"member_id": self.member_id, "outcome": outcome, "points": self.message.points}
        return {**found, "event_id": self.message.event_id} | ({"reason": reason} if reason else {})


def correction_id(made: ReportMade, item: CheckedDiscrepancy) -> str:
    """The event (and adjustment) id of an item's correction: the same discrepancy, seen at the same position
    of the same ledger, always gets the same one."""
    seen = [made.ledger_id, made.position, None if made.as_of is None else made.as_of.isoformat()]
    content = json.dumps([*seen, item.member_id, item.ledger_balance, item.other_balance])
    return f"correct-{hashlib.sha256(content.encode()).hexdigest()[:16]}-{item.member_id}"


def planned(made: ReportMade, item: CheckedDiscrepancy, *, reason: str, operator: str) -> Correction | dict[str, Any]:
    """The adjustment a checked item asks for, or the output line saying why there is none."""
    member_id = item.member_id
    if item.kind not in CORRECTABLE:
        return {
            "member_id": member_id,
            "outcome": "not_corrected",
            "kind": item.kind,
            "reason": NOT_CORRECTABLE[item.kind],
        }
    event_id = correction_id(made, item)
    if event_id in item.corrected_since:
        return {"member_id": member_id, "outcome": "already_corrected", "event_id": event_id}
    if item.corrected_since:
        why = f"corrected since the report (event {item.corrected_since[0]}): reconcile again"
        return {"member_id": member_id, "outcome": "not_corrected", "kind": item.kind, "reason": why}
    if item.ledger_time is None:  # the item was checked: the member had a balance at the report's position
        raise LookupError(f"member {member_id} has a balance but no ledger time in the views: run verify")
    wire = {
        "type": "adjustment", "event_id": event_id, "member_id": member_id,
        "occurred_at": item.ledger_time.isoformat(), "adjustment_id": event_id,
        "points": -item.difference, "reason": reason, "operator": operator,
    }  # fmt: skip
    message = parse_message(json.dumps(wire).encode())
    if isinstance(message, Invalid) or not isinstance(message, Adjustment):
        why = message.reason if isinstance(message, Invalid) else "not an adjustment"
        return {"member_id": member_id, "outcome": "not_corrected", "kind": item.kind, "reason": why}
    return Correction(member_id, item.number, message)


def apply_corrections(
    app: LedgerApplication,
    corrections: Iterable[Correction],
    name: str,
    *,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Append the adjustments, `batch_size` per transaction; each one's output line as its batch commits:
    `corrected`, `already_corrected` (the ledger made that adjustment before) or `rejected` (by the rules, with
    the reason, now or when this correction was first tried: its id is then recorded, with no adjustment)."""
    for correction, decision in decided_rows(app, corrections, name, batch_size, on_batch):
        if decision.outcome is Outcome.RECORDED:
            yield correction.outcome("corrected")
        elif decision.outcome is not Outcome.DUPLICATE:
            yield correction.outcome("rejected", refusal(decision))
        elif app.claimed(correction.member_id, Kind.ADJUSTMENT, correction.message.adjustment_id):
            yield correction.outcome("already_corrected")
        else:
            yield correction.outcome("rejected", REFUSED_BEFORE)
