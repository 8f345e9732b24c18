"""Every query and report the ledger answers, once: a function each, over a source (the views or the log,
projections.sources), returning plain records (dicts of plain values, times and decimals as such).

The faces (the command line, and beside it the HTTP API) parse their options, call one of these and render
what it returns; the columns a report is laid out in (a table, a CSV file) are defined here too, so that
every face lays it out alike. Every record carries `position`: the last log position it reflects.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from ledger.events import FLOW_SIGNS
from ledger.outcomes import Rejection
from ledger.storage.ledger_time import LEDGER_TIME, as_time
from projections import kpis as kpi_figures
from projections import reports
from projections.defaults import BREAKAGE_WINDOW_DAYS
from projections.digest import Digest, log_digest
from projections.periods import ReportPeriods
from projections.sources import ReportSource
from projections.verify import OnEvents, Verification
from projections.verify import verify as verify_ledger

if TYPE_CHECKING:
    from ledger.application import LedgerApplication
    from projections.runner import Projections

BreakageMethod = Literal["configured", "estimated"]
#: A balance's `expiring_30d`: the window the liability's `expiring_30d` counts too.
EXPIRING_WITHIN = timedelta(days=30)
#: The last time there is (a balance asked as of a time within 30 days of it counts every lot as expiring).
LAST_TIME = datetime.max.replace(tzinfo=UTC)

# ---- one member, every member ---------------------------------------------------------------------

#: `balances` as CSV.
BALANCES_COLUMNS = ("member_id", "balance", "tier", "position")


def balance(source: ReportSource, member_id: str, as_of: datetime | None = None) -> dict[str, Any] | None:
    """A member's balance, tier and lots with points left (latest, or as of a time), and the points of those
    lots that expire within 30 days of its `as_of` (as the liability counts them); None: no such member."""
    found = source.statement(member_id, as_of)
    if found is None:
        return None
    when: datetime = found["as_of"]
    within_30_days = when + EXPIRING_WITHIN if when <= LAST_TIME - EXPIRING_WITHIN else LAST_TIME
    expiring = sum(lot["remaining"] for lot in found["lots"] if lot["expires_at"] <= within_30_days)
    return {**found, "expiring_30d": expiring, "position": source.position}


def balances(source: ReportSource, as_of: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Every member's balance and tier, by member id, as they are read (from the views, memory does not grow
    with members)."""
    position = source.position
    return ({**row, "position": position} for row in source.balances(as_of))


def history(source: ReportSource, member_id: str) -> list[dict[str, Any]]:
    """Every recorded change of a member, oldest first, with provenance and running balance (empty: no such
    member)."""
    return [{**row, "position": source.position} for row in source.history(member_id)]


#: Most history lines in one page.
HISTORY_PAGE_MAX = 1_000


def history_page(source: ReportSource, member_id: str, after: int, limit: int) -> dict[str, Any] | None:
    """Up to `limit` lines of `history` after the line numbered (`version`) `after`, as `{"items", "next"}`:
    `next` is the cursor of the following page (the last line's number, as text), None on the last page.
    None: no such member."""
    if not 1 <= limit <= HISTORY_PAGE_MAX:
        raise ValueError(f"a page holds 1 to {HISTORY_PAGE_MAX} lines, not {limit}")
    rows = source.history(member_id, after, limit + 1)  # one more: is there a next page?
    if not rows and source.statement(member_id, None) is None:
        return None
    items = [{**row, "position": source.position} for row in rows[:limit]]
    following = str(items[-1]["version"]) if len(rows) > limit else None
    return {"items": items, "next": following}


def history_length(source: ReportSource, member_id: str) -> int:
    """How many lines a member's history holds, numbered 1 to this (0: no such member): where its last page
    starts."""
    return source.history_length(member_id)


def recorded_with(source: ReportSource, member_id: str, event_id: str) -> list[dict[str, Any]]:
    """The lines of a member's history recorded for the message `event_id` (what became of it)."""
    return [row for row in history(source, member_id) if row["provenance"].get("event_id") == event_id]


# ---- points liability --------------------------------------------------------------------------------

#: The liability report as CSV: a row per tier, then `total`.
LIABILITY_CSV_COLUMNS = (
    "as_of", "tier", "members", "outstanding_points", "negative_points", "liability_value", "liability_net",
    *reports.EXPIRY_COLUMNS, "breakage_rate", "position",
)  # fmt: skip
#: The liability's measures, by tier and in total (a statement's rows, a grid's columns).
LIABILITY_MEASURES = (
    "members", "outstanding_points", "negative_points", "liability_value", "liability_net", *reports.EXPIRY_COLUMNS,
)  # fmt: skip
#: The liability's measures that are money (decimal strings, in the program's currency).
MONEY_MEASURES = frozenset({"liability_value", "liability_net"})
#: The liability at period ends (`liability_at_period_ends`), as its chart draws it.
LIABILITY_AT_PERIOD_ENDS_COLUMNS = ("as_of", "outstanding_points", "liability_value", "position")


def liability(
    source: ReportSource,
    as_of: datetime,
    breakage: BreakageMethod = "configured",
    breakage_window_days: int = BREAKAGE_WINDOW_DAYS,
) -> dict[str, Any]:
    """Points owed to members at `as_of`, valued at the point value, net of breakage (the program's rate, or
    estimated over the trailing window), by tier and by expiry."""
    estimated = None
    if breakage == "estimated":
        window = reports.breakage_window(as_of, breakage_window_days)
        estimated = reports.estimated_breakage(source.flows(*window), window)
    elif breakage != "configured":
        raise ValueError(f"breakage is configured or estimated, not {breakage!r}")
    found = reports.liability_of(source.tier_totals(as_of), as_of, source.program, estimated)
    return {**found, "position": source.position}


