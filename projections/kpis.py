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
from ledger.micros import to_micros
from ledger.program import Program
from projections.db import Sql

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
    upgrades = downgrades = 0
    for (before, after), changes in counts.tier_changes.items():
        step = program.tier_rank(after) - program.tier_rank(before)  # a tier the program lacks is refused
        if step > 0:
            upgrades += changes
        elif step < 0:
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


def kpi_rows(
    periods: Sequence[tuple[datetime, datetime]], counts: Sequence[PeriodCounts], program: Program
) -> list[dict[str, Any]]:
    """One KPI row per period, from each period's counts."""
    return [kpi_row(start, end, period, program) for (start, end), period in zip(periods, counts, strict=True)]


def counts_from_views(sql: Sql, periods: Sequence[tuple[datetime, datetime]]) -> list[PeriodCounts]:
    """Each period's counts from two queries that the covering index on (kind, effective_at, ...) of the audit
    trail answers alone: events and points per kind, tier change and rejection reason; then active members."""
    return [_period_counts(sql, to_micros(start), to_micros(end)) for start, end in periods]


def _period_counts(sql: Sql, start: int, end: int) -> PeriodCounts:
    counts = PeriodCounts()
    for row in sql.rows(
        "SELECT kind, CASE WHEN kind = 'TierChanged' THEN tier_before END AS tier_before, "
        "CASE WHEN kind = 'TierChanged' THEN tier END AS tier_after, "
        "CASE WHEN kind = 'MessageRejected' THEN reason END AS rejected, COUNT(*) AS events, SUM(delta) AS delta "
        f"FROM pl_audit WHERE kind IN ({', '.join(repr(kind) for kind in _COUNTED)}) "
        "AND effective_at > ? AND effective_at <= ? GROUP BY 1, 2, 3, 4",
        (start, end),
    ):
        kind, events = row["kind"], int(row["events"])
        if kind == "Enrolled":
            counts.new_members += events
        elif kind == "TierChanged":
            counts.tier_changes[(row["tier_before"], row["tier_after"])] += events
        elif kind == "MessageRejected":
            counts.rejected[row["rejected"]] += events
        else:
            setattr(counts, _COUNTED[kind], abs(int(row["delta"])))
    counts.active_members = int(
        sql.scalar(
            "SELECT COUNT(*) FROM (SELECT DISTINCT member_key FROM pl_audit WHERE kind = 'PointsEarned' "
            "AND effective_at > ? AND effective_at <= ?) AS active",
            (start, end),
        )
    )
    return counts


#: The kinds of audit row the KPIs count, and for those that move points, the count they add to.
_COUNTED = {
    "Enrolled": "new_members",
    "PointsEarned": "points_issued",
    "PointsRedeemed": "points_redeemed",
    "LotsExpired": "points_expired",
    "TierChanged": "tier_changes",
    "MessageRejected": "rejected",
}


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
