"""A member's history as statement lines a person reads: what happened, in words, and where it came from.

`history` records carry each event's own fields (`details`) and its provenance, as the log has them, for
machines (`--format json`, the API). The helpdesk reads a line per change instead: "Purchase txn-81 of
65.90", "Adjusted by alice: goodwill". The terminal's `history` table and the console's member page both
write these lines, from this one module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

#: Longest `what` or `origin` text of a line, in characters (a reason or a file name may be long).
LINE_TEXT_MAX = 120


def _clip(text: str) -> str:
    return text if len(text) <= LINE_TEXT_MAX else text[: LINE_TEXT_MAX - 1] + "…"


def _with(text: str, value: Any, joiner: str = " ") -> str:
    return text if value in (None, "") else f"{text}{joiner}{value}"


def _purchase(details: Mapping[str, Any]) -> str:
    return f"Purchase {details.get('transaction_id')} of {details.get('amount')}"


def _refund(details: Mapping[str, Any]) -> str:
    return f"Refund {details.get('refund_id')} of purchase {details.get('transaction_id')}"


def _redemption(details: Mapping[str, Any]) -> str:
    return _with(f"Redemption {details.get('redemption_id')}", details.get("reward_name"), ": ")


def _adjustment(details: Mapping[str, Any]) -> str:
    return _with("Adjustment", details.get("reason"), ": ")


def _opening(details: Mapping[str, Any]) -> str:
    return _with(f"Opening balance {details.get('opening_balance_id')}", details.get("legacy_ref"), ", legacy ")


def _rejected(details: Mapping[str, Any]) -> str:
    return f"Rejected {details.get('message_type')} {details.get('business_id')}: {details.get('reason')}"


def _expired(details: Mapping[str, Any]) -> str:
    return f"{details.get('points'):,} points expired"


def _tier(details: Mapping[str, Any]) -> str:
    return f"Tier {details.get('from_tier')} to {details.get('to_tier')}"


#: What each event says, from its details.
_WORDS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "Enrolled": lambda _: "Enrolled",
    "EnrollmentRepeated": lambda _: "Enrollment sent again",
    "PointsEarned": _purchase,
    "RefundApplied": _refund,
    "PointsRedeemed": _redemption,
    "PointsAdjusted": _adjustment,
    "OpeningBalanceApplied": _opening,
    "MessageRejected": _rejected,
    "LotsExpired": _expired,
    "TierChanged": _tier,
    "Swept": lambda _: "Tier kept at the period-end sweep",
}


def what_happened(row: Mapping[str, Any]) -> str:
    """A history record's event in words (an event this module does not know: its name)."""
    words = _WORDS.get(str(row["event"]))
    return _clip(str(row["event"]) if words is None else words(row["details"]))


def origin(row: Mapping[str, Any]) -> str:
    """Where a change came from: the operator of an adjustment, else its source (a Kafka record, a file's
    line, an API or console key), else the ledger itself (a sweep)."""
    operator = row["details"].get("operator")
    if operator:
        return _clip(f"operator {operator}")
    source = row["provenance"].get("source") or {}
    if "topic" in source:
        return _clip(f"kafka {source['topic']}/{source.get('partition')}@{source.get('offset')}")
    if "file" in source:
        name = str(source["file"]).rsplit("/", 1)[-1]
        return _clip(f"file {name}:{source.get('line')}")
    for face in ("api", "console"):
        if face in source:
            return _clip(f"{face} key {source[face]}")
    if source:
        return _clip(", ".join(f"{name}={value}" for name, value in sorted(source.items())))
    return "ledger"


def statement_line(row: Mapping[str, Any]) -> dict[str, Any]:
    """A history record as a statement line: its number, when, what happened, the change, the balance after,
    the tier and where it came from."""
    return {
        "version": row["version"], "effective_at": row["effective_at"], "what": what_happened(row),
        "change": row["change"], "balance": row["balance"], "tier": row["tier"], "origin": origin(row),
    }  # fmt: skip
