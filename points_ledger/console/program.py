"""The program team's page: KPIs by month or quarter, drawn (members, points, redemption rate, tier moves) with
the statement they come from beneath (measures as rows, periods as columns), and its CSV."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from ledger.access import Permission
from ledger.storage.console_sessions import ConsoleSession
from points_ledger.api.reads import periods as parse_periods
from points_ledger.api.rendering import csv_response
from points_ledger.console.access import CONSOLE_PATH, page_from_views
from points_ledger.console.finance import READ_REPORTS
from points_ledger.console.layout import page_context
from points_ledger.console.templating import download, render
from projections import answers
from projections.periods import ReportPeriods, add_months
from projections.sources import ReportSource

router = APIRouter()

#: Default range: this many months up to now.
DEFAULT_MONTHS = 12


@dataclass(frozen=True, slots=True)
class KpiChart:
    title: str
    unit: str
    measures: tuple[str, ...]


#: The page's charts, by the name in their address.
CHARTS = {
    "members": KpiChart("New and active members", "members", ("new_members", "active_members")),
    "points": KpiChart("Points issued, redeemed and expired", "points",
                       ("points_issued", "points_redeemed", "points_expired")),
    "redemption-rate": KpiChart("Redemption rate (redeemed / issued)", "percent", ("redemption_rate",)),
    "tier-moves": KpiChart("Tier moves", "members", ("tier_upgrades", "tier_downgrades")),
}  # fmt: skip


def kpi_periods(start: str | None, end: str | None, by: str | None) -> ReportPeriods:
    """The range asked for (422 for a bad time); by default the last DEFAULT_MONTHS calendar months to now."""
    now = datetime.now(UTC).replace(microsecond=0)
    first = add_months(datetime(now.year, now.month, 1, tzinfo=UTC), 1 - DEFAULT_MONTHS)
    granularity = "quarter" if by == "quarter" else "month"
    return parse_periods(start or first.isoformat(), end or now.isoformat(), granularity)


def _chosen(request: Request) -> ReportPeriods:
    query = request.query_params
    return kpi_periods(query.get("from"), query.get("to"), query.get("by"))


def _query(periods: ReportPeriods) -> str:
    return urlencode({"from": periods.start.isoformat(), "to": periods.end.isoformat(), "by": periods.granularity})


@router.get("/console/kpis", summary="The program's KPIs", include_in_schema=False)
async def kpi_page(request: Request) -> Response:
    def work(source: ReportSource, session: ConsoleSession) -> Response:
        chosen = _chosen(request)
        found = answers.kpis(source, chosen)
        rows = [answers.kpi_table_row(row) for row in found]
        context = page_context(
            session, "Program KPIs", f"{CONSOLE_PATH}/kpis", source.program.currency, periods=chosen, rows=rows,
            measures=answers.KPI_MEASURES, charts=CHARTS, images=chart_images(found[:-1]), query=_query(chosen),
        )  # fmt: skip
        return render("kpis.html", context)

    return await page_from_views(request, Permission.READ_REPORTS, READ_REPORTS, work)


def _chart_value(row: dict[str, Any], measure: str) -> float | None:
    value = row[measure]
    if value is None:
        return None
    return float(value) * 100 if measure == "redemption_rate" else float(value)


def chart_images(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Each of CHARTS drawn from the periods' rows (not the whole range's total), as the page's images."""
    from points_ledger.chart import draw_period_chart, svg_data_uri  # imported at the first chart (finance.py)

    periods = [row["period"] for row in rows]

    def image(chart: KpiChart) -> str:
        series = {measure.replace("_", " "): [_chart_value(row, measure) for row in rows] for measure in chart.measures}
        return svg_data_uri(lambda file: draw_period_chart(file, periods, series, chart.title, unit=chart.unit))

    return {name: image(chart) for name, chart in CHARTS.items()}


@router.get("/console/kpis.csv", include_in_schema=False)
async def kpi_csv(request: Request) -> Response:
    def work(source: ReportSource, session: ConsoleSession) -> Response:
        rows = [answers.kpi_csv_row(row) for row in answers.kpis(source, _chosen(request))]
        return download(csv_response(answers.KPI_CSV_COLUMNS, rows), "kpis.csv")

    return await page_from_views(request, Permission.READ_REPORTS, READ_REPORTS, work)
