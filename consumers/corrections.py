"""`correct`: a reconcile report's discrepancies turned into compensating adjustments, never edits.

Each discrepancy whose balance differs gets one `adjustment` of -difference points (what makes the ledger
agree with the other side), with the operator and reason given, effective at the member's ledger time and
recorded now (history is never rewritten). Event and adjustment ids derive from the report's content and the member:
running the same report again corrects nothing twice, and a member's correction is one message, so it is
in the ledger whole or not at all. Tier-only differences and members the other side lacks are listed, not
corrected: points cannot fix a tier, and the ledger never removes a member because another system forgot it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from consumers.defaults import CORRECT_BATCH
from consumers.file_batches import decided_rows, refusal
from ledger.application import LedgerApplication
from ledger.outcomes import Outcome
from schemas import Adjustment, Invalid, parse_message

#: The discrepancy kinds a points adjustment corrects.
CORRECTABLE = ("balance", "balance_and_tier", "missing_in_ledger")


class ReportError(ValueError):
    """The file is not a reconcile report."""


@dataclass(frozen=True, slots=True)
class Correction:
    """One member's adjustment, and the report item (its `line`) it corrects."""

    member_id: str
    line: int
    message: Adjustment

    @property
    def messages(self) -> tuple[Adjustment]:
        return (self.message,)


@dataclass(slots=True)
class CorrectionResult:
    corrected: list[dict[str, Any]] = field(default_factory=list)
    already_corrected: list[str] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    not_corrected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "corrections": len(self.corrected),
            "already_corrected": len(self.already_corrected),
            "rejected": self.rejected,
            "not_corrected": self.not_corrected,
            "members_corrected": self.corrected,
        }


@dataclass(frozen=True, slots=True)
class MemberNow:
    """What `correct` needs of a member as the ledger holds it now."""

    balance: int
    ledger_time: datetime
    event_ids: Container[str]


#: The member as the ledger holds it now; None for a member it does not have.
MemberState = Callable[[str], MemberNow | None]


def corrections(
    content: bytes, name: str, result: CorrectionResult, *, reason: str, operator: str, now: datetime,
    member_state: MemberState,
) -> list[Correction]:  # fmt: skip
    """The adjustments a report asks for (those it cannot make go to `result.not_corrected`).

    Each lands at the member's ledger time, so it applies to the balance the report saw: a later time would
    first expire lots and review the tier at that time, and the adjustment would no longer fit. A member whose
    balance changed since the report is left alone (reconcile again)."""
    try:
        report = json.loads(content)
        items = report["items"]
        if not isinstance(items, list):
            raise TypeError("items is not a list")
    except (ValueError, KeyError, TypeError) as error:
        raise ReportError(f"{name} is not a reconcile report (reconcile --report FILE.json): {error}") from error
    digest = hashlib.sha256(content).hexdigest()[:16]
    found = []
    for number, item in enumerate(items, start=1):
        member_id, kind, difference = item.get("member_id"), item.get("kind"), item.get("difference")
        if not isinstance(member_id, str) or not isinstance(difference, int) or isinstance(difference, bool):
            raise ReportError(f"{name}: item {number} has no member_id and whole-number difference")
        if kind not in CORRECTABLE:
            why = "a tier differs; points do not change a tier" if kind == "tier" else "not in the other system"
            result.not_corrected.append({"member_id": member_id, "kind": kind, "reason": why})
            continue
        event_id = f"correct-{digest}-{member_id}"
        state = member_state(member_id)
        if state is not None and event_id in state.event_ids:
            result.already_corrected.append(member_id)
            continue
        at = _correction_time(item, state, now)
        if isinstance(at, str):
            result.not_corrected.append({"member_id": member_id, "kind": kind, "reason": at})
            continue
        wire = {
            "type": "adjustment", "event_id": event_id, "member_id": member_id,
            "occurred_at": at.isoformat(), "adjustment_id": event_id,
            "points": -difference, "reason": reason, "operator": operator,
        }  # fmt: skip
        message = parse_message(json.dumps(wire).encode())
        if isinstance(message, Invalid) or not isinstance(message, Adjustment):
            why = message.reason if isinstance(message, Invalid) else "not an adjustment"
            result.not_corrected.append({"member_id": member_id, "kind": kind, "reason": why})
            continue
        found.append(Correction(member_id, number, message))
    return found


def _correction_time(item: dict[str, Any], state: MemberNow | None, now: datetime) -> datetime | str:
    """When a member's correction takes effect, or why it cannot be made now."""
    if item.get("kind") == "missing_in_ledger":
        return now if state is None else "the member is in the ledger since the report: reconcile again"
    if state is None:
        return "the member is not in the ledger"
    if state.balance != item.get("ledger_balance"):
        then = item.get("ledger_balance")
        return f"the balance changed since the report ({then} then, {state.balance} now): reconcile again"
    return state.ledger_time


def apply_corrections(
    app: LedgerApplication,
    found: list[Correction],
    name: str,
    result: CorrectionResult,
    *,
    batch_size: int = CORRECT_BATCH,
    on_batch: Callable[[int], None] | None = None,
) -> CorrectionResult:
    """Append the adjustments, `batch_size` per transaction, and sort each member's outcome."""
    for correction, decision in decided_rows(app, found, name, batch_size, on_batch):
        if decision.outcome is Outcome.RECORDED:
            result.corrected.append({"member_id": correction.member_id, "points": correction.message.points})
        elif decision.outcome is Outcome.DUPLICATE:
            result.already_corrected.append(correction.member_id)
        else:
            result.rejected.append({"member_id": correction.member_id, "reason": refusal(decision)})
    return result
