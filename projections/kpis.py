"""Program KPIs per period: what the retailer's team watches after go-live to judge adoption.

Counted over (start, end] by effective time, like every flow: new members (enrolled by an enrollment
message or by their first message), active members (at least one recorded purchase, a PointsEarned even of
0 points), points issued, redeemed and expired, the redemption rate, tier upgrades and downgrades, and the
messages the rules rejected, by reason. From the views (set-based SQL on the audit trail) or from the log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ledger.member import Member
from ledger.program import Program
from projections.db import Sql, to_micros

KPI_COLUMNS = (
    "new_members", "active_members", "points_issued", "points_redeemed", "points_expired", "redemption_rate",
    "tier_upgrades", "tier_downgrades", "rejected",
)  # fmt: skip
_RATE = Decimal("0.0001")


@dataclass(slots=True)
class PeriodCounts:
    """What a period's KPIs are made of."""

    new_members: int = 0
    active_members: int = 0
    points_issued: int = 0
    points_redeemed: int = 0
    points_expired: int = 0
    #: (tier before, tier after) -> changes
    tier_changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)


def redemption_rate(redeemed: int, issued: int) -> str | None:
    """points_redeemed / points_issued as a decimal string with 4 places, half-up; None when nothing was issued."""
    if issued == 0:
        return None
    return str((Decimal(redeemed) / Decimal(issued)).quantize(_RATE, rounding=ROUND_HALF_UP))


def kpi_row(start: datetime, end: datetime, counts: PeriodCounts, program: Program) -> dict[str, Any]:
    rank = {tier.name: index for index, tier in enumerate(program.tiers)}
    upgrades = downgrades = 0
    for (before, after), changes in counts.tier_changes.items():
        if before not in rank or after not in rank:
            raise ValueError(f"tier change {before} -> {after}: a tier the program does not have")
        if rank[after] > rank[before]:
            upgrades += changes
        elif rank[after] < rank[before]:
            downgrades += changes
    return {
        "from": start,
        "to": end,
        "new_members": counts.new_members,
        "active_members": counts.active_members,
        "points_issued": counts.points_issued,
        "points_redeemed": counts.points_redeemed,
        "points_expired": counts.points_expired,
        "redemption_rate": redemption_rate(counts.points_redeemed, counts.points_issued),
        "tier_upgrades": upgrades,
        "tier_downgrades": downgrades,
        "rejected": dict(sorted(counts.rejected.items())),
    }


def counts_from_views(sql: Sql, start: datetime, end: datetime) -> PeriodCounts:
    window = (to_micros(start), to_micros(end))
    counts = PeriodCounts()
    for row in sql.rows(
        "SELECT kind, COUNT(*) AS events, COUNT(DISTINCT member_key) AS members FROM pl_audit "
        "WHERE kind IN ('Enrolled', 'PointsEarned') AND effective_at > ? AND effective_at <= ? GROUP BY kind",
        window,
    ):
        if row["kind"] == "Enrolled":
            counts.new_members = int(row["events"])
        else:
            counts.active_members = int(row["members"])
    for row in sql.rows(
        "SELECT flow, SUM(delta) AS delta FROM pl_audit WHERE flow IN ('issued', 'redeemed', 'expired') "
        "AND effective_at > ? AND effective_at <= ? GROUP BY flow",
        window,
    ):
        setattr(counts, f"points_{row['flow']}", abs(int(row["delta"])))
    for row in sql.rows(
        "SELECT tier_before, tier, COUNT(*) AS changes FROM pl_audit WHERE kind = 'TierChanged' "
        "AND effective_at > ? AND effective_at <= ? GROUP BY tier_before, tier",
        window,
    ):
        counts.tier_changes[(row["tier_before"], row["tier"])] = int(row["changes"])
    for row in sql.rows(
        "SELECT reason, COUNT(*) AS messages FROM pl_audit WHERE kind = 'MessageRejected' "
        "AND effective_at > ? AND effective_at <= ? GROUP BY reason",
        window,
    ):
        counts.rejected[row["reason"]] = int(row["messages"])
    return counts


def counts_from_log(events: Iterable[Member.Event], periods: Sequence[tuple[datetime, datetime]]) -> list[PeriodCounts]:
    """One pass over the log for every period."""
    counts = [PeriodCounts() for _ in periods]
    active: list[set[object]] = [set() for _ in periods]
    for event in events:
        for index, (start, end) in enumerate(periods):
            if start < event.effective_at <= end:
                _count(counts[index], active[index], event)
    for period, members in zip(counts, active, strict=True):
        period.active_members = len(members)
    return counts


def _count(counts: PeriodCounts, active: set[object], event: Member.Event) -> None:
    if isinstance(event, Member.Enrolled):
        counts.new_members += 1
    elif isinstance(event, Member.PointsEarned):
        active.add(event.originator_id)
        counts.points_issued += event.awarded
    elif isinstance(event, Member.PointsRedeemed):
        counts.points_redeemed += event.points
    elif isinstance(event, Member.LotsExpired):
        counts.points_expired += event.points
    elif isinstance(event, Member.TierChanged):
        counts.tier_changes[(event.from_tier, event.to_tier)] += 1
    elif isinstance(event, Member.MessageRejected):
        counts.rejected[event.reason] += 1
