"""A realistic, seeded stream of wire messages: what POS and CRM systems send on a bad day.

Used for the shipped sample, the tests, the benchmarks and the demo. Besides
valid traffic it mixes in redeliveries, reused business ids, late timestamps,
refunds beyond the purchase, redemptions beyond the balance and invalid lines.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

#: Where streams start unless told otherwise.
DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)

INVALID_LINES: tuple[bytes, ...] = (
    b"{not json",
    b"[1, 2, 3]",
    b'"just a string"',
    b"",
    b'{"type": "teleport", "event_id": "x", "member_id": "m", "occurred_at": "2024-01-01T00:00:00Z"}',
    b'{"event_id": "no-type", "member_id": "m", "occurred_at": "2024-01-01T00:00:00Z"}',
    b'{"type": "purchase", "event_id": "naive", "member_id": "m", "occurred_at": "2024-01-01T00:00:00",'
    b' "transaction_id": "t", "amount": "1.00", "currency": "USD"}',
    b'{"type": "purchase", "event_id": "neg", "member_id": "m", "occurred_at": "2024-01-01T00:00:00Z",'
    b' "transaction_id": "t", "amount": "-5.00", "currency": "USD"}',
    b'{"type": "purchase", "event_id": "3dp", "member_id": "m", "occurred_at": "2024-01-01T00:00:00Z",'
    b' "transaction_id": "t", "amount": "5.001", "currency": "USD"}',
    b'{"type": "purchase", "event_id": "eur", "member_id": "m", "occurred_at": "2024-01-01T00:00:00Z",'
    b' "transaction_id": "t", "amount": "5.00", "currency": "EUR"}',
    b'{"type": "redemption", "event_id": "str-points", "member_id": "m", "occurred_at": "2024-01-01T00:00:00Z",'
    b' "redemption_id": "r", "points": "10"}',
    b'{"type": "adjustment", "event_id": "zero", "member_id": "m", "occurred_at": "2024-01-01T00:00:00Z",'
    b' "adjustment_id": "a", "points": 0, "reason": "r", "operator": "o"}',
    b'{"type": "enrollment", "event_id": "extra", "member_id": "m", "occurred_at": "2024-01-01T00:00:00Z",'
    b' "favourite_colour": "blue"}',
    b'{"type": "refund", "event_id": "", "member_id": "m", "occurred_at": "2024-01-01T00:00:00Z",'
    b' "refund_id": "f", "transaction_id": "t", "amount": "1.00"}',
    b"\xff\xfe not utf-8",
)


@dataclass
class _MemberState:
    member_id: str
    purchases: list[tuple[str, Decimal]] = field(default_factory=list)
    points_estimate: int = 0


@dataclass
class StreamGenerator:
    """Generates `messages` wire lines for `members` members over `days` days."""

    members: int = 100
    days: int = 365
    seed: int = 7
    start: datetime = DEFAULT_START
    invalid_rate: float = 0.01
    redelivery_rate: float = 0.02
    late_rate: float = 0.02
    _rng: random.Random = field(init=False)
    _sent: list[bytes] = field(init=False, default_factory=list)
    _counter: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.members < 1 or self.days < 1:
            raise ValueError("members and days must be at least 1")
        self._rng = random.Random(self.seed)  # noqa: S311 (test data, not secrets)

    def lines(self, messages: int) -> Iterator[bytes]:
        """Exactly `messages` lines, time-ordered except for the deliberate late ones."""
        rng = self._rng
        states = [_MemberState(f"M{index:06d}") for index in range(self.members)]
        span = timedelta(days=self.days).total_seconds()
        for position in range(messages):
            roll = rng.random()
            if roll < self.invalid_rate:
                yield rng.choice(INVALID_LINES)
                continue
            if roll < self.invalid_rate + self.redelivery_rate and self._sent:
                yield rng.choice(self._sent)
                continue
            at = self.start + timedelta(seconds=span * position / max(messages, 1))
            if rng.random() < self.late_rate:
                at -= timedelta(days=rng.randint(1, 30))
            line = self._encode(self._message(rng.choice(states), at))
            self._sent.append(line)
            yield line

    def _next_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}-{self.seed}-{self._counter:08d}"

    def _message(self, member: _MemberState, at: datetime) -> dict[str, Any]:
        rng = self._rng
        common = {"event_id": self._next_id("evt"), "member_id": member.member_id, "occurred_at": at}
        kind = rng.choices(["purchase", "refund", "redemption", "adjustment", "enrollment"], weights=[70, 8, 12, 4, 6])[
            0
        ]
        if kind == "purchase" or (kind == "refund" and not member.purchases):
            amount = Decimal(rng.choice([rng.randint(100, 9_999), rng.randint(1_000, 150_000)])) / 100
            if rng.random() < 0.03 and member.purchases:
                transaction_id = rng.choice(member.purchases)[0]  # a reused transaction id
            else:
                transaction_id = self._next_id("txn")
                member.purchases.append((transaction_id, amount))
            member.points_estimate += int(amount)
            return {**common, "type": "purchase", "transaction_id": transaction_id, "amount": str(amount),
                    "currency": "USD", "store_id": f"S{rng.randint(1, 40):03d}",
                    "channel": rng.choice(["pos", "web", "app"])}  # fmt: skip
        if kind == "refund":
            transaction_id, amount = rng.choice(member.purchases)
            share = rng.choice([Decimal("0.25"), Decimal("0.5"), Decimal("1"), Decimal("1.5")])
            refund = max((amount * share).quantize(Decimal("0.01")), Decimal("0.01"))
            if rng.random() < 0.05:
                transaction_id = self._next_id("txn-unknown")
            return {**common, "type": "refund", "refund_id": self._next_id("rfd"),
                    "transaction_id": transaction_id, "amount": str(refund)}  # fmt: skip
        if kind == "redemption":
            points = rng.choice([100, 250, 500, 1000, 5000])
            return {**common, "type": "redemption", "redemption_id": self._next_id("rdm"), "points": points,
                    "reward": rng.choice(["coffee", "voucher", "upgrade", None])}  # fmt: skip
        if kind == "adjustment":
            points = rng.choice([50, 100, 500, -50, -200, -10_000])
            return {**common, "type": "adjustment", "adjustment_id": self._next_id("adj"), "points": points,
                    "reason": rng.choice(["goodwill", "migration", "correction"]),
                    "operator": rng.choice(["alice", "bob"])}  # fmt: skip
        return {**common, "type": "enrollment"}

    @staticmethod
    def _encode(message: dict[str, Any]) -> bytes:
        message = {key: value for key, value in message.items() if value is not None}
        message["occurred_at"] = message["occurred_at"].isoformat().replace("+00:00", "Z")
        return json.dumps(message, separators=(",", ":")).encode()


def generate(messages: int, members: int, days: int = 365, seed: int = 7) -> list[bytes]:
    return list(StreamGenerator(members=members, days=days, seed=seed).lines(messages))


@dataclass(frozen=True, slots=True)
class LegacyBalance:
    """One member's row of a legacy loyalty system's export (`migrate`'s CSV)."""

    member_id: str
    balance: int
    tier: str | None = None
    expires_at: datetime | None = None
    enrolled_at: datetime | None = None


LEGACY_TIERS = ("member", "silver", "gold", "platinum")


def legacy_balances(members: int, seed: int = 7, start: datetime = DEFAULT_START) -> list[LegacyBalance]:
    """A legacy export for the generator's members M000000…: positive balances, a few debts and zeros,
    some with a tier, an expiry (some soon after `start`) or an enrollment date."""
    rng = random.Random(seed)  # noqa: S311 (test data, not secrets)
    rows = []
    for index in range(members):
        balance = rng.choice([rng.randint(1, 5_000), rng.randint(1, 5_000), rng.randint(-300, -1), 0])
        rows.append(
            LegacyBalance(
                f"M{index:06d}",
                balance,
                rng.choice([None, None, *LEGACY_TIERS]),
                start + timedelta(days=rng.randint(10, 400)) if balance > 0 and rng.random() < 0.5 else None,
                start - timedelta(days=rng.randint(30, 2_000)) if rng.random() < 0.5 else None,
            )
        )
    return rows


def opening_balance_lines(rows: list[LegacyBalance], at: datetime) -> list[bytes]:
    """The rows as `opening_balance` wire messages at `at` (the cut-over), one per member."""
    lines = []
    for row in rows:
        message = {
            "type": "opening_balance", "event_id": f"migration-{row.member_id}", "member_id": row.member_id,
            "occurred_at": at, "opening_balance_id": f"legacy-{row.member_id}", "points": row.balance,
            "tier": row.tier, "expires_at": row.expires_at, "legacy_ref": f"LEGACY/{row.member_id}",
        }  # fmt: skip
        lines.append(
            json.dumps(
                {key: value.isoformat() if isinstance(value, datetime) else value for key, value in message.items()
                 if value is not None}, separators=(",", ":"),
            ).encode()
        )  # fmt: skip
    return lines


def legacy_csv(rows: list[LegacyBalance]) -> bytes:
    """The rows as a legacy export file for `migrate` (empty cells for what a row does not have)."""
    lines = ["member_id,balance,tier,expires_at,enrolled_at"]
    for row in rows:
        cells = [row.member_id, str(row.balance), row.tier or "",
                 row.expires_at.isoformat() if row.expires_at else "",
                 row.enrolled_at.isoformat() if row.enrolled_at else ""]  # fmt: skip
        lines.append(",".join(cells))
    return ("\n".join(lines) + "\n").encode()
