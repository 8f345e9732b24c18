"""Where a report's figures come from: the views, caught up and read in one transaction, or the log itself,
folded up to its head (the ground truth, slower as the log grows).

Both sources answer the same questions in the same shapes, so each report (projections.answers) is written
once and the two answers can be compared field by field. Each knows the log position its answers reflect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from projections import kpis, queries, reports, statements
from projections.figures import RollforwardFigures, figures_as_of, flows_between, rollforward_figures
from projections.log import read_log
from projections.runner import Projections

if TYPE_CHECKING:
    from ledger.application import LedgerApplication
    from ledger.member import Member
    from ledger.program import Program
    from projections.db import Sql

Spans = Sequence[tuple[datetime, datetime]]


class ReportSource(Protocol):
    """What every report is computed from."""

    @property
    def position(self) -> int:
        """The last log position the answers reflect."""

    @property
    def program(self) -> Program: ...

    def statement(self, member_id: str, as_of: datetime | None) -> dict[str, Any] | None:
        """A member's balance, tier and lots with points left (projections.statements.statement); None if
        there was no such member (by `as_of`)."""

    def balances(self, as_of: datetime | None) -> Iterable[dict[str, Any]]:
        """Every member's member_id, balance and tier, by member id."""

    def history(self, member_id: str, after: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """The member's audit trail after version `after`, oldest first, at most `limit` rows (empty if
        unknown)."""

    def history_length(self, member_id: str) -> int:
        """How many lines the member's history holds, numbered 1 to this (0: unknown)."""

    def tier_totals(self, as_of: datetime) -> reports.TierTotals:
        """Per tier at `as_of`: members, outstanding and negative points, open lots' points by expiry."""

    def outstanding_points(self, as_of: datetime) -> int:
        """The sum of positive balances at `as_of`."""

    def flows(self, start: datetime, end: datetime) -> dict[str, int]:
        """Points per roll-forward flow in (start, end]."""

    def rollforward_figures(self, spans: Spans) -> RollforwardFigures:
        """The figures of the roll-forwards of consecutive periods."""

    def kpi_counts(self, spans: Spans) -> list[kpis.PeriodCounts]:
        """What each period's KPIs are made of."""


@dataclass(frozen=True, slots=True)
class ViewSource:
    """The views, in the caller's read transaction (`Projections.reading`): index lookups and set-based SQL
    (projections.queries, projections.kpis)."""

    sql: Sql
    position: int
    program: Program

    def statement(self, member_id: str, as_of: datetime | None) -> dict[str, Any] | None:
        return queries.statement(self.sql, member_id, as_of)

    def balances(self, as_of: datetime | None) -> Iterator[dict[str, Any]]:
        return queries.balances(self.sql, as_of)

    def history(self, member_id: str, after: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        return queries.history(self.sql, member_id, after, limit)

    def history_length(self, member_id: str) -> int:
        return queries.history_length(self.sql, member_id)

    def tier_totals(self, as_of: datetime) -> reports.TierTotals:
        return queries.tier_totals(self.sql, as_of)

    def outstanding_points(self, as_of: datetime) -> int:
        return queries.outstanding_points(self.sql, as_of)

    def flows(self, start: datetime, end: datetime) -> dict[str, int]:
        return queries.flows(self.sql, start, end)

    def rollforward_figures(self, spans: Spans) -> RollforwardFigures:
        return queries.rollforward_figures(self.sql, spans)

    def kpi_counts(self, spans: Spans) -> list[kpis.PeriodCounts]:
        return kpis.counts_from_views(self.sql, spans)


@dataclass(frozen=True, slots=True)
class LogSource:
    """The log up to `position`, folded for each question (projections.figures, projections.statements); a
    member's own questions replay that member's events."""

    app: LedgerApplication
    position: int

    @property
    def program(self) -> Program:
        return self.app.program

    def _events(self) -> Iterator[Member.Event]:
        return read_log(self.app, stop=self.position)

    def statement(self, member_id: str, as_of: datetime | None) -> dict[str, Any] | None:
        if as_of is None:
            member = self.app.member(member_id)
        else:
            member = statements.replay(self.app.member_events(member_id), as_of)
        return None if member is None else statements.statement(member, as_of)

    def balances(self, as_of: datetime | None) -> list[dict[str, Any]]:
        members = figures_as_of(self._events(), as_of).members.values()
        return [
            {"member_id": member.member_id, "balance": member.balance, "tier": member.tier}
            for member in sorted(members, key=lambda member: member.member_id)
        ]

    def history(self, member_id: str, after: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        rows = [row for row in statements.history(self.app.member_events(member_id)) if row["version"] > after]
        return rows if limit is None else rows[:limit]

    def history_length(self, member_id: str) -> int:
        return len(self.app.member_events(member_id))

    def tier_totals(self, as_of: datetime) -> reports.TierTotals:
        return reports.tier_totals(figures_as_of(self._events(), as_of), as_of)

    def outstanding_points(self, as_of: datetime) -> int:
        return reports.outstanding(figures_as_of(self._events(), as_of))

    def flows(self, start: datetime, end: datetime) -> dict[str, int]:
        return flows_between(self._events(), start, end)

    def rollforward_figures(self, spans: Spans) -> RollforwardFigures:
        return rollforward_figures(self._events(), spans)

    def kpi_counts(self, spans: Spans) -> list[kpis.PeriodCounts]:
        return kpis.counts_from_log(self._events(), spans)


@contextmanager
def report_source(app: LedgerApplication, from_log: bool) -> Iterator[ReportSource]:
    """The log up to its head, or the views caught up to it and held in one read transaction for as long as
    the context lasts (so an answer may be an iterator, read as it is printed)."""
    if from_log:
        yield LogSource(app, app.recorder.max_notification_id() or 0)
        return
    with view_source(Projections(app)) as found:
        yield found


@contextmanager
def view_source(projections: Projections, first: Callable[[Sql], object] | None = None) -> Iterator[ViewSource]:
    """The views of `projections`, caught up and held in one read transaction for the context (a server keeps
    one `Projections` and asks it here for every answer); `first` as `Projections.reading` takes it."""
    with projections.reading(first=first) as (sql, position):
        yield ViewSource(sql, position, projections.app.program)
