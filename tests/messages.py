"""Building wire messages in tests: one helper per type, times as 'YYYY-MM-DD' days or full ISO times."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

from consumers.deadletters import DeadLetter
from schemas import Invalid, Message, parse_message

_ids = itertools.count(1)


def at(day: str) -> datetime:
    """'2024-01-31' or a full ISO time, as an aware UTC datetime."""
    value = datetime.fromisoformat(day if "T" in day else f"{day}T00:00:00+00:00")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def wire(type_: str, member: str = "M1", when: str = "2024-01-01", **fields: Any) -> dict[str, Any]:
    """A wire message as a dict (event_id unique unless given)."""
    event_id = fields.pop("event_id", None) or f"e{next(_ids)}"
    return {"type": type_, "event_id": event_id, "member_id": member, "occurred_at": at(when).isoformat(), **fields}


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def message(type_: str, member: str = "M1", when: str = "2024-01-01", **fields: Any) -> Message:
    parsed = parse_message(encode(wire(type_, member, when, **fields)))
    if isinstance(parsed, Invalid):
        raise AssertionError(f"test message is invalid: {parsed}")
    return parsed


def purchase(amount: str, member: str = "M1", when: str = "2024-01-01", txn: str | None = None, **kw: Any) -> Message:
    return message(
        "purchase", member, when, transaction_id=txn or f"t{next(_ids)}", amount=amount, currency="USD", **kw
    )


def refund(
    txn: str, amount: str, member: str = "M1", when: str = "2024-01-01", rid: str | None = None, **kw: Any
) -> Message:
    return message("refund", member, when, refund_id=rid or f"r{next(_ids)}", transaction_id=txn, amount=amount, **kw)


def redemption(points: int, member: str = "M1", when: str = "2024-01-01", rid: str | None = None, **kw: Any) -> Message:
    return message("redemption", member, when, redemption_id=rid or f"d{next(_ids)}", points=points, **kw)


def adjustment(points: int, member: str = "M1", when: str = "2024-01-01", aid: str | None = None, **kw: Any) -> Message:
    return message(
        "adjustment", member, when, adjustment_id=aid or f"a{next(_ids)}", points=points,
        reason="goodwill", operator="alice", **kw,
    )  # fmt: skip


def enrollment(member: str = "M1", when: str = "2024-01-01", **kw: Any) -> Message:
    return message("enrollment", member, when, **kw)


def opening_balance(
    points: int, member: str = "M1", when: str = "2024-01-01", oid: str | None = None, **kw: Any
) -> Message:
    return message("opening_balance", member, when, opening_balance_id=oid or f"o{next(_ids)}", points=points, **kw)


class CollectedLetters:
    """A dead-letter sink that keeps the letters, for assertions."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    def write(self, letter: DeadLetter) -> None:
        self.letters.append(letter)

    def flush(self) -> None:
        pass

    def seen(self) -> list[tuple[int, str, str]]:
        return [(letter.line, letter.error_class, letter.reason) for letter in self.letters]
