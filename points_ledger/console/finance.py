"""Finance's page: the liability by tier at a time, the roll-forward of a range as a statement, the month-end
liability drawn, CSV downloads of each, and the digest as the file `verify --digest` takes.

Every figure comes from the report layer (projections.answers), as the API's and the CLI's do; the CSV files
are the API's (`Accept: text/csv`) and the CLI's `--format csv`, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from ledger.access import Permission
from ledger.storage.console_sessions import ConsoleSession
from points_ledger.api.reads import periods as parse_periods
from points_ledger.api.reads import utc_time
from points_ledger.api.rendering import csv_response, json_bytes
from points_ledger.api.service import LedgerService
from points_ledger.console.access import CONSOLE_PATH, ConsoleRefusal, page, page_from_views
from points_ledger.console.layout import page_context
from points_ledger.console.templating import download, render
from projections import answers
from projections.periods import ReportPeriods
from projections.sources import ReportSource

router = APIRouter()

READ_REPORTS = "read reports"


@dataclass(frozen=True, slots=True)
class FinanceRange:
    """What the finance page reports on: the liability at `as_of`, the roll-forward over `periods`."""

    as_of: datetime
    periods: ReportPeriods

    def query(self, **more: str) -> str:
        chosen = {"as_of": self.as_of.isoformat(), "from": self.periods.start.isoformat(),
                  "to": self.periods.end.isoformat(), "by": self.periods.granularity or ""}  # fmt: skip
        return urlencode({**chosen, **more})


def finance_range(as_of: str | None, start: str | None, end: str | None, by: str | None) -> FinanceRange:
    """The page's range from its query (422 for a bad time): by default the liability now, and the
    roll-forward by month from the start of its year to then."""
    when = utc_time(as_of, "as_of") or datetime.now(UTC).replace(microsecond=0)
    year_start = datetime(when.year, 1, 1, tzinfo=UTC).isoformat()
    granularity = by if by in {"month", "quarter"} else None if by == "" else "month"
    return FinanceRange(when, parse_periods(start or year_start, end or when.isoformat(), granularity))


#: Most month ends the month-end liability reads (five years): it reads every member once per month end, on
#: the thread pool the tills' look-ups share.
MONTH_ENDS_MAX = 60


def month_ends(chosen: FinanceRange) -> ReportPeriods:
    """The month ends of the range (ConsoleRefusal 422 beyond MONTH_ENDS_MAX)."""
    try:
        found = ReportPeriods.of(chosen.periods.start, chosen.periods.end, "month")
    except ValueError as error:
        raise ConsoleRefusal(422, str(error)) from None
    if len(found.spans) > MONTH_ENDS_MAX:
        raise ConsoleRefusal(422, f"the month-end liability covers at most {MONTH_ENDS_MAX} month ends, not "
                                  f"{len(found.spans)}: choose a shorter range")  # fmt: skip
    return found


@router.get("/console/finance", summary="Finance's page", include_in_schema=False)
async def finance_page(request: Request) -> Response:
    def work(source: ReportSource, session: ConsoleSession) -> Response:
        chosen = _range_of(request)
        liability = answers.liability(source, chosen.as_of)
        try:
            ends, too_long = answers.liability_at_period_ends(source, month_ends(chosen)), None
        except ConsoleRefusal as refusal:
            ends, too_long = [], refusal.detail
        context = page_context(
            session, "Finance", f"{CONSOLE_PATH}/finance", source.program.currency, chosen=chosen,
            liability=liability, liability_rows=answers.liability_csv_rows(liability),
            liability_measures=answers.LIABILITY_MEASURES, money_measures=answers.MONEY_MEASURES,
            rollforward=answers.rollforward(source, chosen.periods), rollforward_measures=answers.ROLLFORWARD_MEASURES,
            month_ends=ends, month_ends_refused=too_long,
            month_end_chart=month_end_chart(chosen, ends, source.program.currency) if ends else None,
            may_digest=session.key.may(Permission.READ_DIGEST),
        )  # fmt: skip
        return render("finance.html", context)

    return await page_from_views(request, Permission.READ_REPORTS, READ_REPORTS, work)


def month_end_chart(chosen: FinanceRange, rows: list[dict[str, Any]], currency: str) -> str:
    """The month-end liability drawn (as `report liability --chart` draws it), as the page's image."""
    # matplotlib takes 0.4-0.7 s to import: a server pays it at the first chart, not at every start.
    from points_ledger.chart import draw_liability_chart, svg_data_uri

    drawn = [(row["as_of"], row["outstanding_points"], Decimal(row["liability_value"])) for row in rows]
    title = f"Liability at month ends, {chosen.periods.start.date()} to {chosen.periods.end.date()}"
    return svg_data_uri(lambda file: draw_liability_chart(file, drawn, currency, title, "svg"))


def _range_of(request: Request) -> FinanceRange:
    query = request.query_params
    return finance_range(query.get("as_of"), query.get("from"), query.get("to"), query.get("by"))


@router.get("/console/finance/liability.csv", include_in_schema=False)
async def liability_csv(request: Request) -> Response:
    def work(source: ReportSource, session: ConsoleSession) -> Response:
        report = answers.liability(source, _range_of(request).as_of)
        rows = answers.liability_csv_rows(report)
        return download(csv_response(answers.LIABILITY_CSV_COLUMNS, rows), "liability.csv")

    return await page_from_views(request, Permission.READ_REPORTS, READ_REPORTS, work)


@router.get("/console/finance/rollforward.csv", include_in_schema=False)
async def rollforward_csv(request: Request) -> Response:
    def work(source: ReportSource, session: ConsoleSession) -> Response:
        rows = answers.rollforward(source, _range_of(request).periods)
        return download(csv_response(answers.ROLLFORWARD_COLUMNS, rows), "rollforward.csv")

    return await page_from_views(request, Permission.READ_REPORTS, READ_REPORTS, work)


@router.get("/console/finance/month-end-liability.csv", include_in_schema=False)
async def month_end_csv(request: Request) -> Response:
    def work(source: ReportSource, session: ConsoleSession) -> Response:
        rows = answers.liability_at_period_ends(source, month_ends(_range_of(request)))
        return download(csv_response(answers.LIABILITY_AT_PERIOD_ENDS_COLUMNS, rows), "month-end-liability.csv")

    return await page_from_views(request, Permission.READ_REPORTS, READ_REPORTS, work)


@router.get("/console/finance/digest", summary="The digest, shown", include_in_schema=False)
async def digest_page(request: Request) -> Response:
    def work(service: LedgerService, session: ConsoleSession) -> Response:
        found = answers.digest(service.app).as_dict()
        context = page_context(session, "Digest", f"{CONSOLE_PATH}/finance", service.app.program.currency,
                               digest=found)  # fmt: skip
        return render("digest.html", context)

    return await page(request, Permission.READ_DIGEST, "read the digest", work)


@router.get("/console/finance/digest.json", include_in_schema=False)
async def digest_file(request: Request) -> Response:
    def work(service: LedgerService, session: ConsoleSession) -> Response:
        found: Any = answers.digest(service.app).as_dict()
        position = found["position"]
        response = Response(json_bytes(found) + b"\n", media_type="application/json")
        return download(response, f"digest-{position}.json")

    return await page(request, Permission.READ_DIGEST, "read the digest", work)
