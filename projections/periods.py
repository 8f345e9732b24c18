"""Report periods: (start, end] intervals cut at calendar month or quarter starts (UTC).

An instant exactly on a boundary belongs to the period that ends there, as every flow counts the events
with `start < effective_at <= end`; so consecutive periods tile the range without gap or overlap.

Periods follow the calendar: a range that starts in the last second before a boundary (the usual
`--from 2024-12-31T23:59:59Z` for "from 2025") starts with the period after that boundary, which covers the
second too, rather than with a one-second period of its own. A period is named after the calendar month or
quarter it lies in.
"""

from __future__ import annotations

import calendar
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

Granularity = Literal["month", "quarter"]
#: Most periods one report may list (a century of months).
PERIODS_MAX = 1_200
#: A first period this short or shorter is joined to the next (a range "from 23:59:59" of the day before).
SLIVER = timedelta(seconds=1)


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later (the month's last day when it has fewer days)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _next_boundary(moment: datetime, granularity: Granularity) -> datetime:
    """The first month (or quarter) start strictly after `moment`."""
    step = 1 if granularity == "month" else 3
    first_month = moment.month if granularity == "month" else 3 * ((moment.month - 1) // 3) + 1
    start = datetime(moment.year, first_month, 1, tzinfo=UTC)
    return add_months(start, step)


def split(start: datetime, end: datetime, granularity: Granularity | None) -> list[tuple[datetime, datetime]]:
    """(start, end] as one period, or cut at every month or quarter start in between."""
    if end < start:
        raise ValueError("the period must not end before it starts")
    if granularity is None:
        return [(start, end)]
    periods: list[tuple[datetime, datetime]] = []
    cursor = start
    while cursor < end:
        boundary = min(_next_boundary(cursor.astimezone(UTC), granularity), end)
        periods.append((cursor, boundary))
        cursor = boundary
        if len(periods) > PERIODS_MAX + 1:
            raise ValueError(f"more than {PERIODS_MAX} periods: choose a shorter range or a longer period")
    if len(periods) > 1 and periods[0][1] - periods[0][0] <= SLIVER:
        periods[:2] = [(start, periods[1][1])]
    if len(periods) > PERIODS_MAX:
        raise ValueError(f"more than {PERIODS_MAX} periods: choose a shorter range or a longer period")
    return periods or [(start, end)]


def require_consecutive(spans: Sequence[tuple[datetime, datetime]]) -> None:
    """Refuse periods that end before they start or do not follow one another (each starts where the one
    before ends)."""
    if not spans:
        raise ValueError("no periods")
    if any(end < start for start, end in spans):
        raise ValueError("the period must not end before it starts")
    for (_, end), (start, _) in itertools.pairwise(spans):
        if end != start:
            raise ValueError("the periods must follow one another")


def label(start: datetime, end: datetime, granularity: Granularity | None) -> str:
    """The name of the period (start, end]: the month or quarter its last instant lies in (2025-01, 2025-Q1),
    or `range`."""
    if granularity is None:
        return "range"
    moment = (end - timedelta(microseconds=1) if end > start else end).astimezone(UTC)
    if granularity == "month":
        return f"{moment.year:04d}-{moment.month:02d}"
    return f"{moment.year:04d}-Q{(moment.month - 1) // 3 + 1}"


@dataclass(frozen=True, slots=True)
class ReportPeriods:
    """The periods a report lists: (start, end] whole (`range`), or cut by month or quarter and then whole
    again as `total`."""

    start: datetime
    end: datetime
    granularity: Granularity | None
    spans: tuple[tuple[datetime, datetime], ...]

    @classmethod
    def of(cls, start: datetime, end: datetime, granularity: Granularity | None) -> ReportPeriods:
        """Raises ValueError for a range that ends before it starts or is cut into too many periods."""
        return cls(start, end, granularity, tuple(split(start, end, granularity)))

    @property
    def listed(self) -> list[tuple[datetime, datetime]]:
        """Every period a line is given for: each period, then the whole range when it is cut."""
        return [*self.spans, (self.start, self.end)] if self.granularity else list(self.spans)

    def labels(self) -> list[str]:
        """The name of each listed period (2025-01, 2025-Q1, `range`), the whole range's `total` when cut."""
        names = [label(start, end, self.granularity) for start, end in self.spans]
        return [*names, "total"] if self.granularity else names