def liability_csv_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a `liability` report laid out in LIABILITY_CSV_COLUMNS."""
    lines = [{"tier": name, **line} for name, line in report["by_tier"].items()]
    lines.append({"tier": "total", **{key: value for key, value in report.items() if key != "by_tier"}})
    common = {"as_of": report["as_of"], "breakage_rate": report["breakage_rate"], "position": report["position"]}
    return [{**line, **common} for line in lines]


def liability_at_period_ends(source: ReportSource, periods: ReportPeriods) -> list[dict[str, Any]]:
    """Outstanding points and their value at the end of each period (what the liability chart draws, at
    month ends)."""
    rows = []
    for _, moment in periods.spans:
        points = source.outstanding_points(moment)
        value = reports.points_value(points, source.program)
        rows.append({"as_of": moment, "outstanding_points": points, "liability_value": value,
                     "position": source.position})  # fmt: skip
    return rows


# ---- periods: roll-forward and KPIs -----------------------------------------------------------------

#: The roll-forward's columns.
ROLLFORWARD_COLUMNS = ("period", "from", "to", "opening", *FLOW_SIGNS, "closing", "position")
#: The roll-forward as a statement: its rows, from the opening through each flow to the closing.
ROLLFORWARD_MEASURES = ("opening", *FLOW_SIGNS, "closing")
#: The KPIs as a statement: its rows (`rejected`: every rejection reason summed, `kpi_table_row`).
KPI_MEASURES = (
    "new_members", "active_members", "points_issued", "points_redeemed", "points_expired", "redemption_rate",
    "tier_upgrades", "tier_downgrades", "rejected",
)  # fmt: skip
#: The KPIs as a table: the rejections summed in one column (`kpi_table_row`).
KPI_TABLE_COLUMNS = ("period", *kpi_figures.KPI_COLUMNS)
#: The KPIs as CSV: a column per rejection reason (`kpi_csv_row`).
KPI_CSV_COLUMNS = (
    "period", "from", "to", *kpi_figures.KPI_COLUMNS[:-1], *(f"rejected_{reason.value}" for reason in Rejection),
    "position",
)  # fmt: skip


def rollforward(source: ReportSource, periods: ReportPeriods) -> list[dict[str, Any]]:
    """Opening balance, the flows of points and the closing balance of each period, each closing the next
    opening; when the range is cut, the whole range last (`total`). Every line satisfies the identity
    opening + issued + migrated + adjusted_in - adjusted_out - redeemed - expired - clawed_back = closing."""
    lines = reports.rollforward_lines(periods.spans, source.rollforward_figures(periods.spans))
    if periods.granularity is not None:
        lines.append(reports.rollforward_total(lines))
    return _labelled(lines, periods, source.position)


def kpis(source: ReportSource, periods: ReportPeriods) -> list[dict[str, Any]]:
    """Program KPIs per period, then (when the range is cut) for the whole range: new and active members,
    points issued, redeemed and expired, the redemption rate, tier moves and rejections by reason."""
    listed = periods.listed
    lines = kpi_figures.kpi_rows(listed, source.kpi_counts(listed), source.program)
    return _labelled(lines, periods, source.position)


def kpi_table_row(row: dict[str, Any]) -> dict[str, Any]:
    """A KPI row with its rejections summed (KPI_TABLE_COLUMNS)."""
    return {**row, "rejected": sum(row["rejected"].values())}


def kpi_csv_row(row: dict[str, Any]) -> dict[str, Any]:
    """A KPI row with a field per rejection reason (KPI_CSV_COLUMNS)."""
    return {**row, **{f"rejected_{reason.value}": row["rejected"].get(reason.value, 0) for reason in Rejection}}


def _labelled(lines: list[dict[str, Any]], periods: ReportPeriods, position: int) -> list[dict[str, Any]]:
    names = periods.labels()
    return [{"period": name, **line, "position": position} for name, line in zip(names, lines, strict=True)]


# ---- tamper evidence --------------------------------------------------------------------------------

#: A discrepancy `verify` found.
DISCREPANCY_COLUMNS = ("view", "where", "detail")


def projections_status(projections: Projections) -> list[dict[str, Any]]:
    """Each view's position, the log head, the lag in events and when it last advanced (or was rebuilt)."""
    return [
        {"view": state.name, "position": state.position, "head": state.head, "lag": state.lag,
         "advanced_at": state.advanced_at, "rebuilt_at": state.rebuilt_at}
        for state in projections.status()
    ]  # fmt: skip


def ledger_time(app: LedgerApplication) -> datetime | None:
    """The ledger's own time as recorded now (the last sweep's; None before the first), read afresh: another
    process may have swept since this one last looked."""
    return as_time(app.recorder.max_tracking_id(LEDGER_TIME))


def digest(app: LedgerApplication) -> Digest:
    """One hash that commits to the log itself up to its head (projections.digest)."""
    return log_digest(app, app.recorder.max_notification_id() or 0, app.store.chain)


def verify(
    projections: Projections, saved: Digest | None = None, on_events: OnEvents | None = None, workers: int | None = None
) -> Verification:
    """The log checked against itself, every view against the log and, given a saved digest, the log against
    it (projections.verify): `summary()` and the discrepancies' `rows()`."""
    return verify_ledger(projections, saved, on_events, workers)
