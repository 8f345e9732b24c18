"""An independent, deliberately plain reading of the issue's rules, used only to check the ledger.

It shares no code with ledger/ (beyond the parsed wire models): if both agree on a
large messy stream, the rules are implemented as written, not as misremembered twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from schemas import Adjustment, Enrollment, Message, OpeningBalance, Purchase, Redemption, Refund

YEAR = timedelta(days=365)
TIERS = [("member", 0, Decimal(1)), ("silver", 1000, Decimal("1.25")), ("gold", 5000, Decimal("1.5")),
         ("platinum", 15000, Decimal(2))]  # fmt: skip
RANK = {name: rank for rank, (name, _, _) in enumerate(TIERS)}


def floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


@dataclass
class OMember:
    last_t: datetime
    tier: str = "member"
    last_qualified: datetime | None = None
    debt: int = 0
    lots: list[dict[str, Any]] = field(default_factory=list)
    purchases: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    used: set[tuple[str, str]] = field(default_factory=set)
    changes: list[tuple[datetime, int, str | None, str]] = field(default_factory=list)  # (t, delta, flow, tier)
    enrolled_t: datetime | None = None
    opening_id: str | None = None  # the opening balance carried over, if any

    def balance(self) -> int:
        return sum(int(lot["remaining"]) for lot in self.lots) - self.debt


class Oracle:
    def __init__(self) -> None:
        self.members: dict[str, OMember] = {}
        self.counts = {"recorded": 0, "duplicates": 0, "rejected": 0}
        self.swept_to: datetime | None = None  # after a sweep at T nothing is effective before T, for anyone

    def process(self, msg: Message) -> str:
        member = self.members.get(msg.member_id)
        if member is not None and msg.event_id in member.seen:
            self.counts["duplicates"] += 1
            return "duplicate"
        if member is None:
            first_t = max(msg.occurred_at, self.swept_to or msg.occurred_at)
            member = self.members[msg.member_id] = OMember(last_t=first_t)
            member.enrolled_t = first_t
            member.last_qualified = first_t
        t = max(msg.occurred_at, member.last_t)
        member.last_t = t
        self._expire(member, t)
        self._evaluate(member, t)
        outcome = self._apply(member, msg, t)
        self._evaluate(member, t)
        member.seen.add(msg.event_id)
        self.counts["recorded" if outcome == "recorded" else "rejected"] += 1
        return outcome

    def sweep(self, at: datetime) -> None:
        self.swept_to = max(at, self.swept_to or at)
        for member in self.members.values():
            t = max(at, member.last_t)
            member.last_t = t
            self._expire(member, t)
            self._evaluate(member, t)

    # -- rules, read straight from the issue --

    def _change(self, member: OMember, t: datetime, delta: int, flow: str | None) -> None:
        member.changes.append((t, delta, flow, member.tier))

    def _expire(self, member: OMember, t: datetime) -> None:
        for lot in member.lots:
            if lot["expires"] <= t and lot["remaining"] > 0:
                self._change(member, t, -lot["remaining"], "expired")
                lot["remaining"] = 0

    def _credits(self, member: OMember, t: datetime) -> int:
        """Tier credits at t: the purchases of the year up to t, less what refunds clawed back."""
        return sum(p["base"] - p["cc"] for p in member.purchases.values() if t - YEAR < p["t"] <= t)

    def _evaluate(self, member: OMember, t: datetime) -> None:
        credits = self._credits(member, t)
        qualified = [name for name, threshold, _ in TIERS if threshold <= credits][-1]
        assert member.last_qualified is not None
        if RANK[qualified] > RANK[member.tier] or qualified == member.tier or t >= member.last_qualified + YEAR:
            member.tier, member.last_qualified = qualified, t
        self._change(member, t, 0, None)

    def _new_lot(self, member: OMember, points: int, t: datetime, expires: datetime | None = None) -> None:
        repay = min(member.debt, points)
        member.debt -= repay
        member.lots.append({"points": points, "remaining": points - repay, "expires": expires or t + YEAR,
                            "seq": len(member.lots)})  # fmt: skip

    def _consume(self, member: OMember, points: int) -> int:
        for lot in sorted(member.lots, key=lambda lot: (lot["expires"], lot["seq"])):
            take = min(lot["remaining"], points)
            lot["remaining"] -= take
            points -= take
        return points

    def _apply(self, member: OMember, msg: Message, t: datetime) -> str:
        if isinstance(msg, Enrollment):
            return "recorded"
        if isinstance(msg, Purchase):
            if msg.transaction_id in member.purchases:
                return "rejected"
            base = floor(msg.amount)
            multiplier = next(m for name, _, m in TIERS if name == member.tier)
            awarded = floor(base * multiplier)
            member.purchases[msg.transaction_id] = {"amount": msg.amount, "base": base, "awarded": awarded,
                                                    "refunded": Decimal(0), "pc": 0, "cc": 0, "t": t}  # fmt: skip
            self._new_lot(member, awarded, t)
            self._change(member, t, awarded, "issued")
            return "recorded"
        if isinstance(msg, Refund):
            purchase = member.purchases.get(msg.transaction_id)
            if purchase is None or ("refund", msg.refund_id) in member.used:
                return "rejected"
            if purchase["refunded"] + msg.amount > purchase["amount"]:
                return "rejected"
            purchase["refunded"] += msg.amount
            points = floor(purchase["awarded"] * purchase["refunded"] / purchase["amount"]) - purchase["pc"]
            credits = floor(purchase["base"] * purchase["refunded"] / purchase["amount"]) - purchase["cc"]
            purchase["pc"] += points
            purchase["cc"] += credits
            member.debt += self._consume(member, points)
            member.used.add(("refund", msg.refund_id))
            self._change(member, t, -points, "clawed_back")
            return "recorded"
        if isinstance(msg, Redemption):
            if ("redemption", msg.redemption_id) in member.used or msg.points > member.balance():
                return "rejected"
            self._consume(member, msg.points)
            member.used.add(("redemption", msg.redemption_id))
            self._change(member, t, -msg.points, "redeemed")
            return "recorded"
        if isinstance(msg, OpeningBalance):
            if member.opening_id is not None:
                return "rejected"
            member.opening_id = msg.opening_balance_id
            if msg.points > 0:
                self._new_lot(member, msg.points, t, msg.expires_at)
            else:
                member.debt += self._consume(member, -msg.points)
            if msg.points:
                self._change(member, t, msg.points, "migrated")
            if msg.tier is not None and RANK[msg.tier] > RANK[member.tier]:
                member.tier, member.last_qualified = msg.tier, t
            return "recorded"
        assert isinstance(msg, Adjustment)
        if ("adjustment", msg.adjustment_id) in member.used:
            return "rejected"
        if msg.points > 0:
            self._new_lot(member, msg.points, t)
            self._change(member, t, msg.points, "adjusted_in")
        else:
            if -msg.points > member.balance():
                return "rejected"
            self._consume(member, -msg.points)
            self._change(member, t, msg.points, "adjusted_out")
        member.used.add(("adjustment", msg.adjustment_id))
        return "recorded"

    # -- reports --

    def state(self, member_id: str) -> dict[str, Any]:
        """A member's state after its last message, as plain values: its times, tier, tier credits at its last
        time, open lots in spending order as (points, remaining, expires), debt, balance and opening balance."""
        member = self.members[member_id]
        open_lots = sorted(
            (lot for lot in member.lots if lot["remaining"] > 0), key=lambda lot: (lot["expires"], lot["seq"])
        )
        return {
            "enrolled_at": member.enrolled_t,
            "last_effective_at": member.last_t,
            "tier": member.tier,
            "last_qualified_at": member.last_qualified,
            "credits": self._credits(member, member.last_t),
            "lots": [(lot["points"], lot["remaining"], lot["expires"]) for lot in open_lots],
            "debt": member.debt,
            "balance": member.balance(),
            "opening_balance_id": member.opening_id,
        }

    def balance_and_tier(self, member_id: str, at: datetime | None = None) -> tuple[int, str]:
        member = self.members[member_id]
        changes = [c for c in member.changes if at is None or c[0] <= at]
        return sum(c[1] for c in changes), changes[-1][3] if changes else "member"

    def liability(self, at: datetime) -> dict[str, int]:
        lines = self.liability_by_tier(at).values()
        return {
            column: sum(line[column] for line in lines)
            for column in ("members", "outstanding_points", "negative_points")
        }

    def liability_by_tier(self, at: datetime) -> dict[str, dict[str, int]]:
        """Per tier (every tier listed): members enrolled by `at`, their positive balances and their debts."""
        lines = {name: {"members": 0, "outstanding_points": 0, "negative_points": 0} for name, _, _ in TIERS}
        for member_id, member in self.members.items():
            if member.enrolled_t is None or member.enrolled_t > at:
                continue
            balance, tier = self.balance_and_tier(member_id, at)
            lines[tier]["members"] += 1
            lines[tier]["outstanding_points"] += max(balance, 0)
            lines[tier]["negative_points"] += -min(balance, 0)
        return lines

    def rollforward(self, start: datetime, end: datetime) -> dict[str, int]:
        """Every balance summed at `start` and at `end`, and the flows between: read apart, never derived."""
        opening = sum(self.balance_and_tier(member_id, start)[0] for member_id in self.members)
        closing = sum(self.balance_and_tier(member_id, end)[0] for member_id in self.members)
        return {"opening": opening, **self.flows(start, end), "closing": closing}

    def flows(self, start: datetime, end: datetime) -> dict[str, int]:
        totals = dict.fromkeys(
            ["issued", "migrated", "adjusted_in", "adjusted_out", "redeemed", "expired", "clawed_back"], 0
        )
        for member in self.members.values():
            for t, delta, flow, _ in member.changes:
                if flow is not None and start < t <= end:
                    totals[flow] += delta if flow == "migrated" else abs(delta)
        return totals

    def kpis(self, start: datetime, end: datetime) -> dict[str, int]:
        """The KPIs the oracle can tell: enrolments, members with a purchase, points issued/redeemed/expired."""
        totals = {"new_members": 0, "active_members": 0, "points_issued": 0, "points_redeemed": 0,
                  "points_expired": 0}  # fmt: skip
        for member in self.members.values():
            if member.enrolled_t is not None and start < member.enrolled_t <= end:
                totals["new_members"] += 1
            if any(start < purchase["t"] <= end for purchase in member.purchases.values()):
                totals["active_members"] += 1
            for t, delta, flow, _ in member.changes:
                if flow in {"issued", "redeemed", "expired"} and start < t <= end:
                    totals[f"points_{flow}"] += abs(delta)
        return totals
